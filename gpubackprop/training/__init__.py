"""Training on a whole data set: ``fit`` (the epoch loop, ``loop``) over an epoch runner
(``epochs``: local, or data-parallel), with ``callbacks`` (progress, early stopping, your own)
between epochs, and ``predict``/``evaluate`` (``evaluation``). What ``fit`` returns: ``History``."""
from .. import defaults
from ..layouts import STEPS_PER_LAUNCH
from .callbacks import Callback, EarlyStopping
from .evaluation import evaluate, predict
from .history import Evaluation, History
from .loop import fit
from .progress import ProgressLine, progress_wanted

# fit's defaults (gpubackprop.defaults), under the names they always had here.
DEFAULT_EPOCHS, DEFAULT_BATCH_SIZE, DEFAULT_LR = defaults.EPOCHS, defaults.BATCH_SIZE, defaults.LR

__all__ = ["Callback", "DEFAULT_BATCH_SIZE", "DEFAULT_EPOCHS", "DEFAULT_LR", "EarlyStopping", "Evaluation", "History",
           "ProgressLine", "STEPS_PER_LAUNCH", "evaluate", "fit", "predict", "progress_wanted"]
