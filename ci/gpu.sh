#!/usr/bin/env bash
# The GPU check as ONE prepared device run: stages, each with its own time limit, the whole within
# 420 s (one device command may run 600 s). Runs from the source tree, needs no network, installs
# nothing: python3 with numpy, cupy (a wheel matching the driver) and pytest already installed.
#
#   OUT=/some/dir bash ci/gpu.sh      (logs under $OUT; a new temporary directory when OUT is unset)
#
# Stages (limit in seconds):
#   1 versions   30   GPU, driver, CuPy, NumPy, torch; whether the cupy backend is usable
#   2 gpu-tests 240   python3 -m pytest -m gpu: what needs the hardware (every kernel comparison on
#                     the device; cuBLAS, graphs, NCCL, the memory pool, TF32). The same comparisons
#                     run on the CUDA emulator in every CPU CI run (tests/cuda_emulator), not here.
#   3 bench      60   gpubackprop bench --seconds 0.3 at the four sizes: train_step, fit, the GEMM
#                     floor, torch_graphed, torch_fit (torch where installed)
#   4 bench-tf32 25   the same at size large with --precision tf32
#   5 kernels    25   gpubackprop bench --kernels: the fused kernels against a copy of the same bytes
#   6 summary    10   one table: stage, limit, seconds used, result, log
# A stage that would overrun the whole budget gets only what is left of it. Without a usable CUDA
# device, stages 2-5 are skipped with the reason and the exit status is 0.
#
# Exit status: 0 when every stage that ran passed; pytest's code for failed gpu tests (5, "no tests",
# too); 4 for a failed or timed-out benchmark; 124 for timed-out tests; 3 when nvidia-smi sees a GPU
# but CuPy cannot use it (the gpu tests would be skipped: that is a failure here).
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
if [ -z "${OUT:-}" ]; then
    OUT="$(mktemp -d "${TMPDIR:-/tmp}/gpubackprop-gpu-XXXXXX")"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
unset GPUBACKPROP_BACKEND GPUBACKPROP_KERNEL_DIR

TOTAL_LIMIT=420
START=$SECONDS
status=0
ROWS=()  # "stage|limit|used|result|log" per stage, for the summary

remaining() { echo $(( TOTAL_LIMIT - (SECONDS - START) )); }

# run_stage NAME LIMIT LOG COMMAND...: runs COMMAND under min(LIMIT, what is left) seconds, output to
# LOG and the terminal; sets STAGE_RC (124: timed out).
run_stage() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left
    left=$(remaining)
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -le 0 ]; then
        ROWS+=("$name|0|0|skipped: the 420 s budget is spent|-")
        STAGE_RC=124
        return
    fi
    echo "== stage $name (limit ${limit}s, log $log)"
    local began=$SECONDS
    timeout --kill-after=5 "$limit" "$@" > >(tee "$log") 2>&1
    STAGE_RC=$?
    local used=$(( SECONDS - began ))
    local result="ok"
    if [ "$STAGE_RC" -eq 124 ] || [ "$STAGE_RC" -eq 137 ]; then
        result="TIMED OUT"
    elif [ "$STAGE_RC" -ne 0 ]; then
        result="FAILED (exit $STAGE_RC)"
    fi
    ROWS+=("$name|$limit|$used|$result|$log")
}

skip_stage() {  # skip_stage NAME LIMIT REASON
    echo "== stage $1 (limit ${2}s): skipped: $3"
    ROWS+=("$1|$2|0|skipped: $3|-")
}

# ------------------------------------------------------------------ 1 versions
SYSTEM="$OUT/1-versions.log"
versions() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)"
    echo "git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv 2>&1 || true
    else
        echo "nvidia-smi: not found"
    fi
    "$PY" - <<'PY' 2>&1
import platform, sys
print(f"python {platform.python_version()} ({sys.executable})")
for name in ("numpy", "cupy", "torch", "pytest"):
    try:
        module = __import__(name)
        print(f"{name} {module.__version__}")
    except Exception as exc:
        print(f"{name}: not importable ({type(exc).__name__}: {exc})")
try:
    import cupy
    rt = cupy.cuda.runtime
    print(f"CUDA driver {rt.driverGetVersion()}, CUDA runtime {rt.runtimeGetVersion()}")
except Exception as exc:
    print(f"CUDA driver/runtime: unknown ({type(exc).__name__}: {exc})")
from gpubackprop.backends import probe_cupy
problem = probe_cupy()
print("cupy backend: usable" if problem is None else f"cupy backend: UNUSABLE: {problem}")
print(f"cupy backend in short: {probe_cupy(short=True) or 'usable'}")
PY
}
export -f versions
export REPO PY
run_stage versions 30 "$SYSTEM" bash -c versions
echo "ci/gpu.sh: stages versions 30 s, gpu-tests 240 s, bench 60 s, bench-tf32 25 s, kernels 25 s, summary 10 s; whole run <= ${TOTAL_LIMIT} s; logs in $OUT"

gpu_seen=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU "; then
    gpu_seen=1
fi
cupy_usable=0
grep -q "^cupy backend: usable" "$SYSTEM" && cupy_usable=1
why="no usable CUDA device: $(grep -m1 '^cupy backend in short: ' "$SYSTEM" | sed 's/^cupy backend in short: //')"
if [ "$gpu_seen" = 1 ] && [ "$cupy_usable" = 0 ]; then
    echo "ci/gpu.sh: nvidia-smi sees a GPU but CuPy cannot use it (see $SYSTEM)" >&2
    status=3
fi

# ------------------------------------------------------------------ 2 gpu tests
JUNIT="$OUT/junit.xml"
if [ "$cupy_usable" = 0 ]; then
    skip_stage gpu-tests 240 "$why"
elif ! "$PY" -c "import pytest" >/dev/null 2>&1; then
    skip_stage gpu-tests 240 "pytest is not installed for $PY"
    [ "$status" -eq 0 ] && status=2
else
    run_stage gpu-tests 240 "$OUT/2-gpu-tests.log" \
        "$PY" -m pytest -m gpu -ra -p no:cacheprovider --junitxml="$JUNIT" tests
    if [ "$STAGE_RC" -ne 0 ] && [ "$status" -eq 0 ]; then status=$STAGE_RC; fi
fi

# ------------------------------------------------------------------ 3-5 benchmarks
bench_failed=0
if [ "$cupy_usable" = 0 ]; then
    for spec in "bench 60" "bench-tf32 25" "kernels 25"; do
        set -- $spec
        skip_stage "$1" "$2" "$why"
    done
else
    run_stage bench 60 "$OUT/3-bench.log" \
        "$PY" -m gpubackprop bench --backend cupy --seconds 0.3 --json "$OUT/bench.json"
    [ "$STAGE_RC" -ne 0 ] && bench_failed=1
    run_stage bench-tf32 25 "$OUT/4-bench-tf32.log" \
        "$PY" -m gpubackprop bench --backend cupy --sizes large --precision tf32 --seconds 0.3 --json "$OUT/bench-tf32.json"
    [ "$STAGE_RC" -ne 0 ] && bench_failed=1
    run_stage kernels 25 "$OUT/5-kernels.log" "$PY" -m gpubackprop bench --kernels --backend cupy
    [ "$STAGE_RC" -ne 0 ] && bench_failed=1
fi
if [ "$bench_failed" = 1 ] && [ "$status" -eq 0 ]; then status=4; fi

# ------------------------------------------------------------------ 6 summary
{
    echo
    echo "================ ci/gpu.sh summary ================"
    grep -E "^(cupy backend:|CUDA driver|cupy |numpy |torch |[0-9]+, )" "$SYSTEM" || true
    if [ -f "$JUNIT" ]; then
        timeout 10 "$PY" - "$JUNIT" <<'PY' || echo "gpu tests: the junit report could not be read"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
get = lambda key: sum(int(s.get(key, 0)) for s in suites)
total, failed, errors, skipped = get("tests"), get("failures"), get("errors"), get("skipped")
print(f"gpu tests on the device: {total - failed - errors - skipped} passed, {failed} failed, {errors} errors, {skipped} skipped")
PY
    fi
    if [ "$cupy_usable" = 0 ]; then
        echo "NOTHING RAN ON HARDWARE: $why (the kernel comparisons run on the CUDA emulator in the CPU suite)"
    fi
    printf '%-11s %6s %6s  %-40s %s\n' stage limit used result log
    for row in "${ROWS[@]}"; do
        IFS='|' read -r name limit used result log <<<"$row"
        printf '%-11s %5ss %5ss  %-40s %s\n' "$name" "$limit" "$used" "$result" "$log"
    done
    echo "whole run: $(( SECONDS - START )) s of ${TOTAL_LIMIT} s; logs: $OUT"
    echo "ci/gpu.sh: exit $status"
} 2>&1 | tee "$OUT/6-summary.log"
exit "$status"
