"""The model: the ``MLP`` front (``network``), its parameters and optimizer state
(``parameters``), the buffers of a step (``workspace``), and the step itself: forward, loss,
backward, guarded update, recording (``step``)."""
from .network import MLP

__all__ = ["MLP"]
