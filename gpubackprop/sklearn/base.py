"""What both estimators share: parameter checks, the network built and kept, the epoch loop with
scikit-learn's stopping rule, pickling (see the package's documentation)."""
from __future__ import annotations

import numbers
import warnings

import numpy
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import optimizers, validation
from ..backends import get_backend
from ..errors import BackendUnavailableError
from ..model import MLP

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
    _check_unused_sklearn_params(est)
    for name in ("max_iter", "n_iter_no_change"):
        try:  # the library's rule; scikit-learn's estimators raise ValueError for any bad parameter
            validation.positive_int(name, getattr(est, name))
        except TypeError as exc:
            raise ValueError(str(exc)) from None
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


def _check_unused_sklearn_params(est):
    """scikit-learn's names for what gpubackprop does not have: ``learning_rate`` "constant" (its
    default, the only schedule here), ``power_t`` (of "invscaling") and ``max_fun`` (of "lbfgs"),
    accepted with the values scikit-learn accepts; they then change nothing, as in scikit-learn."""
    if est.learning_rate in ("invscaling", "adaptive"):
        raise ValueError(f"learning_rate={est.learning_rate!r} is not available: gpubackprop's estimators train at "
                         f"the constant learning_rate_init (use learning_rate='constant', scikit-learn's default; "
                         f"gpubackprop.MLP.fit takes schedules as lr=gpubackprop.optimizers.StepLR(...) etc.)")
    if est.learning_rate != "constant":
        raise ValueError(f"learning_rate must be 'constant' (scikit-learn's 'invscaling' and 'adaptive' are not "
                         f"available), got {est.learning_rate!r}")
    power_t = est.power_t
    if isinstance(power_t, bool) or not isinstance(power_t, numbers.Real) or not power_t >= 0 \
            or not numpy.isfinite(power_t):
        raise ValueError(f"power_t must be a finite real number >= 0 (it applies to learning_rate='invscaling' "
                         f"only, which gpubackprop does not have), got {power_t!r}")
    try:
        validation.positive_int("max_fun", est.max_fun)  # (lbfgs only, which gpubackprop does not have)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


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
        X, Y, val = self._split_validation(X, Y, rng) if self.early_stopping else (X, Y, None)
        n_train = X.shape[0]
        batch_size = min(200, n_train) if self.batch_size == "auto" else self.batch_size
        if batch_size > n_train:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = n_train
        options = self._network_options(layer_sizes, loss, output_activation, batch_size)
        net = self._network_for(first_pass, incremental, options, layer_sizes, rng)
        self.n_outputs_ = Y.shape[1]
        self.out_activation_ = self._out_activation_name(loss)
        # The data goes to the device once; each epoch is one fit call on it (the network keeps the
        # epoch's buffers and recorded work between calls).
        Xd, Yd = net.backend.asarray(X, net.dtype), net.backend.asarray(Y, net.dtype)
        loss_scale = 1.0 / Y.shape[1] if loss == "mse" else 1.0  # scikit-learn's squared error: mean over outputs
        self._epochs(net, Xd, Yd, batch_size, loss_scale, options["weight_decay"], rng, incremental, val)
        return self

    def _split_validation(self, X, Y, rng):
        """(X, Y, (X_val, y_val)): early stopping's held-out rows, as scikit-learn splits them."""
        stratify = Y if (is_classifier(self) and Y.shape[1] == 1) else None
        X, X_val, Y, Y_val = train_test_split(X, Y, random_state=rng, test_size=self.validation_fraction,
                                              stratify=stratify)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size "
                             "of your dataset.")
        y_val = self._label_binarizer.inverse_transform(Y_val if Y_val.shape[1] > 1 else Y_val.ravel()) \
            if is_classifier(self) else (Y_val.ravel() if Y_val.shape[1] == 1 else Y_val)
        return X, Y, (X_val, y_val)

    def _network_for(self, first_pass, incremental, options, layer_sizes, rng):
        """A new network (first pass), or the fitted one with these options (warm start, partial_fit)."""
        if first_pass:
            self._net = self._new_network(options, seed=int(rng.randint(_SEED_RANGE)))
            self.t_ = 0
            self.n_layers_ = len(layer_sizes)
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
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
        return self._net

    def _epochs(self, net, Xd, Yd, batch_size, loss_scale, weight_decay, rng, incremental, val):
        """The epochs, one fit call each, with scikit-learn's stopping rule (``tol``, ``n_iter_no_change``)."""
        best_params = None
        self.n_iter_ = 0  # epochs of this call, as scikit-learn counts them (loss_curve_ and t_ go on)
        try:
            for _ in range(1 if incremental else self.max_iter):
                history = net.fit(Xd, Yd, epochs=1, batch_size=batch_size, lr=self.learning_rate_init,
                                  shuffle=bool(self.shuffle), seed=int(rng.randint(_SEED_RANGE)), progress=False)
                epoch_loss = history.records[-1]["loss"] * loss_scale
                if weight_decay:  # the L2 term as scikit-learn adds it: α/(2n)·Σ‖W‖² (n: the batch size)
                    epoch_loss += 0.5 * weight_decay * sum(float((W * W).sum()) for W in net.weights)  # on the device
                self.n_iter_ += 1
                self.t_ += Xd.shape[0]
                self.loss_ = epoch_loss
                self.loss_curve_.append(epoch_loss)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, epoch_loss))
                if val is not None and self._validation_improved(val):
                    best_params = net.get_params()
                elif val is None:
                    self._loss_improved(epoch_loss)
                if self._no_improvement_count > self.n_iter_no_change:
                    if self.verbose:
                        what = "Validation score" if val is not None else "Training loss"
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
        if best_params is not None:
            net.set_params(best_params)

    def _validation_improved(self, val) -> bool:
        """Early stopping's bookkeeping for this epoch; True when the score is the best so far."""
        score = self._score_on(*val)
        self.validation_scores_.append(score)
        if self.verbose:
            print("Validation score: %f" % score)
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            return True
        return False

    def _loss_improved(self, epoch_loss):
        if epoch_loss > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if epoch_loss < self.best_loss_:
            self.best_loss_ = epoch_loss

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
