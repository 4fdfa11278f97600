"""Throughput benchmark shared by ``gpubackprop bench`` and ``bench/``: ``cases`` (what is timed),
``timing`` (interleaved rounds, medians), ``report`` (rows, ratios, environment)."""
from .cases import CASES, FIT_BATCHES, LEARNING_RATE, PEER_TRAINING, SIZES, Case, gemm_flops, gemm_shapes, jax_status, \
    make_cases, make_fit, make_floor, make_jax_jit, make_ours, make_torch, make_torch_fit, make_torch_graphed, \
    make_torch_manual, parse_size, torch_status, Training
from .report import Row, bench_kernels, bench_size, environment, format_rows
from .timing import blas_info, blas_threads, run_interleaved

__all__ = ["CASES", "FIT_BATCHES", "LEARNING_RATE", "SIZES", "Case", "Row", "bench_kernels", "bench_size", "blas_info", "blas_threads",
           "environment", "format_rows", "gemm_flops", "gemm_shapes", "make_cases", "make_fit", "make_floor", "make_ours",
           "make_torch", "make_torch_fit", "make_torch_graphed", "parse_size", "run_interleaved", "torch_status", "Training",
           "PEER_TRAINING", "jax_status", "make_jax_jit", "make_torch_manual"]
