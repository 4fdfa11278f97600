"""What training returns: ``History`` (one record per epoch) and ``Evaluation`` (a loss with its accuracy)."""
from __future__ import annotations


class History:
    """What ``fit`` measured, one record per epoch.

    Each record is a dict: ``epoch`` (1-based, and numbered on from the network's earlier ``fit``
    calls: ``MLP.epochs_trained``), ``loss`` (training loss: the batch-size-weighted mean of the
    epoch's step losses), ``val_loss`` (only with validation data), ``seconds`` (wall time of the
    epoch's training steps, validation excluded) and ``samples_per_s``; for classification losses
    also ``accuracy`` (the share of right predictions over the epoch's steps, each before its
    update) and ``val_accuracy`` (with validation data).
    ``history["loss"]`` gives one column as a list; ``len(history)`` the number of
    epochs. With early stopping: ``best_epoch`` (the best value of the watched metric),
    ``stopped_early`` (True when training stopped before ``epochs``) and ``restored_best`` (True when
    ``restore_best`` put the best epoch's parameters back into the network: the training had gone
    past them, at its end or by an error); else None, False and False.
    """

    def __init__(self):
        self.records: list[dict] = []
        self.best_epoch: int | None = None
        self.stopped_early = False
        self.restored_best = False

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, key):
        if isinstance(key, str):
            if self.records and key not in self.records[0]:
                raise KeyError(f"{key!r}; the history holds {', '.join(self.records[0])}")
            return [record[key] for record in self.records]
        return self.records[key]

    @property
    def loss(self) -> list[float]:
        return self["loss"]

    @property
    def val_loss(self) -> list[float]:
        return self._column("val_loss")

    @property
    def accuracy(self) -> list[float]:
        return self._column("accuracy")

    @property
    def val_accuracy(self) -> list[float]:
        return self._column("val_accuracy")

    def _column(self, key) -> list[float]:
        return self[key] if self.records and key in self.records[0] else []

    def __repr__(self):
        if not self.records:
            return "History(0 epochs)"
        last = self.records[-1]
        extra = "".join(f", {key}={last[key]:.4g}" for key in ("val_loss", "accuracy", "val_accuracy") if key in last)
        return (f"History({len(self)} epoch{'' if len(self) == 1 else 's'}, loss={last['loss']:.4g}{extra}, "
                f"samples_per_s={last['samples_per_s']:.4g})")


class Evaluation(float):
    """What ``MLP.evaluate`` returns: the loss, as a float (so existing code reads it as before),
    with ``.loss`` and ``.accuracy`` (None for a loss that is not a classification loss)."""

    def __new__(cls, loss: float, accuracy: float | None = None):
        self = super().__new__(cls, loss)
        self.accuracy = accuracy
        return self

    @property
    def loss(self) -> float:
        return float(self)

    def __repr__(self):
        accuracy = "" if self.accuracy is None else f", accuracy={self.accuracy!r}"
        return f"Evaluation(loss={float(self)!r}{accuracy})"
