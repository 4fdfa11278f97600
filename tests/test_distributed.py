"""Data-parallel training over MPI, for real: each test launches ``mpiexec -n N`` on tests/mpi_worker.py.

Without mpi4py or mpiexec these tests skip with the reason, except where GPUBACKPROP_REQUIRE_MPI is set
(ci/cpu.sh sets it, having installed both): there a missing MPI is a failure, not a skip.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import distributed
from gpubackprop.backends import collectives

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mpi_worker  # noqa: E402  (the worker's data and settings, for the single-process references)
import doc_examples  # noqa: E402  (the documentation's examples: the mpi one runs here)

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "mpi_worker.py"


def _mpiexec():
    """mpiexec beside this Python (the mpich wheel puts it in the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _mpi_problem():
    if importlib.util.find_spec("mpi4py") is None:
        return f"mpi4py is not installed ({distributed.INSTALL_HINT})"
    if _mpiexec() is None:
        return f"no mpiexec beside {sys.executable} nor on PATH ({distributed.INSTALL_HINT})"
    return None


needs_mpi = pytest.mark.skipif(_mpi_problem() is not None and not os.environ.get("GPUBACKPROP_REQUIRE_MPI"),
                               reason=str(_mpi_problem()))


def mpirun(n, scenario, out, *, backend="numpy", timeout=120, env=None, check=True):
    """Run the worker on ``n`` ranks; returns (completed process, seconds, [per-rank results])."""
    problem = _mpi_problem()
    assert problem is None, problem  # only reached where GPUBACKPROP_REQUIRE_MPI demands MPI
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   **(env or {})}
    environment.pop("GPUBACKPROP_BACKEND", None)
    start = time.monotonic()
    done = subprocess.run([_mpiexec(), "-n", str(n), sys.executable, str(WORKER), scenario, str(out), backend],
                          capture_output=True, text=True, timeout=timeout, env=environment)
    seconds = time.monotonic() - start
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    results = []
    for rank in range(n):
        path = Path(out) / f"rank{rank}.npz"
        results.append(dict(numpy.load(path)) if path.exists() else None)
    return done, seconds, results


def reference_net():
    """The single-process network of the references: rank 0's initial parameters."""
    return gb.MLP(mpi_worker.LAYERS, hidden_activation="tanh", dtype="float64", backend="numpy", seed=100)


def flat(net):
    return mpi_worker.flat_params(net)


def assert_close(actual, expected, rtol=1e-12):
    scale = numpy.max(numpy.abs(expected))
    assert numpy.max(numpy.abs(numpy.asarray(actual) - expected)) <= rtol * scale, (actual, expected)


# ---------------------------------------------------------------------- on N ranks
@needs_mpi
def test_replicas_equal_bit_for_bit_after_every_epoch(tmp_path):
    _, _, ranks = mpirun(2, "replicas", tmp_path)
    zero, one = ranks
    assert str(zero["sync"]) == "mpi"
    # Different seeds per rank, equal replicas: rank 0's parameters were broadcast.
    assert not numpy.array_equal(zero["initial"], one["initial"])
    for epoch in range(3):
        assert numpy.array_equal(zero[f"params{epoch}"], one[f"params{epoch}"]), f"epoch {epoch}"
        # The history is the global one, the same on every rank.
        for key in ("loss", "val", "rate"):
            assert zero[f"{key}{epoch}"] == one[f"{key}{epoch}"], (key, epoch)
    assert not numpy.array_equal(zero["params0"], zero["params2"])  # it trained
    assert zero["loss2"] < zero["loss0"]


@needs_mpi
def test_one_rank_is_the_ordinary_fit_bit_for_bit(tmp_path):
    _, _, (result,) = mpirun(1, "replicas", tmp_path)
    assert str(result["sync"]) == "none"
    net = reference_net()
    X, Y = mpi_worker.data(4 * mpi_worker.BATCH + 3)
    for epoch in range(3):
        history = net.fit(X, Y, epochs=1, batch_size=mpi_worker.BATCH, lr=mpi_worker.LR, progress=False, shuffle=True,
                          seed=5, validation_data=mpi_worker.data(9, seed=8))
        assert numpy.array_equal(result[f"params{epoch}"], flat(net))
        assert result[f"loss{epoch}"] == history.loss[0] and result[f"val{epoch}"] == history.val_loss[0]


@needs_mpi
def test_two_ranks_train_as_one_process_on_the_concatenated_batches(tmp_path):
    _, _, ranks = mpirun(2, "steps", tmp_path)
    X, Y = mpi_worker.data(2 * mpi_worker.BATCH * 3)
    halves = [(X[:len(X) // 2], Y[:len(X) // 2]), (X[len(X) // 2:], Y[len(X) // 2:])]
    net = reference_net()
    rows = mpi_worker.BATCH
    losses = []
    for step in range(3):
        part = slice(step * rows, (step + 1) * rows)
        Xb = numpy.concatenate([h[0][part] for h in halves])
        Yb = numpy.concatenate([h[1][part] for h in halves])
        losses.append(net.train_step(Xb, Yb, mpi_worker.LR))
    for result in ranks:
        assert_close(result["losses"], numpy.array(losses))
        assert_close(result["params"], flat(net))
    assert numpy.array_equal(ranks[0]["params"], ranks[1]["params"])


@needs_mpi
def test_uneven_shards_on_three_ranks_oversubscribed(tmp_path):
    # Shards of 11, 10 and 7 rows in batches of 4: 3, 3 and 2 steps; rank 2 takes part in the third
    # step without rows. Three ranks on this machine's cores: oversubscribed.
    _, _, ranks = mpirun(3, "uneven", tmp_path)
    X, Y = mpi_worker.data(28)
    sizes, b = [11, 10, 7], mpi_worker.BATCH
    shards = []
    for r, size in enumerate(sizes):
        start = sum(sizes[:r])
        shards.append((X[start:start + size], Y[start:start + size]))
    net = reference_net()
    for epoch in range(3):
        weighted = 0.0
        for step in range(3):
            Xb = numpy.concatenate([s[0][step * b:(step + 1) * b] for s in shards])
            Yb = numpy.concatenate([s[1][step * b:(step + 1) * b] for s in shards])
            weighted += net.train_step(Xb, Yb, mpi_worker.LR) * len(Xb)
        for result in ranks:
            assert_close(result[f"params{epoch}"], flat(net))
            assert_close(result[f"loss{epoch}"], weighted / 28)
        assert numpy.array_equal(ranks[0][f"params{epoch}"], ranks[2][f"params{epoch}"])


@needs_mpi
def test_adam_and_a_classification_loss_train_as_one_process_with_the_global_accuracy(tmp_path):
    _, _, ranks = mpirun(2, "classify", tmp_path)
    X, labels = mpi_worker.class_data(21)
    shards, b = [(X[:12], labels[:12]), (X[12:], labels[12:])], mpi_worker.BATCH
    net = mpi_worker.classifier(seed=100)
    for epoch in range(2):
        weighted = hits = 0.0
        for step in range(3):
            Xb = numpy.concatenate([s[0][step * b:(step + 1) * b] for s in shards])
            Yb = numpy.concatenate([s[1][step * b:(step + 1) * b] for s in shards])
            weighted += net.train_step(Xb, Yb, 0.05) * len(Xb)
            hits += float(net.steps.workspaces[len(Xb)].correct)  # the step's right predictions
        for result in ranks:
            assert_close(result[f"params{epoch}"], flat(net))
            assert_close(result[f"loss{epoch}"], weighted / 21)
            assert result[f"accuracy{epoch}"] == hits / 21  # over both shards, not this rank's
        assert numpy.array_equal(ranks[0][f"params{epoch}"], ranks[1][f"params{epoch}"])
    assert int(ranks[0]["optimizer_step"]) == int(ranks[1]["optimizer_step"]) == 6 == net.get_optimizer_state()["step"]


@needs_mpi
def test_data_parallel_adamw_with_a_schedule_and_clipping_is_the_step_on_the_whole_batch(tmp_path):
    # The clipping norm of the all-reduced gradients (not a rank's own), the schedule over the global steps.
    _, _, ranks = mpirun(2, "clip_schedule", tmp_path)
    X, labels = mpi_worker.class_data(21)
    shards, b = [(X[:12], labels[:12]), (X[12:], labels[12:])], mpi_worker.BATCH
    net, schedule = mpi_worker.classifier(seed=100, optimizer="adamw"), gb.schedules.ExponentialLR(0.05, 0.8)
    for epoch in range(2):
        for step in range(3):
            Xb = numpy.concatenate([s[0][step * b:(step + 1) * b] for s in shards])
            Yb = numpy.concatenate([s[1][step * b:(step + 1) * b] for s in shards])
            net.train_step(Xb, Yb, schedule(3 * epoch + step), clip_norm=0.1)
        for result in ranks:
            assert_close(result[f"params{epoch}"], flat(net))
        assert numpy.array_equal(ranks[0][f"params{epoch}"], ranks[1][f"params{epoch}"])
    assert int(ranks[0]["optimizer_step"]) == int(ranks[1]["optimizer_step"]) == 6


@needs_mpi
def test_nan_on_one_rank_refuses_the_step_on_every_rank(tmp_path):
    _, _, ranks = mpirun(2, "nan", tmp_path)
    for result in ranks:
        assert bool(result["refused"]) and bool(result["unchanged"])
        assert "no parameter was changed" in str(result["message"])
        assert bool(result["fit_refused"])
    assert numpy.array_equal(ranks[0]["after"], ranks[1]["after"])
    assert not numpy.array_equal(ranks[0]["after"], ranks[0]["initial"])


@needs_mpi
def test_different_arguments_on_the_ranks_are_an_error_everywhere(tmp_path):
    _, _, ranks = mpirun(2, "mismatch", tmp_path)
    for result in ranks:
        message = str(result["error"])
        assert "batch_size" in message and "rank 0: 4" in message and "rank 1: 5" in message, message
        assert bool(result["unchanged"])


@needs_mpi
@pytest.mark.parametrize("failure", ["hang", "leave", "raise", "die"])
def test_a_failed_rank_ends_the_others_with_an_error_in_bounded_time(tmp_path, failure):
    deadline = 3.0
    done, seconds, ranks = mpirun(2, failure, tmp_path, env={"WORKER_TIMEOUT": str(deadline)}, check=False,
                                  timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert ranks == [None, None], "a rank finished its training"
    assert seconds < deadline + 20, (seconds, output)
    if failure in ("hang", "leave"):  # only the deadline can tell: the survivor says what happened
        assert "DistributedTimeoutError" in output and f"did not complete within {deadline:g} s" in output, output
        assert "another rank died, hangs or stopped taking part" in output
    elif failure == "raise":  # the failing rank aborts the job at once, with its traceback
        assert "rank 1 failed on purpose" in output and seconds < deadline + 10, output


@needs_mpi
def test_checkpoint_of_a_data_parallel_run_loads_in_one_process(tmp_path):
    _, _, ranks = mpirun(2, "checkpoint", tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npz" and not p.name.startswith("rank"))
    assert files == ["model.npz"]  # rank 0 alone saved
    net = gb.MLP.load(tmp_path / "model.npz")
    assert numpy.array_equal(flat(net), ranks[0]["params"])
    assert numpy.array_equal(flat(net), ranks[1]["params"])


@needs_mpi
def test_command_line_under_mpiexec_trains_data_parallel_and_rank_0_alone_reports_and_saves(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    environment.pop("GPUBACKPROP_BACKEND", None)
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "gpubackprop", "train", "--epochs", "3",
                           "--samples", "2000", "--dtype", "float64", "--save", str(tmp_path / "model.npz")],
                          capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("final: train loss") == 1 and out.count("saved the network") == 1, out
    assert "data-parallel: 2 ranks (MPI), gradients all-reduced by mpi, batch 32 per rank" in out
    assert "1600 training, 400 validation samples" in out  # the whole data set's figures
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    net = gb.MLP.load(tmp_path / "model.npz")
    assert net.layer_sizes == [2, 32, 32, 1] and net.dtype == numpy.float64


@needs_mpi
def test_the_documented_example_runs_under_mpiexec(tmp_path):
    # The guide's complete train.py (docs/guides/distributed.md, marked <!-- mpi: 2 -->), as written;
    # tests/test_docs.py checks that it is the only mpi example of the documentation.
    example = next(e for e in doc_examples.all_examples() if e.mpi and "gb.distributed.init()" in e.code)
    assert example.mpi == 2, example.where
    (tmp_path / "train.py").write_text(example.code)
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    environment.pop("GPUBACKPROP_BACKEND", None)
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "train.py"], capture_output=True, text=True,
                          timeout=300, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("2 ranks: loss") == 1, done.stdout
    loss = float(done.stdout.split("loss ")[1].split(",")[0])
    assert loss < 0.02, done.stdout  # it learned: the first epoch's loss is 0.15 (5.0e-03 after 10 epochs)
    assert gb.MLP.load(tmp_path / "model.npz").layer_sizes == [2, 32, 32, 1]


# ---------------------------------------------------------------------- without MPI
def test_importing_gpubackprop_does_not_import_mpi4py():
    code = "import sys, gpubackprop, gpubackprop.distributed; sys.exit('mpi4py' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr


def test_without_mpi4py_the_distributed_api_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    with pytest.raises(distributed.DistributedUnavailableError, match=r"pip install 'mpi4py>=4' 'mpich>=4'"):
        distributed.init()
    assert isinstance(distributed.DistributedUnavailableError("x"), ImportError)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), True, "60"])
def test_a_bad_deadline_is_refused_before_mpi_starts(timeout, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # proves MPI is not reached
    with pytest.raises(ValueError, match="timeout must be a finite positive number of seconds"):
        distributed.init(timeout=timeout)
    monkeypatch.setenv(distributed.ENV_TIMEOUT, "soon")
    with pytest.raises(ValueError, match="GPUBACKPROP_COMM_TIMEOUT must be a number of seconds, got 'soon'"):
        distributed.init()


def test_launcher_world_size_comes_from_the_environment(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.launched_world_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.launched_world_size() == 4


def test_nccl_is_chosen_only_when_every_rank_has_its_own_gpu_and_nccl():
    one_each = [("node0", "0000:01:00.0", None), ("node0", "0000:02:00.0", None), ("node1", "0000:01:00.0", None)]
    assert collectives.nccl_problem(one_each) is None
    shared = one_each + [("node1", "0000:01:00.0", None)]
    assert "ranks 2 and 3 share the GPU 0000:01:00.0 on node1" in collectives.nccl_problem(shared)
    missing = [("node0", "0000:01:00.0", None), ("node0", "0000:02:00.0", "NCCL is not installed")]
    assert collectives.nccl_problem(missing) == "rank 1: NCCL is not installed"


# ---------------------------------------------------------------------- GPU
def _gpus():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def assert_gpu_replicas_equal_and_match_the_cpu(ranks, tmp_path):
    """Both GPU ranks' parameters equal bit for bit after each epoch, and close to the same run on the CPU."""
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    _, _, reference = mpirun(2, "replicas", cpu)
    for epoch in range(3):
        assert numpy.array_equal(ranks[0][f"params{epoch}"], ranks[1][f"params{epoch}"])
        assert_close(ranks[0][f"params{epoch}"], reference[0][f"params{epoch}"])


@pytest.mark.gpu
@needs_mpi
def test_two_ranks_on_one_gpu_use_the_host_staged_all_reduce(tmp_path):
    _, _, ranks = mpirun(2, "replicas", tmp_path, backend="cupy:0")
    assert str(ranks[0]["sync"]) == "mpi (host-staged)"
    assert int(ranks[0]["graphs"]) == 0  # a host-staged step waits for the device: it runs eagerly
    assert_gpu_replicas_equal_and_match_the_cpu(ranks, tmp_path)


@pytest.mark.gpu
@needs_mpi
@pytest.mark.skipif(_gpus() < 2, reason="the NCCL path needs two GPUs")
def test_nccl_all_reduce_inside_the_recorded_step(tmp_path):
    _, _, ranks = mpirun(2, "replicas", tmp_path, backend="cupy")
    assert str(ranks[0]["sync"]) == "nccl"
    assert int(ranks[0]["graphs"]) >= 1 and int(ranks[1]["graphs"]) >= 1  # the all-reduce inside the graph
    assert_gpu_replicas_equal_and_match_the_cpu(ranks, tmp_path)
