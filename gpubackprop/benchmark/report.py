"""What the benchmark reports: rows per size and case (medians, ratios side by side), the kernel
bandwidth, and the environment they were measured in."""
from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time

from .cases import FIT_BATCHES, FIT_BATCHES_DEFAULT, MSE_SGD, gemm_flops, jax_status, make_cases, torch_status
from .kernel_cases import adam_kernel_cases, kernel_cases
from .timing import blas_info, run_interleaved


def environment(backend) -> dict:
    torch, why = torch_status()
    env = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **backend.versions(),
        "backend": backend.spec,
        "device": backend.device_name(),
        "blas": [dict(zip(("library", "version", "threads", "architecture"), row)) for row in blas_info()],
        "torch": torch.__version__ if torch else why,
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                             "OPENBLAS_NUM_THREADS") if k in os.environ},
    }
    if torch is not None:
        env["torch_threads"] = torch.get_num_threads()
    jax, why = jax_status()
    env["jax"] = jax.__version__ if jax else why
    return env


@dataclasses.dataclass
class Row:
    size: str
    layer_sizes: list
    batch: int
    case: str
    us_per_step: float | None
    samples_per_s: float | None
    gemm_gflops: float | None
    x_floor: float | None  # this case's step time / the floor's
    x_torch: float | None  # torch's step time / this case's (throughput relative to torch eager)
    spread: float | None  # (max - min) / median of the samples: the noise
    rounds: int
    note: str = ""
    x_torch_graphed: float | None = None  # torch_graphed's step time / this case's
    x_torch_fit: float | None = None  # torch_fit's step time / this case's (its best epoch loop)
    steps_per_call: int = 1  # steps one timed call ran (an epoch for fit, torch_fit)
    x_torch_manual: float | None = None  # the hand-written torch step's time / this case's
    x_jax_jit: float | None = None  # the jitted JAX step's time / this case's (None: no JAX row)


def bench_size(backend, name, sizes, batch, dtype="float32", seconds=1.0, with_torch=True, threads=None, cases_out=None,
               precision="fp32", training=MSE_SGD, with_jax=True):
    """Rows (ours per step and per epoch of fit, floor, torch eager, the hand-written torch and
    jitted JAX steps, torch graphed, and its epoch loop) for one size, measured side by side, all in
    the same interleaved rounds. ``cases_out``: a list that receives the timed cases (for reports
    that need more than the rows)."""
    cases = make_cases(backend, sizes, batch, dtype, with_torch, threads, precision,
                       FIT_BATCHES.get(name, FIT_BATCHES_DEFAULT), training, with_jax)
    if cases_out is not None:
        cases_out.extend(cases)
    rounds, _ = run_interleaved(cases, seconds=seconds, min_rounds=3 if seconds < 0.5 else 5)
    flops = gemm_flops(sizes, batch)
    t = {c.name: c.seconds for c in cases}
    ratio = lambda other, s: t[other] / s if t.get(other) else None  # noqa: E731
    rows = []
    for c in cases:
        s = c.seconds
        if s is None:
            rows.append(Row(name, sizes, batch, c.name, None, None, None, None, None, None, 0, c.unavailable or ""))
            continue
        rows.append(Row(
            name, sizes, batch, c.name,
            us_per_step=s * 1e6,
            samples_per_s=batch / s,
            gemm_gflops=flops / s / 1e9,
            x_floor=s / t["floor"] if t.get("floor") else None,
            x_torch=ratio("torch", s),
            spread=(max(c.samples) - min(c.samples)) / statistics.median(c.samples),
            rounds=rounds,
            x_torch_graphed=ratio("torch_graphed", s),
            x_torch_fit=ratio("torch_fit", s),
            steps_per_call=c.steps_per_call,
            x_torch_manual=ratio("torch_manual", s),
            x_jax_jit=ratio("jax_jit", s),
        ))
    return rows


def format_rows(rows) -> str:
    """The rows as a text table; the ×jax_jit column only where a jax_jit row exists (JAX installed)."""
    with_jax = any(r.case == "jax_jit" for r in rows)
    head = (f"{'size':<8} {'case':<14} {'µs/step':>11} {'samples/s':>12} {'GEMM GFLOP/s':>13} {'×floor':>7} "
            f"{'×torch':>7} {'×torch_manual':>13} " + (f"{'×jax_jit':>8} " if with_jax else "")
            + f"{'×torch_graphed':>14} {'×torch_fit':>10} {'spread':>7}")
    lines = [head, "-" * len(head)]
    fmt = lambda v, width, digits=2: f"{v:>{width}.{digits}f}" if v is not None else f"{'—':>{width}}"  # noqa: E731
    for r in rows:
        if r.us_per_step is None:
            lines.append(f"{r.size:<8} {r.case:<14} {r.note}")
            continue
        lines.append(f"{r.size:<8} {r.case:<14} {r.us_per_step:>11.1f} {r.samples_per_s:>12.4g} "
                     f"{r.gemm_gflops:>13.3g} {fmt(r.x_floor, 7)} {fmt(r.x_torch, 7)} {fmt(r.x_torch_manual, 13)} "
                     + (f"{fmt(r.x_jax_jit, 8)} " if with_jax else "")
                     + f"{fmt(r.x_torch_graphed, 14)} {fmt(r.x_torch_fit, 10)} {fmt(r.spread * 100, 6, 0)}%")
    return "\n".join(lines)


def kernel_size(backend, dtype="float32", start=1 << 22, limit=1 << 26, target_seconds=1e-3):
    """Elements per array for the kernel benchmark: doubled from ``start`` until one fused call
    takes ``target_seconds`` (far past every cache, and launch overhead negligible) or ``limit``
    is reached. On a CPU that stops at ``start`` (16 MB per float32 array), on a large GPU at ``limit``."""
    n = start
    while n < limit:
        fused, _ = kernel_cases(backend, dtype, n)[0]
        fused.step()  # compile / first touch
        if fused.timer.measure(fused.step, 3) / 3 >= target_seconds:
            break
        n *= 2
    return n


def bench_kernels(backend, dtype="float32", n=None, seconds=1.0):
    """The fused sigmoid backward, then the fused Adam update (over n parameters), each against a
    raw device copy that moves the same bytes, each pair timed in interleaved rounds.

    Returns a list of dicts, [sigmoid, its copy, adam, its copy]: name, bytes moved per call,
    seconds per call, GB/s.
    """
    n = kernel_size(backend, dtype) if n is None else n
    results = []
    for make in (kernel_cases, adam_kernel_cases):
        pairs = make(backend, dtype, n)
        run_interleaved([case for case, _ in pairs], seconds=seconds, min_rounds=5)
        results += [{"name": case.name, "bytes": nbytes, "seconds": case.seconds, "GB/s": nbytes / case.seconds / 1e9}
                    for case, nbytes in pairs]
    return results
