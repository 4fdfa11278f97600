"""GPU launches per step, counted through the CuPy backend's own code on a counting shim (no GPU:
gpubackprop.benchmark.launches). The expected figures follow from the step's structure
(model.step.Steps.step): for L layers, L forward GEMMs, L ∂W GEMMs, L − 1 ∂X GEMMs (no bias-gradient
GEMM); a bias+activation kernel per hidden layer, the loss kernel (which also ends the output layer's
forward, a = act(X Wᵀ + b), and makes its δ and bias gradient), a backward kernel per hidden layer (δ and the bias gradient), the update's check (which also checks the gradients: one
memset zeroes both flags) and the update (whose last block counts the accepted step and, in fit, sums
the step into the epoch's totals and zeroes the flags: fit's memset only at a launch's first step).
The shim needs no CuPy: these run in CI."""
import pytest

from gpubackprop.backends.cupy_backend import CupyBackend
from gpubackprop.benchmark import launches
from gpubackprop.training import STEPS_PER_LAUNCH

SIZES = [([3, 4, 2], 2), ([3, 5, 4, 6, 2], 3)]


@pytest.mark.parametrize("sizes, batch", SIZES)
def test_train_step_launches_follow_the_step_structure(sizes, batch):
    layers = len(sizes) - 1
    r = launches.count_train_step(sizes, batch)
    assert r.nodes == {"cublas": 3 * layers - 1, "kernel": 2 * layers + 1, "memset": 1}
    assert r.names["kernel sigmoid_backward_bias"] == layers - 1 and r.names["kernel mse_loss_grad"] == 1
    assert r.host == {"download": 1}  # the one read of [loss, checks] per step, outside the graph
    assert r.graphs_per_step == 1


@pytest.mark.parametrize("sizes, batch", SIZES)
def test_fit_step_is_a_train_step_plus_the_gather_and_the_totals(sizes, batch):
    step, fit = launches.count_train_step(sizes, batch), launches.count_fit_step(sizes, batch)
    extra = {name: fit.names[name] - step.names.get(name, 0) for name in fit.names if fit.names[name] != step.names.get(name)}
    # one kernel gathers X's and Y's rows and advances the cursor (its last block); the totals are summed
    # by the update's last block (no accumulate_step launch), which also zeroes the check flags for the
    # next step: the flags' memset only at a launch's first step
    assert extra == {"kernel gather_batch_at": 1, "memset fill": 1 / STEPS_PER_LAUNCH - 1}
    assert fit.nodes == {**step.nodes, "kernel": step.nodes["kernel"] + 1, "memset": 1 / STEPS_PER_LAUNCH}
    assert fit.graphs_per_step == 1 / STEPS_PER_LAUNCH
    # per epoch, outside the graphs: the cursor, totals and permutation uploads, one read
    assert fit.host["download"] * STEPS_PER_LAUNCH == 1


def test_optimizers_and_the_guard_change_the_counts_by_their_own_kernels():
    sgd = launches.count_train_step([3, 4, 2], 2)
    momentum = launches.count_train_step([3, 4, 2], 2, optimizer="momentum")
    adam = launches.count_train_step([3, 4, 2], 2, optimizer="adam")
    # every rule: one kernel run twice (the check, the update, whose last block counts the step)
    assert momentum.total == adam.total == sgd.total and momentum.names["kernel momentum_step"] == 2
    assert not any("optimizer_advance_step" in name for r in (sgd, momentum, adam) for name in r.names)
    unguarded = launches.count_train_step([3, 4, 2], 2, check_finite=False)
    assert sgd.total - unguarded.total == 2  # the flags' memset, the check pass of sgd_step (gradients too)
    assert "kernel flag_nonfinite" not in sgd.names
    assert unguarded.names["kernel sgd_step"] == 1


def test_the_shim_replaces_only_the_launch_points():
    overridden = {name for name, value in vars(launches.CountingCupyBackend).items()
                  if callable(value) or isinstance(value, classmethod)} & set(dir(CupyBackend))
    # everything else (the layer math, the losses, the optimizers, fit's helpers) is CupyBackend's own code
    assert overridden <= {"__init__", "probe", "device_count", "device_name", "versions", "timer", "kernel", "matmul",
                          "recorder"}
    backend = launches.CountingCupyBackend()
    with pytest.raises(ValueError, match="'sigmoid_forward' is in none of kernels"):
        backend.kernel("sigmoid_forward", "float32")


def test_markdown_lists_every_size_and_optimizer():
    results = [launches.count_train_step([3, 4, 2], 2, optimizer=o, size="s") for o in ("sgd", "adam")]
    results += [launches.count_fit_step([3, 4, 2], 2, optimizer=o, size="s", steps=2) for o in ("sgd", "adam")]
    text = launches.markdown(results)
    assert "| s [3, 4, 2] @2 | 2 | **11** (5 + 5 + 1 + 0) | **11** (5 + 5 + 1 + 0) |" in text  # one kernel per rule
