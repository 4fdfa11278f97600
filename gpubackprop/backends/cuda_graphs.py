"""CUDA graphs: the recorder of the CUDA backend (one per network)."""
from __future__ import annotations

import warnings
import weakref

_SEEN = object()  # a step key met once: recorded at the next meeting
_MAX_RECORDINGS = 16  # per workspace: inputs at ever new addresses stop being recorded


class GraphRecorder:
    """Records one network's step into a CUDA graph at its second call with the same arrays (by
    address) and scalars, and replays the graph from then on.

    A step is a dozen or more launches whose Python and launch overhead dominates at small sizes;
    a graph replays them all in one launch. The first call runs eagerly, so kernels are compiled
    and cuBLAS is initialised outside the capture. If a capture fails, every step of this network
    runs eagerly from then on (the reason is kept in ``error``): a graph is only ever a speed-up.
    Each network has its own recorder: its own capture stream and capturable cuBLAS handle, so
    networks on one device capture and replay independently, from any threads.
    """

    records = True

    def __init__(self, backend):  # a CupyBackend
        self._backend = backend
        self._stream = None
        self._gemm = None
        self._finalizer = None
        self.error = None  # why capturing failed, if it did

    def run(self, step, recordings, arrays, scalars):
        if self.error is not None:
            step()
            return
        key = (*scalars, *(a.data.ptr for a in arrays))
        graph = recordings.get(key)
        if graph is None:
            if len(recordings) >= _MAX_RECORDINGS:  # inputs at ever new addresses: stop keeping their graphs
                recordings.clear()
            recordings[key] = _SEEN
            step()
            return
        if graph is _SEEN:
            graph = self._capture(step)
            if graph is None:
                step()
                return
            recordings[key] = graph
        graph.launch(stream=self._backend.xp.cuda.get_current_stream())

    def _capture(self, step):
        backend = self._backend
        try:
            if self._stream is None:
                self._stream = backend.xp.cuda.Stream(non_blocking=True)
                self._gemm = backend._capturable_gemm(backend.xp, self._stream)
                # The handle goes with the recorder (one per network): destroyed when it is collected.
                self._finalizer = weakref.finalize(self, self._gemm.close)
                self._finalizer.atexit = False  # at exit the CUDA context may be gone already
            with self._stream:
                self._stream.begin_capture()
                backend._capturing.gemm = self._gemm
                try:
                    step()
                finally:
                    backend._capturing.gemm = None
                    graph = self._stream.end_capture()
            return graph
        except Exception as exc:  # kept for the tests and the benchmark's report
            self.error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"gpubackprop: this network's step could not be recorded as a CUDA graph, so every "
                          f"step runs eagerly from now on (slower at small sizes, same numbers): {self.error}",
                          RuntimeWarning, stacklevel=5)
            return None
