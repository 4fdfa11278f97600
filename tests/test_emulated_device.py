"""The real CupyBackend on the emulated device (tests/cuda_emulator/device.py): its launch code
(grids, argument types, scratch buffers, guards, fit's cursor and totals, Adam's step count, the
recorder's keys and replays) runs on every CI machine, against the NumPy backend.

Tolerances, and why (u: the unit roundoff, 2^-24 float32, 2^-53 float64):
- bit for bit where a kernel runs only +, −, ×, ÷ and √ elementwise (--fmad=false on the GPU,
  -ffp-contract=off here: every operation rounds once, as NumPy's ufuncs do);
- a few ulps where tanh, exp, log run (the C library's here, libdevice on a GPU, NumPy's own loops);
- for a whole step or fit: GEMMs and reductions add in other orders than OpenBLAS and NumPy (each
  within k·u of the terms' magnitudes), and training compounds that, so parameters are compared
  normwise at 1e-4 (float32) / 1e-10 (float64), a hundred times the one-step bounds of test_gpu.py.
These tests run on the emulator only; the same comparisons on hardware are test_gpu.py and friends.
"""
import gc
import warnings

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import losses, optimizers
from gpubackprop.layouts import STATUS, TOTALS

import cuda_emulator  # noqa: E402 (tests/cuda_emulator)
pytestmark = pytest.mark.requires(cuda_emulator.skip_reason())

from cuda_emulator import device as emulated  # noqa: E402

DTYPES = ("float32", "float64")
STEP_RTOL = {"float32": 1e-4, "float64": 1e-10}
SIZES = [6, 16, 12, 3]


@pytest.fixture(scope="module")
def gpu():
    return emulated.emulated_backend()


@pytest.fixture(scope="module")
def cp(gpu):
    return gpu.xp


@pytest.fixture
def races():
    """Every launch of the test in the index, reversed and shuffled order of threads, compared (a race
    between threads shows as a difference; see tests/cuda_emulator)."""
    cuda_emulator.SETTINGS.race_check = True
    try:
        yield
    finally:
        cuda_emulator.SETTINGS.race_check = False


def problem(loss, rows=40, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.normal(size=(rows, SIZES[0]))
    if loss == "softmax_cross_entropy":
        Y = rng.integers(0, SIZES[-1], rows)
    elif loss == "sigmoid_binary_cross_entropy":
        Y = (rng.uniform(size=(rows, SIZES[-1])) > 0.5).astype(float)
    else:
        Y = rng.uniform(-1, 1, (rows, SIZES[-1]))
    return X, Y


def pair(gpu, loss, optimizer, dtype, **kw):
    make = lambda backend: gb.MLP(SIZES, loss=loss, optimizer=optimizer, dtype=dtype, backend=backend, seed=2,  # noqa: E731
                                  **kw)
    return make("numpy"), make(gpu)


def assert_params_close(net_a, net_b, rtol, what=""):
    for layer, ((Wa, ba), (Wb, bb)) in enumerate(zip(net_a.get_params(), net_b.get_params())):
        for name, a, b in (("W", Wa, Wb), ("b", ba, bb)):
            scale = max(numpy.abs(a).max(), 1e-30)
            error = numpy.abs(a.astype(numpy.float64) - b).max()
            assert error <= rtol * scale, f"{what} layer {layer} {name}: off by {error:.3g} of {scale:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", optimizers.NAMES)
@pytest.mark.parametrize("loss", losses.NAMES)
def test_train_step_and_fit_match_numpy(gpu, loss, optimizer, dtype):
    X, Y = problem(loss)
    net_cpu, net_gpu = pair(gpu, loss, optimizer, dtype)
    for step in range(3):  # eager, recorded, replayed
        loss_c, loss_g = net_cpu.train_step(X, Y, 0.05), net_gpu.train_step(X, Y, 0.05)
        assert loss_g == pytest.approx(loss_c, rel=STEP_RTOL[dtype]), step
    assert net_gpu.recording == "used"
    assert_params_close(net_cpu, net_gpu, STEP_RTOL[dtype], "after train_step")
    # fit: launches of several steps (batches of 8 of 40 rows: 5 steps per epoch), each recorded and replayed
    history_c = net_cpu.fit(X, Y, epochs=3, batch_size=8, lr=0.05, seed=4, progress=False)
    history_g = net_gpu.fit(X, Y, epochs=3, batch_size=8, lr=0.05, seed=4, progress=False)
    numpy.testing.assert_allclose(history_g.loss, history_c.loss, rtol=STEP_RTOL[dtype])
    if losses.TABLE[loss].classification:  # right predictions: whole numbers, added exactly on both
        assert history_g.accuracy == history_c.accuracy
    assert_params_close(net_cpu, net_gpu, STEP_RTOL[dtype], "after fit")
    state_c, state_g = net_cpu.get_optimizer_state(), net_gpu.get_optimizer_state()
    assert state_g["step"] == state_c["step"] == 3 + 15  # every optimizer counts its accepted steps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where, batch", [("X", 1), ("X", 3), ("Y", 5), ("X", 5)])
def test_fit_refuses_from_the_first_bad_step_on_as_numpy_does(gpu, cp, dtype, where, batch):
    """The sticky guard: a NaN in the epoch's ``batch``-th batch (1-based, of 5), on device arrays,
    read by the replayed launches; both backends stop at the same step with the parameters and
    Adam's count of the last good step."""
    X, Y = problem("mse")
    net_cpu, net_gpu = pair(gpu, "mse", "adam", dtype)
    for net in (net_cpu, net_gpu):
        net.fit(X, Y, epochs=2, batch_size=8, lr=0.05, seed=1, progress=False)  # recorded, then replayed
    order = numpy.arange(len(X))
    numpy.random.default_rng(7).shuffle(order)  # fit's permutation of epoch 1 with seed 7
    row = int(order[(batch - 1) * 8 + 2])
    bad = {"X": X.copy(), "Y": Y.copy()}
    bad[where][row, 1] = numpy.nan
    messages = []
    for net, arrays in ((net_cpu, bad), (net_gpu, {k: cp.asarray(v.astype(dtype)) for k, v in bad.items()})):
        with pytest.raises(gb.NonFiniteLossError) as info:
            net.fit(arrays["X"], arrays["Y"], epochs=2, batch_size=8, lr=0.05, seed=7, progress=False)
        messages.append(str(info.value))
        assert f"epoch 3, batch {batch} of 5" in messages[-1]  # the first epoch of this fit: the network's third
    assert net_gpu.get_optimizer_state()["step"] == net_cpu.get_optimizer_state()["step"] == 10 + batch - 1
    assert_params_close(net_cpu, net_gpu, STEP_RTOL[dtype], "after the refused fit")


@pytest.mark.parametrize("clip", [None, 1.0])
def test_fit_after_a_refused_train_step_starts_with_its_check_flags_zeroed(gpu, cp, clip):
    """A refused train_step leaves the status's check flags NaN; fit's check passes run without a
    memset of their own after a launch's first step (the previous update zeroed the flags), so the
    first step of every launch zeroes them: the fit that follows trains as NumPy's does."""
    X, Y = problem("mse")
    bad = X[:8].copy()
    bad[3, 1] = numpy.nan
    net_cpu, net_gpu = pair(gpu, "mse", "adam", "float64")
    for net, data in ((net_cpu, bad), (net_gpu, cp.asarray(bad))):
        for _ in range(3):  # eager, recorded, replayed
            with numpy.errstate(all="ignore"), pytest.raises(gb.NonFiniteLossError):
                net.train_step(data, Y[:8], 0.05)
    assert not numpy.isfinite(net_gpu.steps.workspace(8).status.get()[STATUS.grad_check])
    for epochs in (1, 2):  # recorded, then replayed
        history_c = net_cpu.fit(X, Y, epochs=epochs, batch_size=8, lr=0.05, seed=3, progress=False, clip_norm=clip)
        history_g = net_gpu.fit(X, Y, epochs=epochs, batch_size=8, lr=0.05, seed=3, progress=False, clip_norm=clip)
        numpy.testing.assert_allclose(history_g.loss, history_c.loss, rtol=STEP_RTOL["float64"])
    assert net_gpu.get_optimizer_state()["step"] == net_cpu.get_optimizer_state()["step"] == 15
    assert_params_close(net_cpu, net_gpu, STEP_RTOL["float64"], "after fit")


def ulps(actual, expected, floor):
    """|actual − expected| in units in the last place of max(|expected|, floor)."""
    expected = numpy.asarray(expected)
    spacing = numpy.spacing(numpy.maximum(numpy.abs(expected), expected.dtype.type(floor)))
    return (numpy.abs(actual.astype(numpy.float64) - expected) / spacing).max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_kernels_without_transcendentals_are_bit_identical_to_numpy(gpu, cp, dtype):
    rng = numpy.random.default_rng(3)
    cpu = gb.get_backend("numpy")
    z = rng.normal(0, 2, (300, 37)).astype(dtype)
    bias = rng.normal(size=(1, 37)).astype(dtype)
    for act in ("relu", "identity"):
        expected = cpu.bias_activation(z.copy(), bias, act)
        assert gpu.bias_activation(cp.asarray(z), cp.asarray(bias), act).get().tobytes() == expected.tobytes()
    grad = rng.normal(size=z.shape).astype(dtype)
    for act, a in (("sigmoid", rng.uniform(0, 1, z.shape)), ("tanh", rng.uniform(-1, 1, z.shape)),
                   ("relu", numpy.maximum(z, 0))):
        a = a.astype(dtype)
        expected = cpu.activation_backward(grad, a, act, numpy.empty_like(grad), {})
        got = gpu.activation_backward(cp.asarray(grad), cp.asarray(a), act, cp.empty(z.shape, dtype), {})
        assert got.get().tobytes() == expected.tobytes(), act
    n = 10_007
    param, g, m = (rng.normal(size=n).astype(dtype) for _ in range(3))
    v = rng.uniform(0, 1, n).astype(dtype)
    status = numpy.array([0.5, float(numpy.dot(g.astype(numpy.float64), g)), 0.0, 0.0], dtype)
    for name, options, clip in (("sgd", {}, None), ("sgd", {"weight_decay": 0.01}, 1.0),
                                ("momentum", {"nesterov": True, "weight_decay": 0.01}, None),
                                ("adam", {"weight_decay": 0.01}, None), ("adamw", {"weight_decay": 0.1}, 1.0)):
        optimizer = gb.Optimizer(name, **options)
        state = numpy.stack([m, v][:optimizer.state_buffers]) if optimizer.state_buffers else numpy.zeros((0, n), dtype)
        host = [param.copy(), g, state, numpy.array([3], numpy.int64), numpy.full(1, 1e-3), status.copy()]
        dev = [cp.asarray(a) for a in host]
        for check in (True, False):  # the guarded update's two passes, each as one kernel
            cpu.optimizer_step(optimizer, *host, check=check, clip=clip, scratch={})
            gpu.optimizer_step(optimizer, *dev, check=check, clip=clip, scratch={})
        for h, d in zip(host, dev):  # (Adam's two double pows: the C library's on both sides here)
            assert d.get().tobytes() == h.tobytes(), name
    yhat, y = rng.normal(size=(50, 3)).astype(dtype), rng.normal(size=(50, 3)).astype(dtype)
    grad_c, grad_g = numpy.empty_like(yhat), cp.empty(yhat.shape, dtype)
    cpu.loss_grad("mse", yhat, y, grad_c, numpy.empty((), dtype), numpy.empty((), dtype), {})
    gpu.loss_grad("mse", cp.asarray(yhat), cp.asarray(y), grad_g, cp.empty((), dtype), cp.empty((), dtype), {})
    assert grad_g.get().tobytes() == grad_c.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_update_sums_fit_totals_as_accumulate_step_then_the_update(gpu, cp, races, dtype):
    """fit's update with ``totals`` (ACCUMULATE: the totals summed by the update kernel's last block,
    no accumulate_step launch between the check and the update) against the NumPy backend's
    accumulate_step followed by the guarded update: over many blocks, a good step, a bad one (its
    status recorded as the first bad step, the update refused), then a good status refused by the
    sticky totals (its status made non-finite); parameters, Adam's state and count, status and
    float64 totals bit for bit at every step, the block counter back at 0; then the check flags set
    back to 0 (fit's next check pass runs without a memset)."""
    rng = numpy.random.default_rng(5)
    cpu = gb.get_backend("numpy")
    n = 10_007
    optimizer = gb.Optimizer("adam", weight_decay=0.01)
    param, g = (rng.normal(size=n).astype(dtype) for _ in range(2))
    state = numpy.stack([rng.normal(size=n), rng.uniform(0, 1, n)]).astype(dtype)
    host = [param, g, state, numpy.array([3], numpy.int64), numpy.full(1, 1e-3)]
    dev = [cp.asarray(a) for a in host]
    fused = [a.copy() for a in host]  # NumPy's optimizer_step(totals=...): the same as its two operations
    totals_c, totals_f, totals_g = numpy.zeros(len(TOTALS)), numpy.zeros(len(TOTALS)), cp.asarray(numpy.zeros(len(TOTALS)))
    scratch = {}
    for k, (loss, correct, rows) in enumerate(((0.75, 3.0, 8), (numpy.nan, 5.0, 8), (0.5, 2.0, 7), (0.25, 1.0, 3))):
        status = numpy.array([loss, 0.0, 0.0, correct], dtype)
        status_c, status_f, status_g = status.copy(), status.copy(), cp.asarray(status)
        cpu.accumulate_step(status_c, totals_c, rows)
        cpu.optimizer_step(optimizer, *host, status_c, check=False, scratch={})
        refused_status = status_c.copy()
        status_c[STATUS.grad_check] = status_c[STATUS.update_check] = 0  # by the update's last block
        cpu.optimizer_step(optimizer, *fused, status_f, check=False, scratch={}, totals=totals_f, rows=rows)
        gpu.optimizer_step(optimizer, *dev, status_g, check=False, scratch=scratch, totals=totals_g, rows=rows)
        for what, h, f, d in zip(("param", "grad", "state", "step", "lr", "status", "totals"), host + [status_c, totals_c],
                                 fused + [status_f, totals_f], dev + [status_g, totals_g]):
            assert d.get().tobytes() == h.tobytes() == f.tobytes(), (k, what)
        assert int(scratch["blocks_done"].get()[0]) == 0, k
    assert host[3][0] == 3 + 1  # only the first step was let through
    assert numpy.isnan(totals_c[TOTALS.bad_loss]) and totals_c[TOTALS.good_steps] == 1.0
    assert numpy.isnan(refused_status[STATUS.grad_check])  # the sticky refusal, as accumulate_step makes it
    with pytest.raises(ValueError, match="totals: only in a guarded update"):
        gpu.optimizer_step(optimizer, *dev, status_g, check=True, scratch=scratch, totals=totals_g, rows=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transcendental_kernels_within_a_few_ulps_of_numpy(gpu, cp, dtype):
    # The C library's tanh/exp/log (here) against NumPy's loops: each within ~1-2 ulp of the exact
    # value, so 4 ulp between them; sigmoid = (1 + tanh(z/2))/2 measured against ulp(max(|s|, 1/2)),
    # where its rounding happens; the softmax gradient against ulp(max |g|) of its row scale.
    rng = numpy.random.default_rng(5)
    cpu = gb.get_backend("numpy")
    z = rng.normal(0, 4, (200, 9)).astype(dtype)
    zero = numpy.zeros((1, 9), dtype)
    with numpy.errstate(all="ignore"):
        for act, floor in (("tanh", numpy.finfo(dtype).tiny), ("sigmoid", 0.5)):
            expected = cpu.bias_activation(z.copy(), zero, act)
            got = gpu.bias_activation(cp.asarray(z), cp.asarray(zero), act).get()
            assert ulps(got, expected, floor) <= 4, act
        y = numpy.eye(9, dtype=dtype)[rng.integers(0, 9, 200)]
        for name in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
            grad_c, grad_g = numpy.empty_like(z), cp.empty(z.shape, dtype)
            loss_c, loss_g = numpy.empty((), dtype), cp.empty((), dtype)
            correct_c, correct_g = numpy.empty((), dtype), cp.empty((), dtype)
            cpu.loss_grad(name, z, y, grad_c, loss_c, correct_c, {})
            gpu.loss_grad(name, cp.asarray(z), cp.asarray(y), grad_g, loss_g, correct_g, {})
            # the gradient: (p − y)/B with p within a few ulp of 1, so ulps of 1/B; 9-term row sums: +9
            assert ulps(grad_g.get(), grad_c, 1.0 / 200) <= 4 + 9, name
            # the loss: 1800 (or 200) terms, added per thread then in a tree here, pairwise in NumPy
            assert abs(float(loss_g.get()) - float(loss_c)) <= 2 * (1800 / 256 + 8 + 11) * numpy.finfo(dtype).eps * \
                float(numpy.abs(loss_c)) + 4 * numpy.finfo(dtype).eps, name
            assert float(correct_g.get()) == float(correct_c), name


def test_right_prediction_counts_are_exact_beyond_2_to_the_24(gpu, cp):
    # 2^25 + 3 rows, all right. The count is that integer rounded once to float32: 2^25 + 4 (float32's
    # spacing is 4 there), what NumPy's count_nonzero stored into the float32 status gives. Counting
    # in float32 (per thread, then a tree) rounds twice past 2^24 and gave 2^25.
    rows = 2**25 + 3
    ones = cp.full((rows,), 1, numpy.float32)  # row losses and row hits alike (128 MiB)
    loss, correct = cp.empty((), numpy.float32), cp.empty((), numpy.float32)
    gpu.kernel("sum_row_losses", "float32")(
        (1,), (256,), (ones, ones, numpy.int64(rows), numpy.float32(1), loss, correct, ones, ones, numpy.int64(0)))
    assert float(correct.get()) == float(numpy.float32(rows)) == rows + 1
    del ones
    gc.collect()


def test_eager_and_recorded_steps_issue_the_same_cublas_calls(gpu):
    X, Y = problem("mse")
    net = gb.MLP(SIZES, dtype="float32", backend=gpu, seed=0)
    calls = []
    for _ in range(3):  # eager (CuPy's handle), recorded (the recorder's handle), replayed (no new calls)
        start = len(emulated.GEMMS)
        net.train_step(X, Y, 0.1)
        calls.append(emulated.GEMMS[start:])
    eager, recorded, replayed = calls
    key = lambda c: (c["routine"], c["transa"], c["transb"], c["m"], c["n"], c["k"], c["lda"], c["ldb"], c["ldc"])  # noqa: E731
    assert [key(c) for c in eager] == [key(c) for c in recorded] and not replayed
    assert {c["handle"] for c in eager}.isdisjoint({c["handle"] for c in recorded})
    # no bias gradient 1ᵀδ as a GEMM (the loss and backward kernels sum it): 3 forward, 3 ∂W, 2 ∂X
    assert len(eager) == 8 and not [c for c in map(key, eager) if c[4] == 1]


@pytest.mark.parametrize("precision, routine, compute", [("fp32", "sgemm", None), ("tf32", "gemmEx", 77)])
def test_the_tf32_flag_reaches_every_gemm(gpu, precision, routine, compute):
    X, Y = problem("mse")
    net = gb.MLP(SIZES, dtype="float32", precision=precision, backend=gpu, seed=0)
    start = len(emulated.GEMMS)
    for _ in range(2):
        net.train_step(X, Y, 0.1)
    # 3 layers: 3 forward, 3 weight gradients, 2 input gradients, per step (the bias gradients are
    # summed in the loss and backward kernels, in the dtype: no GEMM)
    calls = emulated.GEMMS[start:]
    assert len(calls) == 2 * 8 and all(c["routine"] == routine and c["compute"] == compute for c in calls)


def test_each_recording_network_destroys_its_cublas_handle(gpu):
    gc.collect()  # networks of earlier tests go first
    before = emulated.handle_counts()
    X, Y = problem("mse")
    net = gb.MLP(SIZES, backend=gpu, seed=0)
    for _ in range(3):
        net.train_step(X, Y, 0.1)
    assert net.recording == "used"
    assert emulated.handle_counts()["created"] == before["created"] + 1
    del net
    gc.collect()
    assert emulated.handle_counts()["destroyed"] == before["destroyed"] + 1


def test_a_recording_that_falls_back_says_so_and_steps_stay_right(gpu, monkeypatch):
    def unavailable(cupy, stream):
        raise ImportError("recording a step as a CUDA graph needs cuda.pathfinder, which CuPy >= 14 brings")

    monkeypatch.setattr(gpu, "_capturable_gemm", unavailable)
    X, Y = problem("mse")
    net_cpu, net_gpu = pair(gpu, "mse", "sgd", "float64")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            assert net_gpu.train_step(X, Y, 0.1) == pytest.approx(net_cpu.train_step(X, Y, 0.1), rel=1e-10)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1 and "runs eagerly" in said[0] and "CuPy >= 14" in said[0]
    assert net_gpu.recording.startswith("not used: ImportError")


def test_float32_subnormals_flush_on_the_device_and_survive_on_numpy(gpu, cp):
    """Where the backends differ, stated: CuPy compiles with -ftz=true (appended after our options),
    so float32 kernel arithmetic flushes subnormal inputs and results to 0; NumPy keeps them.
    float64 is not affected. (What cuBLAS's own GEMM kernels do with subnormals is not modelled.)"""
    cpu = gb.get_backend("numpy")
    param = numpy.array([0.0, 1.0], numpy.float32)
    grad = numpy.array([2.0**-70, 1.0], numpy.float32)
    p_cpu, p_gpu = param.copy(), cp.asarray(param)

    def sgd(backend, p, g):  # one unguarded plain SGD update at lr 2^-70
        state, step = backend.asarray(numpy.zeros((0, 2)), p.dtype), backend.asarray(numpy.zeros(1), numpy.int64)
        lr, status = backend.asarray(numpy.full(1, 2.0**-70), numpy.float64), backend.asarray(numpy.zeros(4), p.dtype)
        backend.optimizer_step(gb.Optimizer("sgd"), p, g, state, step, lr, status, check=False, guarded=False,
                               scratch={})

    sgd(cpu, p_cpu, grad)
    sgd(gpu, p_gpu, cp.asarray(grad))
    assert p_cpu[0] == -numpy.float32(2.0**-140) != 0  # NumPy: a subnormal step
    assert p_gpu.get()[0] == 0  # the device: flushed
    p64 = cp.asarray(param.astype(numpy.float64))
    sgd(gpu, p64, cp.asarray(grad.astype(numpy.float64)))
    assert p64.get()[0] == -(2.0**-140)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_non_finite_gradient_behind_a_finite_loss_is_refused_by_the_fused_check(gpu, optimizer):
    """The gradients' finite check runs inside the update's check pass (CHECK_GRADS, no kernel of its
    own): an Inf input behind a saturated sigmoid leaves the loss finite but ∂L/∂W NaN; the step is
    refused as "gradients" on both backends, parameters and optimizer state bit for bit as before, and
    the network trains on from there."""
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(5, SIZES[0])), rng.uniform(-1, 1, (5, SIZES[-1]))
    bad = X.copy()
    bad[1, 2] = numpy.inf
    for net in pair(gpu, "mse", optimizer, "float64"):
        params = net.get_params()
        params[0] = (numpy.full_like(params[0][0], 50.0), params[0][1])  # saturated: sigmoid(Inf) = 1, finite loss
        net.set_params(params)
        net.train_step(X, Y, 0.05)  # a good step first: Adam's state is non-zero
        before = [a.tobytes() for p in net.get_params() for a in p]
        state = {k: numpy.asarray(v).tobytes() for k, v in net.get_optimizer_state().items()}
        for _ in range(3):  # eager, recorded, replayed
            with numpy.errstate(all="ignore"), pytest.raises(gb.NonFiniteLossError) as info:
                net.train_step(bad, Y, 0.05)
            assert info.value.where == "gradients" and numpy.isfinite(info.value.loss), net.backend.name
            assert [a.tobytes() for p in net.get_params() for a in p] == before
            assert {k: numpy.asarray(v).tobytes() for k, v in net.get_optimizer_state().items()} == state
        assert numpy.isfinite(net.train_step(X, Y, 0.05))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, activation, rows, cols", [
    (name, activation, rows, cols)
    for name, activation in (("mse", "identity"), ("mse", "sigmoid"), ("softmax_cross_entropy", "identity"),
                             ("sigmoid_binary_cross_entropy", "identity"))
    for rows, cols in ((1000, 1), (100, 3), (256, 10), (3, 300))
    if cols > 1 or name != "softmax_cross_entropy"])  # softmax: two classes or more
def test_the_fused_output_backward_matches_its_parts(gpu, cp, races, dtype, name, activation, rows, cols):
    """``loss_backward`` with the bias row: the loss kernel also ends the output layer's forward
    (a = act(X Wᵀ + b), in place) and makes its δ = ∂L/∂a ⊙ act'(z) and bias gradient Σ_batch δ
    (block_column_sums: 1 column of 256 groups, 85 groups of 3 (not a power of two), 25 of 10, one
    thread per column past 256), against NumPy's bias_activation, loss_grad, activation_backward,
    sum_rows. a and δ: bit for bit where only +, −, ×, ÷ run (identity output, mse), within the
    kernels' ulps where exp/log do (see test_transcendental_kernels_within_a_few_ulps_of_numpy). The
    bias gradient: the kernel's own δ summed in its own order, against that δ's exact column sums
    (long double): any order of rows − 1 additions is within (rows − 1)·u·Σ|δ| of them. Every launch
    in the three thread orders (``races``)."""
    rng = numpy.random.default_rng(rows + cols)
    cpu = gb.get_backend("numpy")
    z = rng.normal(0, 2, (rows, cols)).astype(dtype)  # X Wᵀ
    b = rng.normal(0, 1, (1, cols)).astype(dtype)
    y = numpy.eye(cols, dtype=dtype)[rng.integers(0, cols, rows)] if name != "mse" else \
        rng.uniform(-1, 1, (rows, cols)).astype(dtype)
    a_c, delta_c, bias_c = z.copy(), numpy.empty_like(z), numpy.empty(cols, dtype)
    loss_c, correct_c = numpy.zeros((), dtype), numpy.zeros((), dtype)
    with numpy.errstate(all="ignore"):
        cpu.loss_backward(name, a_c, y, activation, delta_c, bias_c, loss_c, correct_c, {}, bias_row=b)
    a_g, delta_g, bias_g = cp.asarray(z), cp.empty(z.shape, dtype), cp.empty((cols,), dtype)
    loss_g, correct_g = cp.asarray(numpy.zeros((), dtype)), cp.asarray(numpy.zeros((), dtype))
    gpu.loss_backward(name, a_g, cp.asarray(y), activation, delta_g, bias_g, loss_g, correct_g, {},
                      bias_row=cp.asarray(b))
    a, delta, bias = a_g.get(), delta_g.get(), bias_g.get()
    if activation == "identity":
        assert a.tobytes() == a_c.tobytes()
    else:
        assert ulps(a, a_c, 0.5) <= 4
    if name == "mse" and activation == "identity":
        assert delta.tobytes() == delta_c.tobytes()
    else:
        assert ulps(delta, delta_c, 1.0 / rows) <= 4 + cols
    exact = delta.astype(numpy.longdouble).sum(axis=0)
    bound = (rows - 1) * numpy.finfo(dtype).eps / 2 * numpy.abs(delta).astype(numpy.longdouble).sum(axis=0)
    assert (numpy.abs(bias - exact) <= bound).all()
    assert float(loss_g.get()) == pytest.approx(float(loss_c), rel=1e-5 if dtype == "float32" else 1e-12)
    assert float(correct_g.get()) == float(correct_c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("rows, cols", [(40, 16), (7, 70), (100, 33), (1, 5)])
def test_the_fused_hidden_backward_matches_its_parts(gpu, cp, races, dtype, activation, rows, cols):
    """``activation_backward_bias``: δ = ∂L/∂a ⊙ act'(z) and the bias gradient Σ_batch δ in one kernel
    (column tiles x row chunks, the chunks added by the last block: on this 4-block device 4 chunks of
    one tile, 3 tiles of one chunk, 2 x 2, one block), against NumPy's activation_backward and
    sum_rows. δ bit for bit (+, −, × only); the bias gradient: the kernel's own δ summed in its own
    order, within (rows − 1)·u·Σ|δ| of that δ's exact column sums (long double). Race-checked."""
    rng = numpy.random.default_rng(rows * cols)
    cpu = gb.get_backend("numpy")
    a = cpu.bias_activation(rng.normal(0, 2, (rows, cols)).astype(dtype), numpy.zeros((1, cols), dtype), activation)
    grad = rng.normal(size=(rows, cols)).astype(dtype)
    delta_c, bias_c = numpy.empty_like(a), numpy.empty(cols, dtype)
    cpu.activation_backward_bias(grad, a, activation, delta_c, bias_c, {})
    grad_g = cp.asarray(grad)
    bias_g, scratch = cp.empty((cols,), dtype), {}
    for _ in range(2):  # the counter of finished blocks is back at 0 after a launch: the second one agrees
        gpu.activation_backward_bias(grad_g, cp.asarray(a), activation, grad_g, bias_g, scratch)  # in place, as the step
        delta, bias = grad_g.get(), bias_g.get()
        assert delta.tobytes() == delta_c.tobytes()
        grad_g = cp.asarray(grad)
    exact = delta.astype(numpy.longdouble).sum(axis=0)
    bound = (rows - 1) * numpy.finfo(dtype).eps / 2 * numpy.abs(delta).astype(numpy.longdouble).sum(axis=0)
    assert (numpy.abs(bias - exact) <= bound).all()
