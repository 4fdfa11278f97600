"""``gpubackprop bench``: train_step and fit beside the GEMM floor, PyTorch (eager, a hand-written
in-place step, graphed, and its graphed epoch loop) and a jitted JAX step, per network size.

All timing lives in ``gpubackprop.benchmark``; this module only parses options and prints.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy

from .. import benchmark, extras, losses, optimizers
from ..backends import describe, get_backend
from ..validation import DTYPES, PRECISIONS, check_precision
from .common import UsageError, add_backend_argument, check_outputs, replace_atomically


def add_arguments(parser):
    add_backend_argument(parser)
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="GEMM arithmetic of every case: fp32 (default) or tf32 (TF32 tensor cores; float32 only)")
    parser.add_argument("--sizes", default="tiny,small,medium,large",
                        help="names (tiny,small,medium,large: the default) or custom sizes 'n0,n1,...,nL@batch', "
                             "separated by ';' or spaces, e.g. 'tiny;784,512,10@128'")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case per size (default 1.0)")
    parser.add_argument("--quick", action="store_true", help="0.2 s per case: a smoke run, noisier figures")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-jax", action="store_true",
                        help="skip the jitted JAX step (jax_jit; its column shows only when JAX is installed)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the environment as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also draw a chart, in the format of its suffix (.png, .svg, "
                                                       "...; needs matplotlib: "
                                                       + extras.install_hint("plot").replace("%", "%%") + ")")
    parser.add_argument("--loss", default="mse", choices=losses.NAMES,
                        help="the loss every case trains with (default mse; torch's own for the torch cases)")
    parser.add_argument("--optimizer", default="sgd", choices=optimizers.NAMES,
                        help="the optimizer every case trains with, at its default settings (default sgd)")
    parser.add_argument("--kernels", action="store_true",
                        help="instead: the fused sigmoid-backward and Adam-update kernels' bandwidth, each vs a "
                             "copy of the same bytes")


def _split_sizes(text):
    names = text.replace(";", " ").split()
    if len(names) == 1 and "@" not in names[0] and "," in names[0]:
        names = names[0].split(",")  # 'tiny,small' — names only
    return names


def _header(backend, env):
    print(f"backend: {describe(backend)}; device: {env['device']}")
    for blas in env["blas"]:
        print(f"BLAS: {blas['library']} {blas['version'] or ''} threads={blas['threads']} "
              f"kernel={blas['architecture']}")
    print(f"numpy {env['numpy']}; torch: {env['torch']}; jax: {env['jax']}"
          + (f" (threads={env['torch_threads']})" if "torch_threads" in env else "")
          + (f"; cupy {env['cupy']}" if "cupy" in env else ""))
    if env["env"]:
        print("environment: " + " ".join(f"{k}={v}" for k, v in env["env"].items()))


def _check_outputs(args):
    """--json and --plot checked before any timing (not found unwritable after minutes of it)."""
    if getattr(args, "plot", None):
        if args.kernels:
            raise UsageError("--plot draws the per-size rows; --kernels has none (use --json)")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError(f"--plot needs matplotlib: {extras.install_hint('plot')}") from None
    check_outputs(("--json", args.json), ("--plot", args.plot))
    if getattr(args, "plot", None):
        from .report import plot_format

        plot_format(args.plot)


def _write_json(path, content):
    text = json.dumps(content, indent=2).encode()
    replace_atomically(path, lambda handle: handle.write(text), what="the JSON")
    print(f"wrote {path}")


def main(args) -> int:
    _check_outputs(args)
    if not (args.seconds > 0 and math.isfinite(args.seconds)):  # before any output
        raise UsageError(f"--seconds must be a positive number of seconds per case, got {args.seconds}")
    backend = get_backend(args.backend)
    if args.kernels:
        return _kernels(backend, args)
    seconds = 0.2 if args.quick else args.seconds
    sizes = [benchmark.parse_size(s) for s in _split_sizes(args.sizes)]
    check_precision(args.precision, numpy.dtype(args.dtype))  # tf32 with float64: a clear error before any work
    threads = benchmark.blas_threads()  # torch on the CPU gets as many threads as NumPy's BLAS
    env = benchmark.environment(backend)
    _header(backend, env)
    precision = args.precision if args.precision == "fp32" or backend.tf32 else \
        f"{args.precision} (computed in float32: no TF32 tensor cores on {backend.describe()})"
    training = benchmark.Training(args.loss, args.optimizer)
    if training.loss == "softmax_cross_entropy" and any(layer_sizes[-1] < 2 for _, layer_sizes, _ in sizes):
        raise ValueError("--loss softmax_cross_entropy needs at least 2 outputs: pick sizes such as medium or "
                         "'784,256,10@128' (tiny, small and large have one output)")
    print(f"dtype {args.dtype}; precision {precision}; {training.describe()}; lr {benchmark.LEARNING_RATE}; "
          f"~{seconds:g} s per case, interleaved rounds, medians")
    print("µs/step per training step (fit, torch_fit: an epoch of fit's batches, divided by its steps); "
          "×floor = step time / GEMM-floor time (lower is better); ×torch, ×torch_manual, ×jax_jit, "
          "×torch_graphed, ×torch_fit = that peer's step time / this one (throughput relative to it, "
          "higher is better); "
          "spread = (max−min)/median over rounds")
    rows, cases, start = [], [], time.perf_counter()
    for name, layer_sizes, batch in sizes:
        print(f"\n{name}: layers {layer_sizes}, batch {batch}, {len(benchmark.gemm_shapes(layer_sizes, batch))} GEMMs, "
              f"{benchmark.gemm_flops(layer_sizes, batch) / 1e9:.4g} GFLOP/step", flush=True)
        size_rows = benchmark.bench_size(backend, name, layer_sizes, batch, args.dtype, seconds,
                                         with_torch=not args.no_torch, threads=threads, cases_out=cases,
                                         precision=args.precision, training=training, with_jax=not args.no_jax)
        print(benchmark.format_rows(size_rows), flush=True)
        rows.extend(size_rows)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    # On a recording backend train_step replays a CUDA graph per step when capture works: say
    # which path was timed.
    recording = {case.net.recording for case in cases if case.net is not None} - {None}
    if recording:
        env["cuda_graphs"] = "; ".join(sorted(recording))
        print(f"CUDA graphs: {env['cuda_graphs']}")
    if args.json:
        _write_json(args.json, {"environment": env, "dtype": args.dtype, "precision": args.precision, "loss": args.loss,
                                "optimizer": args.optimizer, "seconds_per_case": seconds,
                                "rows": [dataclasses.asdict(r) for r in rows]})
    if args.plot:
        _plot(rows, args.plot, env)
    return 0


def _kernels(backend, args) -> int:
    env = benchmark.environment(backend)
    _header(backend, env)
    print("note: on numpy this times the NumPy passes of the same operation (sigmoid backward: 3 ufuncs; "
          "Adam: 13) against a copy of the same bytes; on cupy, the fused kernel against a "
          "device-to-device copy")
    results = benchmark.bench_kernels(backend, args.dtype, seconds=0.2 if args.quick else args.seconds)
    for r in results:
        print(f"{r['name']:<28} {r['bytes'] / 1e6:9.1f} MB {r['seconds'] * 1e6:10.1f} µs {r['GB/s']:9.1f} GB/s")
    ratio = results[0]["GB/s"] / results[1]["GB/s"]
    adam_ratio = results[2]["GB/s"] / results[3]["GB/s"]
    print(f"fused / copy bandwidth: {ratio:.1%} (target on a GPU: ≥ 85%)")
    print(f"adam / copy bandwidth: {adam_ratio:.1%} (7 numbers moved per parameter; target on a GPU: ≥ 80%)")
    if args.json:
        _write_json(args.json, {"environment": env, "kernels": results, "ratio": ratio, "adam_ratio": adam_ratio})
    return 0


def _plot(rows, path, env):
    """The chart, drawn without pyplot's global state and written atomically (checked before: _check_outputs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .report import plot_format

    sizes = list(dict.fromkeys(r.size for r in rows))
    cases = [case for case in benchmark.CASES if any(r.case == case and r.samples_per_s for r in rows)]
    fig = Figure(figsize=(8, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(cases)
    for j, case in enumerate(cases):
        values = [next((r.samples_per_s or 0 for r in rows if r.size == s and r.case == case), 0) for s in sizes]
        ax.bar([i + (j - (len(cases) - 1) / 2) * width for i in range(len(sizes))], values, width, label=case)
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_yscale("log")
    ax.set_ylabel("samples/s (log)")
    ax.set_title(f"training throughput per step, {env['backend']} on {env['device']}")
    ax.legend()
    fig.tight_layout()
    replace_atomically(path, lambda handle: fig.savefig(handle, format=plot_format(path)), what="the chart")
    print(f"wrote {path}")
