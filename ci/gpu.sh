#!/usr/bin/env bash
# GPU check for a CUDA machine that may have no network: runs from the source tree, installs nothing.
#
#   OUT=/some/dir bash ci/gpu.sh        (logs go to ${OUT:-./gpu-out}, at most 5 files)
#
# Needs python3 with numpy, cupy (a wheel matching the driver) and pytest already installed.
# Steps: versions (GPU, driver, CuPy, NumPy, torch) -> the whole test suite including the `gpu`
# tests (python3 -m pytest -ra) -> the GPU benchmarks when `gpubackprop bench` exists -> a summary.
#
# Exit status: 0 when every test passed (or was skipped) and every benchmark that ran succeeded.
# Non-zero for a failed test (pytest's code; 5, "no tests", is a failure too), for a benchmark
# failure (4), or when nvidia-smi sees a GPU but CuPy cannot use it (3: the gpu tests would be
# silently skipped). Without any GPU the CPU tests still run, the gpu tests are reported as
# skipped with the reason, and the status is 0 unless something failed.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
unset GPUBACKPROP_BACKEND GPUBACKPROP_KERNEL_DIR

SYSTEM="$OUT/system.txt" PYTEST_LOG="$OUT/pytest.log" JUNIT="$OUT/junit.xml"
BENCH_JSON="$OUT/bench.json" BENCH_LOG="$OUT/bench.log"
status=0

# ------------------------------------------------------------------ versions
{
    echo "== date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)"
    echo "== git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv 2>&1 || true
        nvidia-smi 2>&1 | head -n 12 || true
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
PY
} | tee "$SYSTEM"

gpu_seen=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU "; then
    gpu_seen=1
fi
cupy_usable=0
if grep -q "^cupy backend: usable" "$SYSTEM"; then
    cupy_usable=1
fi
if [ "$gpu_seen" = 1 ] && [ "$cupy_usable" = 0 ]; then
    echo "ci/gpu.sh: nvidia-smi sees a GPU but CuPy cannot use it (see above): the gpu tests would be skipped" >&2
    status=3
fi
if ! "$PY" -c "import pytest" >/dev/null 2>&1; then
    echo "ci/gpu.sh: pytest is not installed for $PY; nothing can be tested" >&2
    exit 2
fi

# ------------------------------------------------------------------ tests
echo "== python3 -m pytest -ra (log: $PYTEST_LOG)"
timeout 240 "$PY" -m pytest -ra -p no:cacheprovider --junitxml="$JUNIT" 2>&1 | tee "$PYTEST_LOG"
pytest_rc=${PIPESTATUS[0]}
if [ "$pytest_rc" -eq 5 ]; then
    echo "ci/gpu.sh: pytest collected no tests" >&2
fi
if [ "$pytest_rc" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$pytest_rc
fi

# ------------------------------------------------------------------ benchmarks
bench_note="not run"
if [ "$cupy_usable" = 0 ]; then
    bench_note="skipped: no usable CUDA device"
elif ! "$PY" -m gpubackprop bench --help >/dev/null 2>&1; then
    bench_note="skipped: this version has no 'gpubackprop bench' command"
else
    {
        echo "== gpubackprop bench --backend cupy --json $BENCH_JSON"
        timeout 240 "$PY" -m gpubackprop bench --backend cupy --json "$BENCH_JSON"
        rc1=$?
        echo "== gpubackprop bench --kernels --backend cupy"
        timeout 60 "$PY" -m gpubackprop bench --kernels --backend cupy
        rc2=$?
        echo "== gpubackprop bench --backend cupy --sizes large --precision tf32"  # fp32 large is in the first run
        timeout 120 "$PY" -m gpubackprop bench --backend cupy --sizes large --precision tf32
        rc3=$?
        echo "== bench exit codes: $rc1 $rc2 $rc3"
    } 2>&1 | tee "$BENCH_LOG"
    if grep -q "^== bench exit codes: 0 0 0$" "$BENCH_LOG"; then
        bench_note="ok (log: $BENCH_LOG)"
    else
        bench_note="FAILED ($(grep '^== bench exit codes' "$BENCH_LOG" || echo 'no exit codes')); see $BENCH_LOG"
        [ "$status" -eq 0 ] && status=4
    fi
fi

# ------------------------------------------------------------------ summary
echo
echo "================ ci/gpu.sh summary ================"
grep -E "^(cupy backend|CUDA driver|cupy |numpy |torch )" "$SYSTEM" || true
"$PY" - "$JUNIT" <<'PY' || echo "tests: no junit report (pytest exit code $pytest_rc)"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
total = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) for s in suites)
errors = sum(int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
gpu_total = gpu_skipped = 0
for case in root.iter("testcase"):  # the files of GPU-only tests: tests/test_*gpu*.py
    if "gpu" in case.get("classname", "").rpartition(".")[2]:  # classname: tests.test_graphs_gpu
        gpu_total += 1
        gpu_skipped += case.find("skipped") is not None
print(f"tests: {total - failed - errors - skipped} passed, {failed} failed, {errors} errors, {skipped} skipped")
print(f"tests in tests/test_*gpu*.py: {gpu_total - gpu_skipped} ran, {gpu_skipped} skipped")
PY
echo "pytest exit code: $pytest_rc"
echo "benchmarks: $bench_note"
if [ "$gpu_seen" = 0 ]; then
    echo "NO GPU on this machine: the gpu tests were skipped (see the SKIPPED lines in $PYTEST_LOG)"
fi
echo "logs: $OUT"
echo "ci/gpu.sh: exit $status"
exit "$status"
