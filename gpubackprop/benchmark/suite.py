"""Every case of one size, in the order of ``cases.CASES``: ours, the floor, the torch cases and the
hand-written peers (``peer_cases``)."""
from __future__ import annotations

from .cases import FIT_BATCHES_DEFAULT, MSE_SGD, Case, make_fit, make_floor, make_ours, make_torch, make_torch_fit, \
    make_torch_graphed
from .peer_cases import jax_status, make_jax_jit, make_torch_manual


def make_cases(backend, sizes, batch, dtype, with_torch=True, threads=None, precision="fp32",
               fit_batches=FIT_BATCHES_DEFAULT, training=MSE_SGD, with_jax=True):
    """Every case of CASES for one size, in that order; ``jax_jit`` only where JAX imports and
    ``with_jax`` (its column is absent otherwise)."""
    cases = [make_ours(backend, sizes, batch, dtype, precision, training),
             make_fit(backend, sizes, batch, dtype, precision, fit_batches, training),
             make_floor(backend, sizes, batch, dtype, precision)]
    if with_torch:
        cases.append(make_torch(backend, sizes, batch, dtype, threads, precision, training))
        cases.append(make_torch_manual(backend, sizes, batch, dtype, threads, precision, training))
    else:
        cases.extend(Case(name, unavailable="skipped (--no-torch)") for name in ("torch", "torch_manual"))
    if with_jax and jax_status()[0] is not None:
        cases.append(make_jax_jit(backend, sizes, batch, dtype, precision, training))
    if with_torch:
        cases.append(make_torch_graphed(backend, sizes, batch, dtype, precision, training))
        cases.append(make_torch_fit(backend, sizes, batch, dtype, precision, fit_batches, training))
    else:
        cases.extend(Case(name, unavailable="skipped (--no-torch)") for name in ("torch_graphed", "torch_fit"))
    return cases

