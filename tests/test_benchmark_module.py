"""The benchmark module's bookkeeping (no timing is asserted)."""
import json

import pytest

from gpubackprop import benchmark
from gpubackprop.cli import main


def test_gemm_shapes_are_the_3L_minus_1_gemms_of_a_step():
    shapes = benchmark.gemm_shapes([784, 256, 256, 10], 32)
    assert len(shapes) == 3 * 3 - 1
    assert shapes[0] == (32, 256, 784) and shapes[1] == (256, 784, 32)


def test_parse_size():
    assert benchmark.parse_size("tiny") == ("tiny", [2, 2, 1], 1)
    assert benchmark.parse_size("784,64,10@16")[1:] == ([784, 64, 10], 16)
    with pytest.raises(ValueError):
        benchmark.parse_size("nonsense")


def test_bench_command_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--backend", "numpy", "--sizes", "tiny;8,4,1@4", "--seconds", "0.02", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    cases = {(r["size"], r["case"]) for r in data["rows"]}
    assert ("tiny", "gpubackprop") in cases and ("8,4,1@4", "floor") in cases
    assert all(r["us_per_step"] > 0 for r in data["rows"] if r["case"] != "torch" or r["us_per_step"])
    assert "×floor" in capsys.readouterr().out


def test_bench_kernels_on_numpy(capsys):
    assert main(["bench", "--backend", "numpy", "--kernels", "--seconds", "0.02"]) == 0
    assert "fused / copy bandwidth" in capsys.readouterr().out
