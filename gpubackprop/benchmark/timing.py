"""How the benchmark times: interleaved rounds and medians, and the CPU's BLAS threads."""
from __future__ import annotations

import os


def blas_info():
    """[(library, version, threads, kernel architecture)] from threadpoolctl, else one 'unknown' row."""
    try:
        import threadpoolctl

        rows = [(d.get("internal_api"), d.get("version"), d.get("num_threads"), d.get("architecture"))
                for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
        if rows:
            return rows
    except Exception:
        pass
    return [("unknown (threadpoolctl not installed)", None, None, None)]


def blas_threads() -> int:
    threads = [t for _, _, t, _ in blas_info() if t]
    return threads[0] if threads else (os.cpu_count() or 1)


def run_interleaved(cases, seconds=1.0, min_rounds=5, max_rounds=50, warmup=3):
    """Time ``cases`` in rounds A B C A B C ... so that drift of the machine (other processes,
    clocks, heat) hits them alike; each case gets about ``seconds`` in all.

    Warm-up (compilation, first-touch allocations, caches) first, then one calibration call per
    case sets how many calls one sample holds. Fills ``case.samples`` with seconds per call.
    """
    live = [c for c in cases if c.unavailable is None]
    per_call = {}
    for case in live:
        for _ in range(warmup):
            case.step()
        t = case.timer.measure(case.step, 1)
        t2 = case.timer.measure(case.step, 1)
        per_call[case.name] = max(min(t, t2), 1e-7)
    # Rounds: enough that one sample is at least ~2 ms (timer noise), at most max_rounds.
    slowest = max(per_call.values(), default=0.0)
    rounds = int(min(max_rounds, max(min_rounds, seconds / max(slowest, 2e-3))))
    inner = {name: max(1, int(seconds / rounds / t)) for name, t in per_call.items()}
    for case in live:
        case.samples = []
    for _ in range(rounds):
        for case in live:
            n = inner[case.name]
            case.samples.append(case.timer.measure(case.step, n) / n)
    return rounds, inner
