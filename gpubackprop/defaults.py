"""The defaults, in one place: the library's (``MLP``, ``fit``) and those of the command line,
which reads them from here.

The library follows the tools users know (Keras: one epoch, batches of 32, SGD at lr 0.01). The
command line trains a task to the end in one call, so it runs longer and, per optimizer, at the
learning rate that trains its built-in task (``gpubackprop train`` with no data) well.
"""
EPOCHS = 1
BATCH_SIZE = 32
LR = 0.01
ACTIVATION = "sigmoid"
OUTPUT_ACTIVATION = "identity"
LOSS = "mse"
OPTIMIZER = "sgd"
DTYPE = "float32"
PRECISION = "fp32"

# gpubackprop train
CLI_EPOCHS = 50
CLI_BATCH_SIZE = BATCH_SIZE
CLI_HIDDEN = (32, 32)
CLI_LR = {"sgd": 0.2, "momentum": 0.02, "adam": 0.01}  # 0.2: the built-in task's SGD; other optimizers: LR
