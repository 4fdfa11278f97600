"""Data-parallel training over MPI (mpi4py): one process (rank) per device, each holding a replica of
the network and a shard of the data, the gradients summed across ranks every step.

    import gpubackprop as gb

    comm = gb.distributed.init()                      # MPI.COMM_WORLD; launched by mpiexec -n 4
    X_shard, Y_shard = comm.shard(X, Y)               # this rank's block of rows
    net = gb.MLP([784, 256, 10], backend=comm.device())   # "cupy:<local rank>" on a GPU node, else "numpy"
    history = net.fit(X_shard, Y_shard, epochs=10, batch_size=64, lr=0.1, comm=comm)
    if comm.is_root:
        net.save("model.npz")

What one data-parallel step is (``GradientSync``): every rank computes the loss and the flat gradient
buffer of its local batch, then one all-reduce over [gradients, loss, gradient check, batch size]
(each rank's values weighted by its batch size, the sum divided by the global batch size) leaves every
rank with the loss and the gradients of ONE step on the concatenation of all ranks' batches; the
guarded update then runs identically everywhere, and a NaN/Inf on any rank refuses the step on all.

Where the all-reduce runs (``gpubackprop.backends.collectives``): on the CPU an in-place MPI
all-reduce of the NumPy buffer; on CuPy an NCCL all-reduce on the step's stream (recorded inside the
step's CUDA graph), or, where NCCL cannot run (not installed, two ranks on one GPU), an MPI all-reduce
staged through host memory; ``GradientSync.transport`` names the one chosen.

Faults: every collective this module posts is non-blocking and polled against a deadline
(``timeout``, 60 s by default, or the ``GPUBACKPROP_COMM_TIMEOUT`` environment variable): a rank that
died, hangs or left the training makes the others raise ``DistributedTimeoutError`` (naming the
operation and the deadline) instead of waiting forever. ``init`` also makes an unhandled exception on
any rank abort the whole job at once (MPI_Abort, as ``python -m mpi4py`` does), so the others need not
wait for the deadline.

mpi4py is an optional dependency (``pip install 'mpi4py>=4' 'mpich>=4'``, from a source checkout
``pip install '.[distributed]'``); importing gpubackprop
never imports it, and without it every function here raises ``DistributedUnavailableError`` saying how
to install it.
"""
from __future__ import annotations

import atexit
import math
import numbers
import os
import pickle
import sys
import time
import traceback
import zlib

import numpy

from .backends import available_backends
from .backends.collectives import transport_for
from .extras import install_hint
from .errors import DistributedError, DistributedTimeoutError, DistributedUnavailableError

ENV_TIMEOUT = "GPUBACKPROP_COMM_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
INSTALL_HINT = install_hint("distributed") + " (mpi4py and the MPICH library, both from PyPI)"
# Environment variables through which MPI launchers announce the job's size (MPICH/Intel MPI's Hydra,
# Open MPI, MVAPICH): how `gpubackprop train` knows it runs under mpiexec.
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# Polling a pending collective: spin (the common case: the others are about to arrive, and MPI makes
# progress only while polled), yielding the core to any other runnable process after _SPIN_SECONDS (so
# that oversubscribed ranks leave the cores to those still computing), and past _YIELD_SECONDS sleep
# between polls (a long wait: another rank's step is much longer, or it has failed).
_SPIN_SECONDS = 5e-5
_YIELD_SECONDS = 2e-2
_MAX_SLEEP = 1e-3
_yield_core = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))  # no sched_yield on Windows


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedUnavailableError(
            f"data-parallel training needs mpi4py and an MPI library, and importing mpi4py failed "
            f"({type(exc).__name__}: {exc}); to fix: {INSTALL_HINT}, then launch with "
            f"`mpiexec -n 4 python train.py`") from None
    return MPI


def launched_world_size() -> int:
    """The number of ranks an MPI launcher (mpiexec, mpirun) started this process among; 1 when none did."""
    for name in _LAUNCHER_SIZE_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def init(mpi_comm=None, *, timeout=None, abort_on_error=True) -> "Communicator":
    """The communicator of this data-parallel job (``mpi_comm``: an mpi4py communicator, default
    ``MPI.COMM_WORLD``).

    ``timeout``: seconds any collective may wait for the other ranks before raising
    ``DistributedTimeoutError`` (default: the ``GPUBACKPROP_COMM_TIMEOUT`` environment variable, else
    60). ``abort_on_error``: an unhandled exception on this rank aborts every rank at once
    (``MPI_Abort`` after the traceback is printed) instead of leaving the others to the deadline.

    Raises:
        ValueError: ``timeout`` (or the environment variable) is not a finite positive number of
            seconds; checked before MPI starts.
        DistributedUnavailableError: mpi4py (or an MPI library) is missing; the message says what to
            install (the hint of ``gpubackprop.extras``: ``pip install mpi4py mpich``).
    """
    if timeout is None:
        text = os.environ.get(ENV_TIMEOUT)
        timeout = DEFAULT_TIMEOUT if not text else _float_from_env(text)
    _check_timeout(timeout)  # before MPI starts: a bad argument changes nothing
    MPI = _mpi()
    comm = Communicator(MPI.COMM_WORLD if mpi_comm is None else mpi_comm, timeout=timeout)
    if abort_on_error:
        _abort_on_unhandled_exception(comm.mpi)
    return comm


def _float_from_env(text):
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"the environment variable {ENV_TIMEOUT} must be a number of seconds, got {text!r}") from None


def _check_timeout(timeout):
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a finite positive number of seconds, got {timeout!r}")


def _abort_on_unhandled_exception(mpi_comm):
    if getattr(sys.excepthook, "_gpubackprop_aborts", False):
        return

    def hook(kind, value, tb):
        # One write, then a moment for the launcher to forward it: MPI_Abort tears the job down at once.
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"{text}gpubackprop.distributed: rank {mpi_comm.Get_rank()} of {mpi_comm.Get_size()} "
                         f"aborts the job after this error: {kind.__name__}\n")
        sys.stderr.flush()
        time.sleep(0.2)
        mpi_comm.Abort(1)

    hook._gpubackprop_aborts = True
    sys.excepthook = hook


class Communicator:
    """The ranks of one data-parallel job, over an mpi4py communicator (``mpi``).

    ``rank``, ``world_size``, ``local_rank`` (among the ranks on this host), ``is_root`` (rank 0) and
    ``timeout`` (seconds) are attributes. Every collective below is polled against the deadline.
    """

    def __init__(self, mpi_comm, *, timeout=DEFAULT_TIMEOUT):
        _check_timeout(timeout)
        MPI = _mpi()
        if not isinstance(mpi_comm, MPI.Intracomm):
            raise TypeError(f"Communicator needs an mpi4py intracommunicator such as MPI.COMM_WORLD, "
                            f"got {type(mpi_comm).__name__}")
        self._MPI = MPI
        self.mpi = mpi_comm
        self.timeout = float(timeout)
        self.rank = mpi_comm.Get_rank()
        self.world_size = mpi_comm.Get_size()
        self.is_root = self.rank == 0
        local = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = local.Get_rank()
        local.Free()
        self._syncs = {}  # id(backend) -> (backend, GradientSync)
        self._broken = None  # why a collective was abandoned (then MPI_Finalize could wait forever)

    def __repr__(self):
        return f"Communicator(rank {self.rank} of {self.world_size}, local rank {self.local_rank}, timeout {self.timeout:g} s)"

    # ------------------------------------------------------------------ placement
    def device(self) -> str:
        """The backend for this rank: the accelerator of index ``local_rank`` (modulo those of this
        host: more ranks than GPUs share them) when there is one, e.g. "cupy:1"; else "numpy"."""
        accelerators = [name for name in available_backends() if name != "numpy"]
        return accelerators[self.local_rank % len(accelerators)] if accelerators else "numpy"

    def shard(self, *arrays):
        """This rank's contiguous block of rows of each array (views, no copies): ``numpy.array_split``'s
        blocks, so the shards' sizes differ by at most one row. ``X_shard, Y_shard = comm.shard(X, Y)``."""
        if not arrays:
            raise TypeError("shard needs at least one array, e.g. comm.shard(X, Y)")
        lengths = [len(array) for array in arrays]
        if len(set(lengths)) != 1:
            raise ValueError(f"shard needs arrays with the same number of rows, got {lengths}")
        n = lengths[0]
        if n < self.world_size:
            raise ValueError(f"cannot shard {n} rows over {self.world_size} ranks: every rank needs at least one row")
        start, stop = n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size
        blocks = tuple(array[start:stop] for array in arrays)
        return blocks[0] if len(blocks) == 1 else blocks

    # ------------------------------------------------------------------ collectives on host arrays
    def wait(self, request, what: str):
        """Wait for an mpi4py request, polling; past the deadline raise ``DistributedTimeoutError``."""
        self.poll(request.Test, what)

    def poll(self, done, what: str, on_timeout=None):
        """Call ``done()`` until it is true: spinning at first, then sleeping between calls (so that
        oversubscribed ranks leave the cores to those still computing). Past the deadline, call
        ``on_timeout()`` (if given) and raise ``DistributedTimeoutError`` naming ``what``."""
        if done():
            return
        start = time.monotonic()
        pause = 1e-4
        while not done():
            waited = time.monotonic() - start
            if waited > self.timeout:
                if on_timeout is not None:
                    on_timeout()
                self._abandon(what)
            if waited > _YIELD_SECONDS:
                time.sleep(pause)
                pause = min(2 * pause, _MAX_SLEEP)
            elif waited > _SPIN_SECONDS:
                _yield_core()

    def _abandon(self, what):
        message = (f"rank {self.rank} of {self.world_size}: {what} did not complete within {self.timeout:g} s: "
                   f"another rank died, hangs or stopped taking part (set the deadline with "
                   f"gb.distributed.init(timeout=...) or {ENV_TIMEOUT})")
        if self._broken is None:
            # The abandoned request stays posted: at exit, abort the job rather than let MPI_Finalize wait.
            atexit.register(self.mpi.Abort, 1)
        self._broken = message
        raise DistributedTimeoutError(message)

    def allreduce(self, array, op="sum", what="an all-reduce"):
        """In place over every rank: ``array`` (a C-contiguous NumPy array) becomes the elementwise
        sum (``op="sum"``) or max (``"max"``) of every rank's ``array``."""
        mpi_op = {"sum": self._MPI.SUM, "max": self._MPI.MAX}[op]
        self.wait(self.mpi.Iallreduce(self._MPI.IN_PLACE, array, op=mpi_op), what)
        return array

    def broadcast(self, array, root=0, what="a broadcast"):
        """In place: every rank's ``array`` (C-contiguous NumPy) becomes rank ``root``'s."""
        self.wait(self.mpi.Ibcast(array, root=root), what)
        return array

    def allgather(self, values, what="an all-gather"):
        """A (world_size, k) array whose row r is rank r's ``values`` (k numbers, float64)."""
        mine = numpy.ascontiguousarray(values, dtype=numpy.float64).reshape(-1)
        out = numpy.empty((self.world_size, mine.size), dtype=numpy.float64)
        self.wait(self.mpi.Iallgather(mine, out), what)
        return out

    def allgather_object(self, obj, what="an all-gather"):
        """A list whose item r is rank r's ``obj`` (any picklable object; for setup, not per step)."""
        mine = numpy.frombuffer(pickle.dumps(obj), dtype=numpy.uint8)
        counts = self.allgather([mine.size], what=what)[:, 0].astype(numpy.int64)
        data = numpy.empty(int(counts.sum()), dtype=numpy.uint8)
        self.wait(self.mpi.Iallgatherv(mine, [data, counts]), what)
        bounds = numpy.concatenate(([0], numpy.cumsum(counts)))
        return [pickle.loads(data[a:b].tobytes()) for a, b in zip(bounds[:-1], bounds[1:])]

    def broadcast_object(self, obj, root=0, what="a broadcast"):
        """Rank ``root``'s ``obj`` on every rank (pickled; for setup, not per step)."""
        return self.allgather_object(obj if self.rank == root else None, what=what)[root]

    def barrier(self, what="a barrier"):
        self.wait(self.mpi.Ibarrier(), what)

    def agree(self, what: str, **values):
        """Raise ``DistributedError`` on every rank unless every rank passed the same ``values``
        (e.g. ``agree("fit", batch_size=64, epochs=3)``), naming what differs and where."""
        everyone = self.allgather_object(values, what=f"the agreement on {what}")
        for name in values:
            seen = [ranks[name] for ranks in everyone]
            if any(value != seen[0] for value in seen[1:]):
                listing = ", ".join(f"rank {r}: {value!r}" for r, value in enumerate(seen))
                raise DistributedError(f"the ranks disagree on {what}'s {name} ({listing}); every rank must "
                                       f"pass the same value")

    # ------------------------------------------------------------------ networks
    def gradient_sync(self, backend) -> "GradientSync | None":
        """The (cached) gradient all-reduce for networks on ``backend``; collective (every rank calls
        it). None for a single rank: its steps are the ordinary ones, bit for bit."""
        if self.world_size == 1:
            return None
        hit = self._syncs.get(id(backend))
        if hit is None or hit[0] is not backend:
            hit = self._syncs[id(backend)] = (backend, GradientSync(self, transport_for(backend, self)))
        return hit[1]

    def broadcast_params(self, net):
        """Every rank's parameters and optimizer state become rank 0's (bit for bit), whatever seed
        each rank used; the ranks must hold the same network (architecture, loss, optimizer, dtype:
        checked first, with an error naming the difference)."""
        self.agree("the network", layer_sizes=list(net.layer_sizes), activations=list(net.activations),
                   dtype=net.dtype.name, loss=net.loss_spec.name, optimizer=net.optimizer.describe(),
                   precision=net.precision)
        sync = self.gradient_sync(net.backend)
        if sync is not None:
            params = net.steps.params
            for array in (params.flat, params.optimizer_state, params.step):
                if array.size:
                    sync.transport.broadcast(array)

    def plan(self, net, rows: int, *, batch_size: int, **arguments) -> "Plan":
        """What ``fit(..., comm=self)`` needs to train as one: checks that every rank passed the same
        ``batch_size`` and ``arguments`` and the same architecture, broadcasts rank 0's parameters,
        and agrees on the steps per epoch from every rank's ``rows``. Collective."""
        self.agree("fit", batch_size=batch_size, **arguments)
        self.broadcast_params(net)
        counts = [int(c) for c in self.allgather([rows], what="the exchange of shard sizes")[:, 0]]
        return Plan(self, net, counts, batch_size)


def params_crc(net) -> int:
    """CRC-32 of the network's parameter bytes (equal replicas give equal checksums)."""
    return zlib.crc32(memoryview(numpy.ascontiguousarray(net.backend.to_numpy(net.steps.params.flat))).cast("B"))


def _same_replicas(checksums, when):
    if len(set(checksums.tolist())) != 1:
        raise DistributedError(f"the replicas' parameters differ{when} (CRC-32 per rank: "
                               f"{', '.join(f'{int(c):08x}' for c in checksums)}): the ranks no longer "
                               f"train one network")


class GradientSync:
    """The all-reduce of a data-parallel step over one device's buffers (``Communicator.gradient_sync``).

    ``transport`` names where it runs ("mpi", "nccl", "mpi (host-staged)") and ``capturable`` says
    whether a CUDA graph may record it; ``seconds`` adds up the time spent in it (the host's view: on
    NCCL the queued work only).
    """

    def __init__(self, comm, transport):
        self.comm = comm
        self.transport = transport
        self.name = transport.name
        self.capturable = transport.capturable
        self.seconds = 0.0

    def __repr__(self):
        return f"GradientSync({self.name}, {self.comm!r})"

    def reduce_mean(self, payload, batch: int):
        """In place on every rank: ``payload`` = [values..., count] (a flat backend array whose values
        are this rank's means over ``batch`` rows: gradients, loss, gradient check) becomes the means
        over the global batch, Σ_r batch_r·values_r / Σ_r batch_r, with count = Σ_r batch_r. A rank with
        no batch this step passes ``batch=0`` (its values are ignored). Queued work only where the
        transport allows (NCCL), so a CUDA graph may record it."""
        start = time.perf_counter()
        self.transport.reduce_mean(payload, batch)
        self.seconds += time.perf_counter() - start

    def wait(self):
        """Wait, within the deadline, for the queued all-reduce (NCCL); a no-op where it completed already."""
        self.transport.wait()


class Plan:
    """How the ranks of one ``fit`` step through an epoch together.

    Every rank cuts its shard into batches of ``batch_size`` rows (the last one partial); the epoch
    has as many steps as the largest shard has batches (``steps``), and a rank whose shard ran out
    takes part in the remaining steps' all-reduce with no rows (weight 0), so no rank waits
    for a collective that the others never post. ``step_rows[s]``: the rows of step s over all
    ranks (the weight of its loss in the epoch's mean); ``rows``: the rows of every shard.
    """

    def __init__(self, comm, net, counts, batch_size):
        self.comm, self.is_root = comm, comm.is_root
        self.sync = comm.gradient_sync(net.backend)
        self.rows = sum(counts)
        self.steps = max(-(-count // min(batch_size, count)) for count in counts)
        self.step_rows = [sum(max(0, min(min(batch_size, count), count - s * min(batch_size, count)))
                              for count in counts) for s in range(self.steps)]

    def end_epoch(self, net, epoch, seconds, val_total, val_correct, val_rows):
        """(the slowest rank's seconds, then the sums over every rank of the validation's Σ loss·rows,
        right predictions and rows), after checking that every replica holds the same parameters,
        bit for bit."""
        table = self.comm.allgather([seconds, val_total, val_correct, val_rows, params_crc(net)],
                                    what=f"the end of epoch {epoch}")
        _same_replicas(table[:, 4], f" after epoch {epoch}")
        return float(table[:, 0].max()), float(table[:, 1].sum()), float(table[:, 2].sum()), int(table[:, 3].sum())
