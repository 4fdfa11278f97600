"""PyTorch for the benchmark's torch cases: whether it is there, its device and model, its
optimizer and graph capture as ours compare against."""
from __future__ import annotations

import contextlib
import os

import numpy

from .data import LEARNING_RATE, _data
from .timing import blas_threads


def torch_status():
    """(torch module or None, why not)."""
    # torch's OpenMP threads otherwise spin after each parallel region, stealing the cores from
    # the next case of the round (NumPy's BLAS threads): set before torch first loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except Exception as exc:
        return None, f"not installed ({type(exc).__name__})"
    return torch, None


def _torch_device(backend, name, threads=None, needs_cuda=False):
    """(torch, device, timer) for a torch case on ``backend``'s device, or (None, why, None)."""
    torch, why = torch_status()
    if torch is None:
        return None, why, None
    device = torch.device(backend.device)  # "cpu" or "cuda:N": the same words in torch
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None, f"torch {torch.__version__} has no CUDA device", None
        return torch, device, torch_event_timer(torch, device)
    if needs_cuda:
        return None, f"skipped: needs CUDA ({name} replays a torch.cuda.graph; this backend computes on the CPU)", None
    torch.set_num_threads(threads or blas_threads())  # the same thread count as NumPy's BLAS
    return torch, device, backend.timer()


def _torch_model(torch, device, sizes, batch, dtype, rows=None, loss="mse"):
    """Parameters as ours start (same initial weights), data on ``device``, and the loss of a
    batch as a function: forward (F.linear, sigmoid), then L = Σ (ŷ − y)² / (2 batch), or
    F.cross_entropy on integer labels, or F.binary_cross_entropy_with_logits summed / batch."""
    import torch.nn.functional as F

    tdtype = {"float32": torch.float32, "float64": torch.float64}[numpy.dtype(dtype).name]
    init = _initial_params(sizes)  # same start as ours
    params = []
    for W, b in init:
        params.append(torch.tensor(W, dtype=tdtype, device=device, requires_grad=True))
        params.append(torch.tensor(b, dtype=tdtype, device=device, requires_grad=True))
    X, Y, labels = _data(sizes, rows or batch, loss=loss)
    X = torch.tensor(X, dtype=tdtype, device=device)
    Y = torch.tensor(Y, dtype=tdtype, device=device) if labels is None else torch.tensor(labels, device=device)
    layers = [(params[2 * i], params[2 * i + 1]) for i in range(len(init))]
    scale = (0.5 if loss == "mse" else 1.0) / batch
    criterion = {"mse": F.mse_loss, "softmax_cross_entropy": None,
                 "sigmoid_binary_cross_entropy": F.binary_cross_entropy_with_logits}[loss]

    def loss_of(X, Y):
        a = X
        for i, (W, b) in enumerate(layers):
            a = F.linear(a, W, b)
            if i < len(layers) - 1:
                a = torch.sigmoid(a)
        if criterion is None:
            return F.cross_entropy(a, Y)
        return criterion(a, Y, reduction="sum") * scale

    return params, X, Y, loss_of


class _TF32Matmuls:
    """torch.set_float32_matmul_precision("high") (TF32 GEMMs) inside the block, the previous
    setting after. Reusable."""

    def __init__(self, torch):
        self.torch = torch

    def __enter__(self):
        self.previous = self.torch.get_float32_matmul_precision()
        self.torch.set_float32_matmul_precision("high")

    def __exit__(self, *exc):
        self.torch.set_float32_matmul_precision(self.previous)


def _matmul_precision(torch, precision):
    """A context manager for torch's GEMMs in ``precision``; fp32 is torch's default ("highest"):
    nothing to set, so an fp32 step costs what it always did."""
    return _TF32Matmuls(torch) if precision == "tf32" else contextlib.nullcontext()


def _torch_optimizer(torch, params, training, graphed=False):
    """torch.optim's optimizer of ``training`` at its default settings, as ours (momentum 0.9)."""
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=LEARNING_RATE, capturable=graphed)  # capturable: inside a graph
    return torch.optim.SGD(params, lr=LEARNING_RATE, momentum=0.9 if training.optimizer == "momentum" else 0.0)


def _capture(torch, device, work, optimizer, precision):
    """``work()`` (forward, backward, SGD step) captured in a CUDA graph as PyTorch documents
    whole-network capture: warm-up on a side stream, gradients set to None before capture (so the
    captured backward writes them, from the graph's memory pool). Returns (graph, its outputs)."""
    with torch.cuda.device(device), _matmul_precision(torch, precision):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                work()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            outputs = work()
    return graph, outputs


def torch_event_timer(torch, device):
    from ..backends.timers import EventTimer

    with torch.cuda.device(device):
        return EventTimer(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
                          lambda start, stop: start.elapsed_time(stop))


def _initial_params(sizes):
    """[(W, b)] as ours starts (float64 NumPy): every case begins from the same weights."""
    from ..model import MLP

    return MLP(sizes, dtype="float64", backend="numpy", seed=0).get_params()
