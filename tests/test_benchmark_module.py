"""The benchmark module's bookkeeping (no timing is asserted)."""
import json

import numpy
import pytest
from conftest import need

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
    assert all(r["us_per_step"] > 0 for r in data["rows"] if not r["case"].startswith("torch") or r["us_per_step"])
    assert "×floor" in capsys.readouterr().out


def test_bench_kernels_on_numpy(capsys):
    assert main(["bench", "--backend", "numpy", "--kernels", "--seconds", "0.02"]) == 0
    assert "fused / copy bandwidth" in capsys.readouterr().out


def test_bench_reports_fit_and_says_why_the_graphed_torch_cases_are_absent_on_the_cpu(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--backend", "numpy", "--sizes", "tiny", "--seconds", "0.02", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    for column in ("×floor", "×torch", "×torch_graphed", "×torch_fit"):
        assert column in out
    assert "precision fp32" in out
    rows = {r["case"]: r for r in json.loads(path.read_text())["rows"]}
    jax, _ = benchmark.jax_status()
    assert set(rows) == set(benchmark.CASES) - (set() if jax is not None else {"jax_jit"})  # no JAX: no column
    header = next(line for line in out.splitlines() if line.startswith("size "))
    assert ("×jax_jit" in header) == (jax is not None) and "×torch_manual" in header
    fit = rows["fit"]
    assert fit["us_per_step"] > 0 and fit["steps_per_call"] == benchmark.FIT_BATCHES["tiny"]
    assert fit["samples_per_s"] == pytest.approx(1 / (fit["us_per_step"] * 1e-6))  # per step, batch 1
    torch, _ = benchmark.torch_status()
    why = "needs CUDA" if torch is not None else "not installed"  # the README's test install has no torch
    for case in ("torch_graphed", "torch_fit"):
        assert rows[case]["us_per_step"] is None and why in rows[case]["note"]
        assert f"{case:<14} {'skipped: ' if torch is not None else ''}{why}" in out
    if rows["torch"]["us_per_step"]:  # torch importable: eager on the CPU, and the ratio against it
        assert rows["fit"]["x_torch"] == pytest.approx(rows["torch"]["us_per_step"] / fit["us_per_step"])
    assert rows["gpubackprop"]["x_torch_graphed"] is None


def test_fit_case_times_an_epoch_and_reports_per_step():
    from gpubackprop.backends import get_backend

    case = benchmark.make_fit(get_backend("numpy"), [3, 4, 1], 5, "float32", batches=7)
    assert case.steps_per_call == 7
    losses = [case.step() for _ in range(3)]
    assert all(isinstance(loss, float) for loss in losses) and len(set(losses)) == 3  # a new permutation each epoch
    case.samples = [0.7, 1.4, 0.07]
    assert case.seconds == pytest.approx(0.1)  # the median call, per step


def test_bench_precision_flag(capsys):
    assert main(["bench", "--backend", "numpy", "--sizes", "tiny", "--seconds", "0.02", "--no-torch",
                 "--precision", "tf32"]) == 0
    assert "precision tf32 (computed in float32: no TF32 tensor cores on numpy" in capsys.readouterr().out
    assert main(["bench", "--backend", "numpy", "--sizes", "tiny", "--precision", "tf32", "--dtype", "float64"]) != 0
    assert "precision='tf32' needs dtype='float32'" in capsys.readouterr().err


@pytest.mark.parametrize("loss, optimizer", [("softmax_cross_entropy", "adam"), ("sigmoid_binary_cross_entropy", "momentum"),
                                             ("mse", "adam")])
def test_bench_cases_train_ours_and_torch_with_the_same_loss_and_optimizer(loss, optimizer):
    need("torch")  # the torch case needs PyTorch
    from gpubackprop.backends import get_backend

    backend, training = get_backend("numpy"), benchmark.Training(loss, optimizer)
    ours = benchmark.make_ours(backend, [6, 5, 3], 8, "float64", training=training)
    theirs = benchmark.make_torch(backend, [6, 5, 3], 8, "float64", training=training)
    assert (ours.net.loss, ours.net.optimizer.name) == (loss, optimizer)
    for _ in range(3):  # the same losses step after step: same data, loss and update rule
        assert ours.step() == pytest.approx(theirs.step(), rel=1e-12)


def test_bench_with_a_classification_loss_and_adam(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--backend", "numpy", "--sizes", "8,4,3@4", "--seconds", "0.02", "--no-torch",
                 "--loss", "softmax_cross_entropy", "--optimizer", "adam", "--json", str(path)]) == 0
    assert "loss softmax_cross_entropy, optimizer adam" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert (data["loss"], data["optimizer"]) == ("softmax_cross_entropy", "adam")
    assert main(["bench", "--backend", "numpy", "--sizes", "tiny", "--loss", "softmax_cross_entropy"]) == 2
    assert "needs at least 2 outputs" in capsys.readouterr().err


def test_bench_kernels_times_the_adam_update_against_a_copy_of_7_numbers_per_parameter(tmp_path, capsys):
    path = tmp_path / "kernels.json"
    assert main(["bench", "--backend", "numpy", "--kernels", "--seconds", "0.02", "--json", str(path)]) == 0
    assert "adam / copy bandwidth" in capsys.readouterr().out
    kernels = json.loads(path.read_text())["kernels"]
    assert [k["name"] for k in kernels][2:] == ["adam_update (fused)", "device copy, same bytes"]
    assert kernels[2]["bytes"] == kernels[3]["bytes"] == 7 * kernels[0]["bytes"] // 3 > 0  # n params: 7n vs 3n numbers


PEERS = [("torch_manual", "torch", benchmark.make_torch_manual), ("jax_jit", "jax", benchmark.make_jax_jit)]


@pytest.mark.parametrize("sizes, batch", [([6, 5, 4, 3], 8), ([2, 2, 1], 1)])
@pytest.mark.parametrize("name, module, make", PEERS, ids=[p[0] for p in PEERS])
def test_peer_step_is_ours_one_sgd_step(name, module, make, sizes, batch):
    need(module)  # the case needs it
    from gpubackprop.backends import get_backend

    backend = get_backend("numpy")
    ours = benchmark.make_ours(backend, sizes, batch, "float64")
    peer = make(backend, sizes, batch, "float64")
    assert peer.unavailable is None and peer.name == name
    start = ours.net.get_params()
    for _ in range(3):  # same data, same start, same update: the same losses and parameters step after step
        # float64, but not computed the same way: GEMMs by other kernels (summation order), the sigmoid
        # through tanh (ours) against 1/(1+e^-z) (theirs): a few ulps per operation on values of order 1.
        assert peer.step() == pytest.approx(ours.step(), rel=1e-12)
        for (W, b), (W_ours, b_ours) in zip(peer.params(), ours.net.get_params()):
            numpy.testing.assert_allclose(W, W_ours, rtol=0, atol=1e-13)
            numpy.testing.assert_allclose(b, b_ours, rtol=0, atol=1e-13)
    moved = max(numpy.abs(W - W0).max() for (W, _), (W0, _) in zip(peer.params(), start))
    assert moved > 1e-7  # the step did update (lr 1e-3 times gradients of order 0.01-1)


@pytest.mark.parametrize("name, module, make", PEERS, ids=[p[0] for p in PEERS])
def test_peers_say_why_they_skip_a_loss_or_optimizer_they_do_not_implement(name, module, make):
    need(module)  # the case needs it
    from gpubackprop.backends import get_backend

    case = make(get_backend("numpy"), [6, 5, 3], 4, "float32", training=benchmark.Training("softmax_cross_entropy", "adam"))
    assert case.step is None and "mse" in case.unavailable and "softmax_cross_entropy" in case.unavailable


def test_bench_peers_run_in_the_same_rounds_and_no_jax_drops_the_column(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--backend", "numpy", "--sizes", "8,4,1@4", "--seconds", "0.02", "--no-jax",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    rows = {r["case"]: r for r in json.loads(path.read_text())["rows"]}
    header = next(line for line in out.splitlines() if line.startswith("size "))
    assert "jax_jit" not in rows and "×jax_jit" not in header and "×torch_manual" in header
    torch, _ = benchmark.torch_status()
    if torch is None:
        assert "not installed" in rows["torch_manual"]["note"]
    else:  # timed beside ours: the ratio is the peer's step time over ours
        manual = rows["torch_manual"]
        assert manual["rounds"] == rows["gpubackprop"]["rounds"] and manual["us_per_step"] > 0
        assert rows["gpubackprop"]["x_torch_manual"] == pytest.approx(manual["us_per_step"] / rows["gpubackprop"]["us_per_step"])


def test_step_profile_accounts_for_the_step_by_its_parts(capsys):
    """bench/profile_step.py: every call of the plan timed and named, GEMMs apart from the
    elementwise calls (a cache-blocked run named by its calls); no timing is asserted."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "profile_step.py"
    spec = importlib.util.spec_from_file_location("profile_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    step, gemms, elementwise, by, us, rest, calls = module.profile("tiny", "float64", 0.001)
    assert step > 0 and gemms > 0 and elementwise > 0 and us["guard"] > 0 and us["update"] > 0
    assert {"add", "exp", "divide", "bitwise_or"} <= set(by)  # the bias add and the sigmoid's passes
    assert len(calls) == len([k for k in us if isinstance(k, int)])
    from gpubackprop.backends import numpy_blocks
    run = numpy_blocks.BlockedRun([(numpy.exp, (numpy.zeros((4, 2)),) * 2)], 4)
    assert module.call_name(run) == "blocked[exp]"
    module.main(["--sizes", "tiny", "--steps-scale", "0.001", "--calls"])
    out = capsys.readouterr().out
    assert "| tiny |" in out and "exp" in out
