"""scikit-learn estimators on gpubackprop networks: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in beside ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the same parameter
names where they mean the same thing, the same fitted attributes, the same stopping rule (``tol``
and ``n_iter_no_change`` on the training loss, or on the validation score with
``early_stopping``), and they work in ``Pipeline``, ``GridSearchCV``, ``cross_val_score``,
``clone`` and pickle. The network is a ``gpubackprop.MLP`` (built at ``fit`` with the sizes the
data gives: ``[n_features, *hidden_layer_sizes, n_outputs]``) on the backend ``backend`` names.

Needs scikit-learn >= 1.6 (``pip install 'scikit-learn>=1.6'``; in a source checkout ``pip install '.[sklearn]'``).

What differs from scikit-learn's estimators, and why:

- ``solver``: "adam" and "sgd" (with ``momentum`` > 0: the momentum optimizer, Nesterov's with
  ``nesterovs_momentum``). No "lbfgs" (not a mini-batch method); no ``learning_rate`` schedule
  other than "constant" ("invscaling" and "adaptive" are ValueErrors); ``power_t`` and ``max_fun``
  are accepted (checked as scikit-learn checks them) and, as in scikit-learn with "constant" and
  "adam"/"sgd", change nothing.
- ``alpha``: scikit-learn's L2 penalty, α/(2n)·Σ‖W‖² on a batch of n rows, whose gradient adds
  (α/n)·W; here the network's weight decay λ = α / batch_size (``gpubackprop.optimizers``), which
  adds the same λ·W to the gradient of every full batch, and λ·b to the biases too (scikit-learn
  leaves the biases alone; PyTorch's ``weight_decay`` decays them as ours does).
- The weights start as ``gpubackprop.MLP`` starts them (Glorot's uniform range, He's for relu,
  zero biases), not as scikit-learn does.
- ``activation``: "relu" (default), "tanh", "logistic" (= "sigmoid"); "identity" hidden layers do
  not exist in gpubackprop (a ValueError at fit).
- ``dtype``: the network's dtype. None (the default) follows X at fit as scikit-learn does:
  float32 for float32 X, float64 otherwise. "float32" computes in float32 whatever X is (twice as
  fast on a CPU, far more on most GPUs): predictions then agree with those of any other batching
  to float32 rounding only (scikit-learn's check_methods_subset_invariance asks 1e-7, which float64
  meets). Predictions and probabilities come back in X's dtype as scikit-learn's do (float32 X:
  float32; anything else: float64, float32 results widened exactly).
- Multi-output regression: ``loss_curve_`` is scikit-learn's squared error (the mean over rows and
  outputs of ½(ŷ − y)²); the network minimises the sum over the outputs (``gpubackprop.losses``),
  so with ``solver="sgd"`` the step is n_outputs times scikit-learn's.
- No ``sample_weight`` and no sparse input (a TypeError from scikit-learn's checks).
- A step whose loss, gradients or update is not finite (e.g. a learning rate far too large) is
  refused and raises gpubackprop's ``NonFiniteLossError`` at once, the network keeping the last
  good parameters; scikit-learn trains on and raises a ValueError at the end.

Pickling stores the parameters and the optimizer's state as NumPy arrays with the settings, never
backend arrays: an estimator trained on CuPy unpickles on a machine without CuPy or a GPU, onto the
NumPy backend (with a warning saying so).
"""
from .estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
