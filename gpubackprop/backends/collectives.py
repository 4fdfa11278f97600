"""Where a data-parallel step's all-reduce runs, per device (see ``gpubackprop.distributed``).

A transport reduces a flat payload [means..., count, rows] in place on every rank: each rank weights
its means (over its local batch: gradients, loss, checks) by its batch's rows, the weighted means,
the counts (right predictions) and the rows are summed over the ranks, and the weighted means are
divided by the global rows. Three transports:

- ``HostAllreduce`` (NumPy arrays): MPI all-reduce, in place, on the array itself.
- ``NcclAllreduce`` (CuPy arrays): NCCL on the current stream: queued work only, so the step's CUDA
  graph records it with the rest; a CUDA event polled against the deadline bounds the wait.
- ``StagedAllreduce`` (CuPy arrays, when NCCL cannot run: not installed, or two ranks on one GPU,
  which NCCL refuses): device to pinned host memory, the MPI all-reduce there, back to the device.
  It waits for the device, so it cannot be recorded in a graph (``capturable`` False).
"""
from __future__ import annotations

import numpy

from ..layouts import PAYLOAD_TAIL


def transport_for(backend, comm):
    """The transport for arrays of ``backend``; collective (every rank calls it, and every rank gets
    the same kind, so that the ranks always run the same collectives)."""
    if backend.name == "numpy":
        return HostAllreduce(comm)
    problem = nccl_problem(comm.allgather_object(_nccl_facts(backend), what="the choice of NCCL"))
    if problem is None:
        return NcclAllreduce(comm, backend)
    return StagedAllreduce(comm, backend, problem)


def _nccl_facts(backend):
    """(host, device identity, None or why NCCL cannot be used on this rank)."""
    import socket
    import warnings

    import cupy

    device = cupy.cuda.Device(backend.device_id).pci_bus_id
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CuPy warns at import when libnccl is missing: we say it ourselves
            from cupy.cuda import nccl
        why = None if nccl.available else \
            "NCCL is not installed (pip install nvidia-nccl-cu12 or nvidia-nccl-cu13, to match CuPy's CUDA)"
    except Exception as exc:
        why = f"NCCL is not importable ({type(exc).__name__}: {exc})"
    return socket.gethostname(), device, why


def nccl_problem(facts) -> str | None:
    """None when NCCL can serve every rank; otherwise why not. ``facts``: one (host, device, why) per rank."""
    for rank, (_, _, why) in enumerate(facts):
        if why:
            return f"rank {rank}: {why}"
    seen = {}
    for rank, (host, device, _) in enumerate(facts):
        other = seen.setdefault((host, device), rank)
        if other != rank:
            return f"ranks {other} and {rank} share the GPU {device} on {host} (NCCL needs one GPU per rank)"
    return None


def _views(payload):
    """(payload, the means, all but the rows, the rows) of a payload [means..., count, rows]: the
    gradients and the status up to its right predictions are means, the predictions a count (see
    ``layouts.PAYLOAD_TAIL``)."""
    start = payload.shape[0] - len(PAYLOAD_TAIL)  # where the tail begins
    count, rows = start + PAYLOAD_TAIL.correct, start + PAYLOAD_TAIL.rows
    return payload, payload[:count], payload[:rows], payload[rows:rows + 1]


class HostAllreduce:
    """The MPI all-reduce of a NumPy payload, in place."""

    name = "mpi"
    capturable = True  # nothing to record on the CPU: it simply runs

    def __init__(self, comm):
        self._comm = comm
        self._views = (None, None, None, None)  # the last payload seen and its views

    def reduce_mean(self, payload, batch):
        if self._views[0] is not payload:
            self._views = _views(payload)
        _, means, contribution, rows = self._views
        if batch:
            numpy.multiply(means, batch, means)
        else:
            contribution.fill(0)
        rows[0] = batch
        self._comm.allreduce(payload, what="the gradient all-reduce")
        numpy.divide(means, rows, means)

    def broadcast(self, array, root=0):
        self._comm.broadcast(array, root=root, what="the broadcast of rank 0's parameters")

    def wait(self):
        pass


class StagedAllreduce:
    """The MPI all-reduce of a CuPy payload through pinned host memory."""

    capturable = False

    def __init__(self, comm, backend, reason):
        self.name = "mpi (host-staged)"
        self.reason = reason
        self._comm = comm
        self._host = HostAllreduce(comm)
        self._buffers = {}  # (size, dtype) -> pinned NumPy array

    def _pinned(self, array):
        import cupyx

        key = (array.size, array.dtype.name)
        host = self._buffers.get(key)
        if host is None:
            host = self._buffers[key] = cupyx.empty_pinned((array.size,), dtype=array.dtype)
        return host

    def reduce_mean(self, payload, batch):
        host = self._pinned(payload)
        payload.get(out=host)  # waits for the step's queued work
        self._host.reduce_mean(host, batch)
        payload.set(host)

    def broadcast(self, array, root=0):
        host = self._pinned(array).reshape(array.shape)
        array.get(out=host)
        self._host.broadcast(host, root)
        array.set(host)

    def wait(self):
        pass


class NcclAllreduce:
    """NCCL on the current CUDA stream (its unique id bootstrapped over MPI, as ``cupyx.distributed``)."""

    name = "nccl"
    capturable = True

    def __init__(self, comm, backend):
        import cupy
        from cupy.cuda import nccl

        self._cupy, self._nccl = cupy, nccl
        self._comm = comm
        self._device = cupy.cuda.Device(backend.device_id)
        unique_id = comm.broadcast_object(nccl.get_unique_id() if comm.is_root else None,
                                          what="the broadcast of the NCCL unique id")
        with self._device:
            self._nccl_comm = nccl.NcclCommunicator(comm.world_size, unique_id, comm.rank)
            self._event = cupy.cuda.Event(block=False, disable_timing=True)
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64, "int64": nccl.NCCL_INT64}
        self._views = (None, None, None, None)

    def reduce_mean(self, payload, batch):
        cupy = self._cupy
        if self._views[0] is not payload:
            self._views = _views(payload)
        _, means, contribution, rows = self._views
        if batch:
            cupy.multiply(means, batch, out=means)
        else:
            contribution.fill(0)
        rows.fill(batch)
        stream = cupy.cuda.get_current_stream()  # the capture stream while a graph records the step
        self._nccl_comm.allReduce(payload.data.ptr, payload.data.ptr, payload.size, self._types[payload.dtype.name],
                                  self._nccl.NCCL_SUM, stream.ptr)
        cupy.divide(means, rows, out=means)

    def broadcast(self, array, root=0):
        stream = self._cupy.cuda.get_current_stream()
        self._nccl_comm.broadcast(array.data.ptr, array.data.ptr, array.size, self._types[array.dtype.name], root,
                                  stream.ptr)
        self.wait()

    def wait(self):
        """Wait for the queued work, polling an event against the deadline; past it, abort the NCCL
        communicator (which ends its kernels) and raise."""
        event = self._event
        event.record(self._cupy.cuda.get_current_stream())
        self._comm.poll(lambda: event.done, "the NCCL all-reduce", on_timeout=self._nccl_comm.abort)
        self._nccl_comm.check_async_error()
