"""Data-parallel training on the CPU: 1 rank against 2 ranks, strong and weak scaling, time in the all-reduce.

    python bench/distributed.py [--sizes tiny,small,medium,large] [--repeat 3] [--json FILE]

launches, for each configuration, ``mpiexec -n R python bench/distributed.py --worker ...`` with
R ranks and T BLAS threads per rank, at each size of ``gpubackprop.benchmark.SIZES`` (float32, NumPy):

- strong scaling (the global batch B of the size fixed): 1 rank with 2 threads and batch B, against
  2 ranks with 1 thread each and B/2 rows each (tiny's B = 1 cannot be split: not run);
- weak scaling (the per-rank batch fixed at B): 1 rank with 1 thread, against 2 ranks with 1 thread
  each (global batch 2B); efficiency = 2-rank samples/s / (2 × 1-rank samples/s).

Per configuration and size: the median step time over rounds of steps (``train_step(..., comm=)``,
the step as ``fit`` runs it), samples/s over all ranks, and the time of the step spent in the
gradient all-reduce (scaling, MPI all-reduce, division; it includes waiting for the slower rank),
plus, measured alone, a bare all-reduce of the same payload in lockstep. The four configurations run
one after the other, ``--repeat`` times over (interleaved, so that a disturbance of the machine hits
them alike); each figure is the median over the repeats of the per-run medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy

REPO = Path(__file__).resolve().parent.parent
ROUND_SECONDS = 0.25  # steps per round chosen so a round lasts about this long
ROUNDS = 7


def worker(args):
    import gpubackprop as gb
    from gpubackprop import distributed
    from gpubackprop.benchmark import SIZES

    comm = distributed.init() if distributed.launched_world_size() > 1 else None
    ranks = 1 if comm is None else comm.world_size
    results = []
    for name in args.sizes.split(","):
        sizes, full_batch = SIZES[name]
        batch = full_batch // ranks if args.mode == "strong" else full_batch
        if batch < 1:
            continue
        rng = numpy.random.default_rng(comm.rank if comm else 0)
        X = rng.standard_normal((batch, sizes[0])).astype(numpy.float32)
        Y = rng.standard_normal((batch, sizes[-1])).astype(numpy.float32)
        net = gb.MLP(sizes, dtype="float32", backend="numpy", seed=0)
        sync = None
        if comm is not None:
            comm.broadcast_params(net)
            sync = comm.gradient_sync(net.backend)

        def step():
            net.train_step(X, Y, 1e-4) if comm is None else net.train_step(X, Y, 1e-4, comm=comm)

        for _ in range(3):
            step()
        start = time.perf_counter()
        step()
        once = time.perf_counter() - start
        steps = max(1, int(ROUND_SECONDS / max(once, 1e-7)))
        if comm is not None:  # every rank must run as many steps
            steps = int(comm.allgather([steps])[:, 0].min())
        per_step, reduce_share = [], []
        for _ in range(ROUNDS):
            if comm is not None:
                comm.barrier()
                before = sync.seconds
            start = time.perf_counter()
            for _ in range(steps):
                step()
            elapsed = time.perf_counter() - start
            per_step.append(elapsed / steps)
            if comm is not None:
                reduce_share.append((sync.seconds - before) / steps)
        record = {"size": name, "layers": sizes, "ranks": ranks, "threads": args.threads, "mode": args.mode,
                  "batch_per_rank": batch, "global_batch": batch * ranks, "steps_per_round": steps,
                  "us_per_step": 1e6 * statistics.median(per_step),
                  "spread": (max(per_step) - min(per_step)) / statistics.median(per_step),
                  "payload_bytes": net._workspace(batch).payload.nbytes}
        record["samples_per_s"] = record["global_batch"] / (record["us_per_step"] * 1e-6)
        if comm is not None:
            record["allreduce_us_per_step"] = 1e6 * statistics.median(reduce_share)
            record["bare_allreduce_us"] = _bare_allreduce(comm, net._workspace(batch).payload.size)
        if comm is None or comm.is_root:
            results.append(record)
    if comm is None or comm.is_root:
        print(json.dumps(results))


def _bare_allreduce(comm, count):
    """Median µs of an in-place all-reduce of ``count`` float32 values, the ranks in lockstep."""
    payload = numpy.ones(count, dtype=numpy.float32)
    comm.barrier()
    start = time.perf_counter()
    for _ in range(3):
        comm.allreduce(payload)
    once = (time.perf_counter() - start) / 3
    repeats = int(comm.allgather([max(3, int(ROUND_SECONDS / 5 / max(once, 1e-7)))])[:, 0].min())  # the same on all
    times = []
    for _ in range(ROUNDS):
        comm.barrier()
        start = time.perf_counter()
        for _ in range(repeats):
            comm.allreduce(payload)
        times.append((time.perf_counter() - start) / repeats)
    return 1e6 * statistics.median(times)


CONFIGS = [  # (label, ranks, BLAS threads per rank, mode)
    ("1 rank x 2 threads, batch B", 1, 2, "strong"),
    ("2 ranks x 1 thread, B/2 each", 2, 1, "strong"),
    ("1 rank x 1 thread, batch B", 1, 1, "weak"),
    ("2 ranks x 1 thread, B each", 2, 1, "weak"),
]


def _mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def driver(args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "GPUBACKPROP_BACKEND"):
        env.pop(name, None)
    runs = {}  # (config, size) -> the records of every repeat
    for _ in range(args.repeat):
        for label, ranks, threads, mode in CONFIGS:
            env_run = {**env, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
            command = [sys.executable, __file__, "--worker", "--mode", mode, "--threads", str(threads), "--sizes", args.sizes]
            if ranks > 1:
                command = [_mpiexec(), "-n", str(ranks)] + command
            done = subprocess.run(command, capture_output=True, text=True, env=env_run, timeout=1800)
            if done.returncode != 0:
                sys.exit(f"{label}: failed\n{done.stdout}{done.stderr}")
            for record in json.loads(done.stdout.strip().splitlines()[-1]):
                record["config"] = label
                runs.setdefault((label, record["size"]), []).append(record)
    results = []
    for label, *_ in CONFIGS:
        for (config, _size), records in runs.items():
            if config == label:
                results.append(_median_record(records))
                print(_row(results[-1]), flush=True)
    _summary(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _median_record(records):
    """The first record with every timing replaced by its median over ``records`` (the repeats)."""
    record = dict(records[0], repeats=len(records))
    for key in ("us_per_step", "samples_per_s", "allreduce_us_per_step", "bare_allreduce_us"):
        if key in record:
            record[key] = statistics.median(r[key] for r in records)
    steps = [r["us_per_step"] for r in records]
    record["spread"] = (max(steps) - min(steps)) / statistics.median(steps)  # from run to run
    return record


def _row(r):
    reduce = ""
    if "allreduce_us_per_step" in r:
        reduce = (f"  all-reduce {r['allreduce_us_per_step']:9.1f} µs/step ({100 * r['allreduce_us_per_step'] / r['us_per_step']:4.1f} %),"
                  f" bare {r['bare_allreduce_us']:8.1f} µs")
    return (f"{r['size']:6s} {r['config']:30s} {r['us_per_step']:11.1f} µs/step {r['samples_per_s']:12,.0f} samples/s"
            f" spread {100 * r['spread']:3.0f} %{reduce}")


def _summary(results):
    def find(size, label):
        return next((r for r in results if r["size"] == size and r["config"] == label), None)

    print("\nsize    payload   strong: 2 ranks / 1 rank x 2 threads (samples/s)   weak: efficiency, all-reduce share")
    for size in dict.fromkeys(r["size"] for r in results):
        one2, two_strong = find(size, CONFIGS[0][0]), find(size, CONFIGS[1][0])
        one1, two_weak = find(size, CONFIGS[2][0]), find(size, CONFIGS[3][0])
        strong = f"{two_strong['samples_per_s'] / one2['samples_per_s']:.2f}" if one2 and two_strong else "n/a"
        weak = (f"{two_weak['samples_per_s'] / (2 * one1['samples_per_s']):.2f}, "
                f"{100 * two_weak['allreduce_us_per_step'] / two_weak['us_per_step']:.1f} %") if one1 and two_weak else "n/a"
        payload = (two_weak or two_strong)["payload_bytes"]
        print(f"{size:6s} {payload:>10,d} B   {strong:>8s}   {weak}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,small,medium,large")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every configuration, interleaved (default 3)")
    parser.add_argument("--json", help="write every record to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="strong", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    worker(args) if args.worker else driver(args)


if __name__ == "__main__":
    main()
