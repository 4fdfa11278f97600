"""The array operations the matrix form of backpropagation needs, written once against ``self.xp``.

Every method takes its output buffer (``out=``) so that a training step reuses preallocated
arrays. ``NumpyBackend`` uses these methods as they are; ``CupyBackend`` overrides the
elementwise ones with the fused CUDA kernels in ``kernels/`` (same operations, same order).
"""
from __future__ import annotations

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")


class Backend:
    """One array library plus the operations of one MLP layer, forward and backward."""

    name: str = "base"
    xp = None  # the array module (numpy or cupy)

    def __init__(self):
        self._scratch = {}

    # ------------------------------------------------------------------ arrays
    def device_name(self) -> str:
        raise NotImplementedError

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    def asarray(self, array, dtype):
        """A backend array of ``dtype`` holding ``array`` (a copy only where needed)."""
        return self.xp.ascontiguousarray(self.xp.asarray(array, dtype=dtype))

    def to_numpy(self, array):
        """A NumPy copy of a backend array (host memory)."""
        raise NotImplementedError

    def is_native(self, array) -> bool:
        """True when ``array`` lives where this backend computes (no transfer needed)."""
        return isinstance(array, self.xp.ndarray)

    def copyto(self, dst, src):
        self.xp.copyto(dst, src)

    def synchronize(self):
        """Wait for queued device work (no-op on the CPU)."""

    def scratch(self, shape, dtype):
        """A reusable temporary buffer; its content is undefined between calls."""
        key = (shape, dtype)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = self.empty(shape, dtype)
        return buf

    # ------------------------------------------------------------------ GEMM
    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        """out = op(a) @ op(b), with op the transpose where asked (views, no copies)."""
        self.xp.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
        return out

    # ------------------------------------------------------------------ layer math
    def bias_activation(self, z, bias, activation):
        """In place: z <- act(z + bias), the bias broadcast over the batch rows."""
        xp = self.xp
        xp.add(z, bias, out=z)
        if activation == "sigmoid":
            # sigma(z) = (1 + tanh(z/2)) / 2: tanh saturates where exp(-z) would overflow.
            xp.multiply(z, 0.5, out=z)
            xp.tanh(z, out=z)
            xp.multiply(z, 0.5, out=z)
            xp.add(z, 0.5, out=z)
        elif activation == "tanh":
            xp.tanh(z, out=z)
        elif activation == "relu":
            xp.maximum(z, 0, out=z)
        elif activation != "identity":
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        return z

    def activation_backward(self, grad, a, activation, out):
        """out = grad * act'(z), act' read off the stored activation a (out may be grad)."""
        xp = self.xp
        if activation == "identity":
            if out is not grad:
                xp.copyto(out, grad)
            return out
        s = self.scratch(a.shape, a.dtype)
        if activation == "sigmoid":  # sigma' = a (1 - a)
            xp.subtract(1, a, out=s)
            xp.multiply(s, a, out=s)
        elif activation == "tanh":  # tanh' = 1 - a^2
            xp.multiply(a, a, out=s)
            xp.subtract(1, s, out=s)
        elif activation == "relu":  # relu' = [a > 0]
            xp.greater(a, 0, out=s)
        else:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        xp.multiply(grad, s, out=out)
        return out

    def mse_loss_grad(self, yhat, y, grad, loss):
        """grad = (yhat - y) / B and loss[()] = sum((yhat - y)^2) / (2B); returns loss (0-d)."""
        xp = self.xp
        inv_batch = 1.0 / yhat.shape[0]
        xp.subtract(yhat, y, out=grad)
        flat = grad.reshape(-1)
        loss[...] = xp.dot(flat, flat) * (0.5 * inv_batch)
        xp.multiply(grad, inv_batch, out=grad)
        return loss

    def sum_rows(self, x, out):
        """out = sum of x over the batch axis (the bias gradient)."""
        self.xp.sum(x, axis=0, out=out)
        return out

    def finite_check(self, x, out):
        """out[()] = a value that is finite exactly when every element of x is (here: their sum,
        which NaN and Inf reach; only a finite sum beyond the dtype's range gives a false alarm)."""
        self.xp.sum(x, out=out)
        return out

    def sgd_update(self, param, grad, lr, guard=None):
        """In place: param <- param - lr * grad (grad is left unchanged).

        ``guard`` (optional): an array checked first; if any of its values is NaN/Inf nothing is
        updated. Device backends check it on the device, so no host round trip precedes the update.
        """
        xp = self.xp
        if guard is not None and not bool(xp.isfinite(guard).all()):
            return param
        step = self.scratch(grad.shape, grad.dtype)
        xp.multiply(grad, lr, out=step)
        xp.subtract(param, step, out=param)
        return param

    # ------------------------------------------------------------------ recording
    def run_recorded(self, step, recordings, arrays, scalars):
        """Run ``step()``, which only queues work on buffers that outlive it.

        Backends that can record the work (CUDA graphs) replay the recording on later calls with
        the same ``arrays`` (by address) and ``scalars``: together with the buffers that
        ``recordings`` lives as long as, they must be everything the work touches. Here: run it.
        """
        step()
