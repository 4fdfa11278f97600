"""What ``gpubackprop train`` reports: the epoch table, the final line, the plot."""
from __future__ import annotations

from pathlib import Path

from .. import files
from .common import UsageError

LOSS_LABELS = {"mse": "loss  L = 1/(2B) Σ (ŷ − y)²", "softmax_cross_entropy": "loss  −1/B Σ y log softmax(z)",
               "sigmoid_binary_cross_entropy": "loss  binary cross-entropy"}


def plot_history(history, path, title, loss="mse"):
    """Training (and validation) loss per epoch, log scale, and beside it the accuracy when the
    history has one (classification losses); written to ``path`` (no pyplot state)."""
    fig = loss_figure(history, title, loss)
    files.write_atomically(path, lambda handle: fig.savefig(handle, format=plot_format(path)), what="the plot")


def loss_figure(history, title, loss="mse"):
    """The matplotlib Figure of ``plot_history`` (epochs on whole-number ticks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with_accuracy = bool(history.accuracy)
    fig = Figure(figsize=(11.0 if with_accuracy else 6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if with_accuracy else 1, squeeze=False)[0]
    epochs = history["epoch"]
    ax = axes[0]
    ax.plot(epochs, history["loss"], marker="o", markersize=2.5, label="training loss (mean over the epoch's steps)")
    if history.val_loss:
        ax.plot(epochs, history.val_loss, marker="s", markersize=2.5, label="validation loss (end of epoch)")
    if history.best_epoch is not None:
        ax.axvline(history.best_epoch, color="grey", linestyle=":", label=f"best epoch ({history.best_epoch})")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no 1.2, 1.4 ticks
    ax.set_xlabel("epoch")
    ax.set_ylabel(LOSS_LABELS[loss])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if with_accuracy:
        ax = axes[1]
        ax.plot(epochs, [100 * a for a in history.accuracy], marker="o", markersize=2.5,
                label="training accuracy (over the epoch's steps)")
        if history.val_accuracy:
            ax.plot(epochs, [100 * a for a in history.val_accuracy], marker="s", markersize=2.5,
                    label="validation accuracy (end of epoch)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_format(path) -> str:
    """The image format matplotlib writes for the suffix of ``path``; UsageError for one it cannot."""
    from matplotlib.backend_bases import FigureCanvasBase

    supported = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower()[1:]
    if suffix not in supported:
        raise UsageError(f"--plot {path}: matplotlib cannot write {'.' + suffix if suffix else 'a file without a suffix'!r}"
                         f"; use one of {', '.join('.' + name for name in sorted(supported))}")
    return suffix


def row(record) -> str:
    val_text = f"  val {record['val_loss']:.3e}" if "val_loss" in record else ""
    acc_text = "".join(f"  {name} {100 * record[key]:.2f}%" for key, name in
                       (("accuracy", "acc"), ("val_accuracy", "val acc")) if key in record)
    return (f"epoch {record['epoch']:4d}  loss {record['loss']:.3e}{val_text}{acc_text}  "
            f"{record['seconds']:.3f} s  {record['samples_per_s']:,.0f} samples/s")


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def table_step(epochs: int, log_every=None) -> int:
    """Every how many epochs the table shows a row (with the first and the last): ``--log-every``,
    else 1 up to 20 epochs, else epochs // 10 (about ten rows)."""
    if log_every is not None:
        return log_every
    return 1 if epochs <= 20 else max(1, epochs // 10)


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def held_epoch(history, clean: bool):
    """(the epoch whose parameters the network holds, or None when it holds those after the last
    complete step of an unfinished epoch; whether they were restored as the best epoch's)."""
    restored = getattr(history, "restored_best", None)
    if restored is None:  # a library without History.restored_best: it restored only on a clean end
        restored = clean and history.best_epoch is not None and history.best_epoch != len(history)
    if restored:
        return history.best_epoch, True
    return (len(history) if clean and len(history) else None), False


# A training loss above this share of the constant predictor's is "no better than" it.
NO_BETTER = 0.9


def versus_baseline(loss: float, baseline, loss_name: str = "mse") -> str:
    """The training loss beside the loss of the best constant prediction on the training targets
    (``losses.constant_baseline``): the one figure that says whether the network learnt anything."""
    text = f"train loss {loss:.4g}"
    if baseline is None or not baseline > 0:
        return text
    what = "predicting the mean" if loss_name == "mse" else "predicting the class frequencies"
    name = "the mean predictor's" if loss_name == "mse" else "the class-frequency predictor's"
    if loss >= NO_BETTER * baseline:
        return f"{text}, {name} {baseline:.4g}: no better than {what}"
    return f"{text} ({baseline / loss:.1f}x below {name} {baseline:.4g})" if loss > 0 else \
        f"{text} ({name}: {baseline:.4g})"


def final_line(history, held, restored, why, n_train, baseline=None, loss_name="mse") -> str:
    """The metrics of the network that is saved: those of the epoch whose parameters it holds, its
    training loss beside ``baseline`` (the constant predictor's, ``versus_baseline``)."""
    record = history.records[(held or len(history)) - 1]
    metrics = versus_baseline(record["loss"], baseline, loss_name)
    if "val_loss" in record:
        metrics += f", val loss {record['val_loss']:.3e}"
    if "val_accuracy" in record:
        metrics += f", val accuracy {100 * record['val_accuracy']:.2f}%"
    seconds = sum(history["seconds"])
    speed = (f"; {n_train * len(history) / seconds:,.0f} samples/s " if seconds > 0 else "; ") + \
        f"({plural(len(history), 'epoch')} in {seconds:.2f} s)"
    if restored:
        return f"final: epoch {held}'s network (the best: lowest validation loss), restored when {why}: {metrics}{speed}"
    if held is None:
        return (f"final: the network after its last complete step ({why}); the last complete epoch, {len(history)}, "
                f"had {metrics}{speed}")
    return f"final: {metrics}{speed}"
