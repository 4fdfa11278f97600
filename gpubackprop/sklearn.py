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
  other than "constant" (the parameter does not exist here).
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
from __future__ import annotations

import numbers
import warnings

import numpy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import losses, optimizers, validation
from .backends import get_backend
from .errors import BackendUnavailableError
from .model import MLP

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "sigmoid": "sigmoid"}
_SOLVERS = ("adam", "sgd")
_SEED_RANGE = 2**31 - 1  # the seeds drawn from random_state for the network's draws


def _check_params(est):
    """Every hyperparameter checked before fit changes anything: a ValueError/TypeError naming it."""
    sizes = est.hidden_layer_sizes
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    try:
        sizes = list(sizes)
    except TypeError:
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}") from None
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"hidden_layer_sizes must hold positive ints, got {est.hidden_layer_sizes!r}")
    if est.activation == "identity":
        raise ValueError("activation='identity' is not available: gpubackprop's hidden layers are 'relu', 'tanh' "
                         "or 'logistic' (a network of identity layers is a linear model: use hidden_layer_sizes=())")
    if est.activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of 'relu', 'tanh', 'logistic', got {est.activation!r}")
    if est.solver not in _SOLVERS:
        extra = " ('lbfgs' is not a mini-batch method: gpubackprop does not have it)" if est.solver == "lbfgs" else ""
        raise ValueError(f"solver must be 'adam' or 'sgd', got {est.solver!r}{extra}")
    for name, low in (("alpha", 0.0), ("momentum", 0.0), ("beta_1", 0.0), ("beta_2", 0.0), ("tol", 0.0),
                      ("learning_rate_init", None), ("epsilon", None)):
        value = getattr(est, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not numpy.isfinite(value):
            raise TypeError(f"{name} must be a finite real number, got {value!r}")
        if (low is None and value <= 0) or (low is not None and value < low):
            raise ValueError(f"{name} must be {'> 0' if low is None else '>= 0'}, got {value!r}")
    for name in ("momentum", "beta_1", "beta_2"):
        if getattr(est, name) >= 1:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(est, name)!r}")
    for name in ("max_iter", "n_iter_no_change"):
        value = getattr(est, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    batch = est.batch_size
    if batch != "auto" and (isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1):
        raise ValueError(f"batch_size must be 'auto' or a positive int, got {batch!r}")
    if not (isinstance(est.validation_fraction, numbers.Real) and 0 < est.validation_fraction < 1):
        raise ValueError(f"validation_fraction must be in (0, 1), got {est.validation_fraction!r}")
    if est.dtype is not None:
        validation.check_precision(est.precision, validation.check_dtype(est.dtype))
    else:
        validation.check_choice("precision", est.precision, validation.PRECISIONS)
    get_backend(est.backend)  # BackendUnavailableError / ValueError now, before anything changes
    return [int(size) for size in sizes]


def _net_state(net) -> dict:
    """A network as plain Python and NumPy data (no backend array): what a pickle holds."""
    return {"layer_sizes": list(net.layer_sizes), "hidden_activation": net.hidden_activation,
            "output_activation": net.output_activation, "loss": net.loss,
            "optimizer": {"name": net.optimizer.name, **net.optimizer.options()},
            "dtype": net.dtype.name, "precision": net.precision, "params": net.get_params(),
            "optimizer_state": net.get_optimizer_state(), "backend": net.backend.spec}


def _net_from_state(state: dict, backend):
    """The network ``_net_state`` described, on ``backend``; on NumPy, with a warning, when that
    backend is unavailable here (e.g. a CuPy-trained estimator unpickled without CuPy or a GPU)."""
    options = dict(state["optimizer"])
    name = options.pop("name")
    build = lambda b: MLP(state["layer_sizes"], hidden_activation=state["hidden_activation"],  # noqa: E731
                          output_activation=state["output_activation"], loss=state["loss"], optimizer=name,
                          dtype=state["dtype"], precision=state["precision"], backend=b, **options)
    try:
        net = build(backend)
    except BackendUnavailableError as exc:
        warnings.warn(f"the network (trained on the {state['backend']} backend) was unpickled onto the numpy "
                      f"backend: {exc}", UserWarning, stacklevel=3)
        net = build("numpy")
    net.set_params(state["params"])
    net.set_optimizer_state(state["optimizer_state"])
    return net


class _BaseMLP(BaseEstimator):
    """What both estimators share: the network, the training loop, pickling and ONNX export."""

    def _network_options(self, sizes, loss, output_activation, batch_size):
        """The gpubackprop.MLP settings these hyperparameters mean (see the module's notes)."""
        if self.solver == "adam":
            opt = {"optimizer": "adam", "beta1": self.beta_1, "beta2": self.beta_2, "eps": self.epsilon}
        elif self.momentum > 0:
            opt = {"optimizer": "momentum", "momentum": self.momentum, "nesterov": bool(self.nesterovs_momentum)}
        else:
            opt = {"optimizer": "sgd"}
        return dict(layer_sizes=sizes, hidden_activation=_ACTIVATIONS[self.activation],
                    output_activation=output_activation, loss=loss, weight_decay=self.alpha / batch_size,
                    dtype=self._dtype, precision=self.precision, backend=self.backend, **opt)

    def _new_network(self, options, seed):
        return MLP(options.pop("layer_sizes"), seed=seed, **options)

    def _same_network(self, net, options):
        """``net`` when ``options`` describe it, else a network built from ``options`` now that
        keeps ``net``'s parameters (a warm start or partial_fit after set_params changed the
        optimizer, dtype, precision or backend), and its optimizer state if the optimizer is the same."""
        opts = {key: options[key] for key in ("momentum", "nesterov", "beta1", "beta2", "eps") if key in options}
        optimizer = optimizers.configure(options["optimizer"], weight_decay=options["weight_decay"], **opts)
        if (optimizer, numpy.dtype(options["dtype"]), options["precision"], get_backend(options["backend"])) == \
                (net.optimizer, net.dtype, net.precision, net.backend):
            return net
        fresh = self._new_network(dict(options), seed=0)
        fresh.set_params(net.get_params())
        if fresh.optimizer == net.optimizer:
            fresh.set_optimizer_state(net.get_optimizer_state())
        return fresh

    def _check_loss(self):
        pass  # (the classifier's loss follows from the labels)

    def _fit(self, X, y, incremental):
        sizes = _check_params(self)
        self._check_loss()
        first_pass = not hasattr(self, "_net") or (not self.warm_start and not incremental)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if first_pass or self.dtype is not None:  # (a warm start keeps the dtype None chose at first)
            self._dtype = X.dtype.name if self.dtype is None else self.dtype
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        rng = check_random_state(self.random_state)
        loss, output_activation = self._loss_for(Y)
        layer_sizes = [X.shape[1], *sizes, Y.shape[1]]
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = Y if (is_classifier(self) and Y.shape[1] == 1) else None
            X, X_val, Y, Y_val = train_test_split(X, Y, random_state=rng, test_size=self.validation_fraction,
                                                  stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size "
                                 "of your dataset.")
            y_val = self._label_binarizer.inverse_transform(Y_val if Y_val.shape[1] > 1 else Y_val.ravel()) \
                if is_classifier(self) else (Y_val.ravel() if Y_val.shape[1] == 1 else Y_val)
        n_train = X.shape[0]
        batch_size = min(200, n_train) if self.batch_size == "auto" else self.batch_size
        if batch_size > n_train:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = n_train
        options = self._network_options(layer_sizes, loss, output_activation, batch_size)

        if first_pass:
            self._net = self._new_network(options, seed=int(rng.randint(_SEED_RANGE)))
            self.t_ = 0
            self.n_layers_ = len(layer_sizes)
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -numpy.inf, None
            else:
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = numpy.inf, None, None
        else:
            if list(self._net.layer_sizes) != layer_sizes:
                raise ValueError(f"the data gives the network sizes {layer_sizes}, but the fitted network has "
                                 f"{list(self._net.layer_sizes)}: warm_start and partial_fit need the same sizes")
            self._net = self._same_network(self._net, options)
            if not incremental:  # warm start: new optimizer state, as scikit-learn makes a new optimizer
                self._net.reset_optimizer()
        net = self._net
        self.n_outputs_ = Y.shape[1]
        self.out_activation_ = self._out_activation_name(loss)
        # The data goes to the device once; each epoch is one fit call on it (the network keeps the
        # epoch's buffers and recorded work between calls).
        Xd, Yd = net.backend.asarray(X, net.dtype), net.backend.asarray(Y, net.dtype)
        loss_scale = 1.0 / Y.shape[1] if loss == "mse" else 1.0  # scikit-learn's squared error: mean over outputs
        weight_decay = options["weight_decay"]
        best_params = None
        self.n_iter_ = 0  # epochs of this call, as scikit-learn counts them (loss_curve_ and t_ go on)
        try:
            for _ in range(1 if incremental else self.max_iter):
                history = net.fit(Xd, Yd, epochs=1, batch_size=batch_size, lr=self.learning_rate_init,
                                  shuffle=bool(self.shuffle), seed=int(rng.randint(_SEED_RANGE)), progress=False)
                record = history.records[-1]
                epoch_loss = record["loss"] * loss_scale
                if weight_decay:  # the L2 term as scikit-learn adds it: α/(2n)·Σ‖W‖² (n: the batch size)
                    epoch_loss += 0.5 * weight_decay * sum(float((W * W).sum()) for W in net.weights)  # on the device
                self.n_iter_ += 1
                self.t_ += n_train
                self.loss_ = epoch_loss
                self.loss_curve_.append(epoch_loss)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, epoch_loss))
                if early_stopping:
                    score = self._score_on(X_val, y_val)
                    self.validation_scores_.append(score)
                    if self.verbose:
                        print("Validation score: %f" % score)
                    if score < self.best_validation_score_ + self.tol:
                        self._no_improvement_count += 1
                    else:
                        self._no_improvement_count = 0
                    if score > self.best_validation_score_:
                        self.best_validation_score_ = score
                        best_params = net.get_params()
                else:
                    if epoch_loss > self.best_loss_ - self.tol:
                        self._no_improvement_count += 1
                    else:
                        self._no_improvement_count = 0
                    if epoch_loss < self.best_loss_:
                        self.best_loss_ = epoch_loss
                if self._no_improvement_count > self.n_iter_no_change:
                    if self.verbose:
                        what = "Validation score" if early_stopping else "Training loss"
                        print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                              "consecutive epochs. Stopping.")
                    break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                                  "optimization hasn't converged yet.", ConvergenceWarning)
        except KeyboardInterrupt:  # as scikit-learn: the model stays as the last complete step left it
            warnings.warn("Training interrupted by user.")
        if early_stopping and best_params is not None:
            net.set_params(best_params)
        return self

    def _predict_outputs(self, X):
        """The network's output for X (checked as at fit), a NumPy array (n_samples, n_outputs) in
        X's dtype as scikit-learn gives it (float32 X: float32, anything else: float64), computed in
        the network's ``dtype`` (float32 outputs become float64 exactly)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(numpy.float64, numpy.float32), reset=False)
        return self._net.predict(X).astype(X.dtype, copy=False)

    @property
    def coefs_(self):
        """The weight matrices as scikit-learn lays them out: (n_in, n_out) per layer (NumPy copies)."""
        check_is_fitted(self)
        return [W.T.copy() for W, _ in self._net.get_params()]

    @property
    def intercepts_(self):
        """The bias vectors, (n_out,) per layer (NumPy copies)."""
        check_is_fitted(self)
        return [b for _, b in self._net.get_params()]

    @property
    def network_(self):
        """The fitted ``gpubackprop.MLP`` (the estimator's own: changes to it change the estimator)."""
        check_is_fitted(self)
        return self._net

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_net")

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = dict(super().__getstate__())  # (object's is the instance dict itself: copied)
        if "_net" in state:
            state["_net"] = _net_state(state["_net"])
        return state

    def __setstate__(self, state):
        state = dict(state)
        net = state.pop("_net", None)
        super().__setstate__(state)
        if net is not None:
            self._net = _net_from_state(net, self.backend)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier trained by gpubackprop, as scikit-learn's ``MLPClassifier``.

    Labels: any labels scikit-learn's ``LabelBinarizer`` takes (ints, strings, ...), or a
    multilabel indicator matrix (n_samples, n_labels). Two classes and multilabel: sigmoid outputs
    with ``sigmoid_binary_cross_entropy`` (one output for two classes); more classes: one output
    per class with ``softmax_cross_entropy`` (``gpubackprop.losses``).

    Parameters (scikit-learn's names and defaults, see the module's notes for what differs):
    ``hidden_layer_sizes`` ((100,)), ``activation`` ("relu"), ``solver`` ("adam"), ``alpha``
    (0.0001), ``batch_size`` ("auto": min(200, n_samples)), ``learning_rate_init`` (0.001),
    ``max_iter`` (200 epochs), ``shuffle``, ``random_state``, ``tol`` (1e-4), ``verbose``,
    ``warm_start``, ``momentum`` (0.9), ``nesterovs_momentum`` (True), ``early_stopping``,
    ``validation_fraction`` (0.1), ``beta_1``, ``beta_2``, ``epsilon``, ``n_iter_no_change`` (10);
    gpubackprop's ``backend`` (None: $GPUBACKPROP_BACKEND, else "auto"), ``dtype`` (None: float32 for
    float32 X, float64 otherwise; or "float32", "float64"), ``precision`` ("fp32" or "tf32").

    Fitted attributes: ``classes_``, ``loss_curve_``, ``loss_``, ``best_loss_`` (None with
    early_stopping), ``validation_scores_``, ``best_validation_score_``, ``n_iter_``, ``t_``,
    ``n_features_in_``, ``feature_names_in_`` (DataFrame input), ``n_layers_``, ``n_outputs_``,
    ``out_activation_``, ``coefs_`` and ``intercepts_`` (NumPy, (n_in, n_out) as scikit-learn),
    ``network_`` (the ``gpubackprop.MLP``).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, backend=None, dtype=None, precision="fp32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.precision = precision

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and labels y (n_samples,), or a multilabel indicator
        matrix (n_samples, n_labels), for up to ``max_iter`` epochs; returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing from the current network and optimizer state. The
        first call needs ``classes`` (every label that may come, e.g. ``numpy.unique(y_all)``);
        returns self."""
        if classes is not None and hasattr(self, "classes_") and \
                not numpy.array_equal(numpy.sort(numpy.asarray(classes)), self.classes_):
            raise ValueError(f"`classes={classes}` is not the same as on the last call to partial_fit, "
                             f"was: {self.classes_}")
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
            self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(numpy.float64, numpy.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            binarizer = LabelBinarizer()
            binarizer.fit(y)  # raises for continuous targets ("Unknown label type")
            self._label_binarizer, self.classes_ = binarizer, binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(numpy.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        Y = self._label_binarizer.transform(y).astype(numpy.float64)
        return X, Y

    def _loss_for(self, Y):
        if self._label_binarizer.y_type_ == "multiclass":
            return "softmax_cross_entropy", "identity"
        return "sigmoid_binary_cross_entropy", "identity"

    @staticmethod
    def _out_activation_name(loss):
        return "softmax" if loss == "softmax_cross_entropy" else "logistic"

    def _score_on(self, X, y):
        return accuracy_score(y, self._labels(self._net.predict(X)))

    def _probabilities(self, outputs):
        """The network's outputs (logits) as the probabilities predict_proba gives."""
        return losses.probabilities(self._net.loss, outputs)

    def _labels(self, outputs):
        proba = self._probabilities(outputs)
        return self._label_binarizer.inverse_transform(proba.ravel() if proba.shape[1] == 1 else proba)

    def predict(self, X):
        """The predicted labels, (n_samples,) (or (n_samples, n_labels) for multilabel): the class
        of highest probability, or each label whose probability is above ½."""
        return self._labels(self._predict_outputs(X))

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes) in the order of ``classes_`` (two classes:
        [1 − p, p]; multilabel: one probability per label), in X's dtype (see the module's notes)."""
        proba = self._probabilities(self._predict_outputs(X))
        if proba.shape[1] == 1 and self._label_binarizer.y_type_ != "multilabel-indicator":
            return numpy.hstack([1 - proba, proba])
        return proba

    def predict_log_proba(self, X):
        """log(predict_proba(X)), (n_samples, n_classes)."""
        proba = self.predict_proba(X)
        with numpy.errstate(divide="ignore"):  # a probability that underflowed to 0 is log 0 = -inf, as scikit-learn's
            return numpy.log(proba, out=proba)

    def to_onnx(self, path=None, *, probabilities=True, labels=True, opset=None):
        """The fitted network as an ONNX model (see ``gpubackprop.onnx.to_onnx``): input "X",
        output "Y" (the network's logits); with ``probabilities``, "probabilities" equal to
        ``predict_proba`` (two classes: [1 − p, p]); with ``labels`` (needs ``probabilities``) also
        "label" equal to ``predict`` (the labels of ``classes_`` as int64, float64 or strings;
        multilabel: the int64 indicator matrix). Written to ``path`` when given; returns the
        ``onnx.ModelProto``."""
        from . import onnx as onnx_export
        check_is_fitted(self)
        multilabel = self._label_binarizer.y_type_ == "multilabel-indicator"
        two_columns = self.n_outputs_ == 1 and not multilabel
        names = None if not labels else "indicator" if multilabel else self.classes_
        if two_columns and len(self.classes_) == 1:  # one class seen: predict gives it, whatever p
            names = numpy.repeat(self.classes_, 2) if labels else None
        return onnx_export.to_onnx(self._net, path, probabilities=probabilities, binary_two_columns=two_columns,
                                   labels=names, opset=opset)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor trained by gpubackprop, as scikit-learn's ``MLPRegressor``:
    identity outputs, one per target column (multi-output: y of shape (n_samples, n_outputs)),
    squared-error loss (``loss="squared_error"``, the only one here).

    Parameters and fitted attributes: as ``MLPClassifier`` (without ``classes_``), plus ``loss``.
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, backend=None, dtype=None, precision="fp32"):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.precision = precision

    def _check_loss(self):
        if self.loss != "squared_error":
            raise ValueError(f"loss must be 'squared_error' (the only regression loss here), got {self.loss!r}")

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and y (n_samples,) or (n_samples, n_outputs) for up
        to ``max_iter`` epochs; returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing from the current network and optimizer state; returns self."""
        return self._fit(X, y, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=(numpy.float64, numpy.float32),
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _loss_for(self, Y):
        return "mse", "identity"

    @staticmethod
    def _out_activation_name(loss):
        return "identity"

    def _score_on(self, X, y):
        outputs = self._net.predict(X)
        return r2_score(y, outputs.ravel() if outputs.shape[1] == 1 else outputs)

    def predict(self, X):
        """The predictions, (n_samples,) for one output, else (n_samples, n_outputs), in X's dtype
        (see the module's notes)."""
        outputs = self._predict_outputs(X)
        return outputs.ravel() if outputs.shape[1] == 1 else outputs

    def to_onnx(self, path=None, *, opset=None):
        """The fitted network as an ONNX model (see ``gpubackprop.onnx.to_onnx``): input "X",
        output "Y" (n_samples, n_outputs) equal to ``predict`` (which ravels one output to
        (n_samples,)). Written to ``path`` when given; returns the ``onnx.ModelProto``."""
        from . import onnx as onnx_export
        check_is_fitted(self)
        return onnx_export.to_onnx(self._net, path, opset=opset)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n_samples, n_outputs)
        return tags
