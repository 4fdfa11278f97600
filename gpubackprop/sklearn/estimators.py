"""``MLPClassifier`` and ``MLPRegressor`` (see the package's documentation)."""
from __future__ import annotations

import numpy
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .. import losses
from .base import _BaseMLP

class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier trained by gpubackprop, as scikit-learn's ``MLPClassifier``.

    Labels: any labels scikit-learn's ``LabelBinarizer`` takes (ints, strings, ...), or a
    multilabel indicator matrix (n_samples, n_labels). Two classes and multilabel: sigmoid outputs
    with ``sigmoid_binary_cross_entropy`` (one output for two classes); more classes: one output
    per class with ``softmax_cross_entropy`` (``gpubackprop.losses``).

    Parameters (scikit-learn's names and defaults, see the module's notes for what differs):
    ``hidden_layer_sizes`` ((100,)), ``activation`` ("relu"), ``solver`` ("adam"), ``alpha``
    (0.0001), ``batch_size`` ("auto": min(200, n_samples)), ``learning_rate_init`` (0.001),
    ``learning_rate`` ("constant", the only schedule), ``power_t`` and ``max_fun`` (accepted, checked
    as scikit-learn checks them, and unused: they apply to "invscaling" and "lbfgs" only),
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
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, backend=None, dtype=None, precision="fp32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
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
        self.max_fun = max_fun
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
        from .. import onnx as onnx_export
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
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend=None, dtype=None, precision="fp32"):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
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
        self.max_fun = max_fun
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
        from .. import onnx as onnx_export
        check_is_fitted(self)
        return onnx_export.to_onnx(self._net, path, opset=opset)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n_samples, n_outputs)
        return tags
