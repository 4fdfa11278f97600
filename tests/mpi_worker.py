"""One rank of the data-parallel tests (tests/test_distributed.py runs it under ``mpiexec -n N``).

    python tests/mpi_worker.py SCENARIO OUT_DIR [BACKEND]

Each rank writes what it saw to OUT_DIR/rank<r>.npz (and the test compares the ranks, or a rank with
a single-process reference run in the test itself). The data are built from fixed seeds, the same on
every rank, so the test can rebuild them.
"""
import os
import signal
import sys
import time

import numpy

import gpubackprop as gb
from gpubackprop import distributed

LAYERS = [3, 8, 5, 2]
BATCH = 4
LR = 0.3


def data(rows, seed=7):
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(rows, LAYERS[0]))
    Y = numpy.stack([numpy.sin(X[:, 0]) * X[:, 1], numpy.cos(X[:, 2])], axis=1)
    return X, Y


def classifier(seed, optimizer="adam"):
    return gb.MLP([3, 8, 3], hidden_activation="tanh", loss="softmax_cross_entropy", optimizer=optimizer,
                  dtype="float64", backend="numpy", seed=seed)


def class_data(rows, seed=9):
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(rows, 3))
    return X, (X[:, 0] > X[:, 1]).astype(numpy.int64) + (X[:, 2] > 1)  # classes 0, 1, 2


def uneven_shard(comm, X, Y, sizes):
    """Rank r's block of ``sizes[r]`` consecutive rows."""
    start = sum(sizes[:comm.rank])
    return X[start:start + sizes[comm.rank]], Y[start:start + sizes[comm.rank]]


def flat_params(net):
    return numpy.concatenate([numpy.concatenate([W.ravel(), b]) for W, b in net.get_params()])


def main(scenario, out, backend="numpy"):
    comm = distributed.init(timeout=float(os.environ.get("WORKER_TIMEOUT", "60")))
    result = {"world_size": comm.world_size}
    # A different seed on every rank: fit's broadcast must make the replicas equal anyway.
    net = gb.MLP(LAYERS, hidden_activation="tanh", dtype="float64", backend=backend, seed=100 + comm.rank)
    result["initial"] = flat_params(net)

    if scenario in ("replicas", "uneven"):
        # "replicas": the shards of shard() (sizes within one row), shuffled, validation sharded too;
        # "uneven": shards of 11, 10 and 7 rows (3, 3 and 2 batches), not shuffled, for the reference run.
        if scenario == "replicas":
            X, Y = data(4 * BATCH * comm.world_size + 3)
            X_shard, Y_shard = comm.shard(X, Y)
            X_val, Y_val = comm.shard(*data(9, seed=8))
            fit = dict(shuffle=True, seed=5, validation_data=(X_val, Y_val))
        else:
            X, Y = data(28)
            X_shard, Y_shard = uneven_shard(comm, X, Y, [11, 10, 7])
            fit = dict(shuffle=False)
        sync = comm.gradient_sync(net.backend)
        result["sync"] = "none" if sync is None else sync.name
        for epoch in range(3):
            history = net.fit(X_shard, Y_shard, epochs=1, batch_size=BATCH, lr=LR, comm=comm, progress=False, **fit)
            result[f"params{epoch}"] = flat_params(net)
            result[f"loss{epoch}"] = history.loss[0]
            if "validation_data" in fit:
                result[f"val{epoch}"] = history.val_loss[0]
            result[f"rate{epoch}"] = history[0]["samples_per_s"]
        # Steps recorded as CUDA graphs (on CuPy; what is not a recording marks a step seen once).
        result["graphs"] = sum(type(g).__name__ == "Graph" for ws in net.steps.workspaces.values() for g in ws.recordings.values())

    elif scenario == "classify":
        # Softmax cross-entropy and Adam: the optimizer's state and the accuracy go through the same
        # all-reduce; shards of 12 and 9 rows (batches 4, 4, 4 and 4, 4, 1), not shuffled.
        net = classifier(seed=100 + comm.rank)
        X, labels = class_data(21)
        X_shard, Y_shard = uneven_shard(comm, X, labels, [12, 9])
        for epoch in range(2):
            history = net.fit(X_shard, Y_shard, epochs=1, batch_size=BATCH, lr=0.05, comm=comm, progress=False,
                              shuffle=False)
            result[f"params{epoch}"] = flat_params(net)
            result[f"loss{epoch}"] = history.loss[0]
            result[f"accuracy{epoch}"] = history[0]["accuracy"]
        result["optimizer_step"] = net.get_optimizer_state()["step"]

    elif scenario == "clip_schedule":
        # AdamW with a learning-rate schedule and gradient clipping: the norm is the all-reduced
        # gradients' (computed again after the all-reduce), the schedule counts the global steps.
        net = classifier(seed=100 + comm.rank, optimizer="adamw")
        X, labels = class_data(21)
        X_shard, Y_shard = uneven_shard(comm, X, labels, [12, 9])
        for epoch in range(2):
            net.fit(X_shard, Y_shard, epochs=1, batch_size=BATCH, lr=gb.schedules.ExponentialLR(0.05, 0.8),
                    clip_norm=0.1, comm=comm, progress=False, shuffle=False)
            result[f"params{epoch}"] = flat_params(net)
        result["optimizer_step"] = net.get_optimizer_state()["step"]

    elif scenario == "steps":
        # train_step with comm, equal batches: the reference is one process on the concatenated batches.
        X, Y = data(comm.world_size * BATCH * 3)
        X_shard, Y_shard = comm.shard(X, Y)
        comm.broadcast_params(net)
        losses = []
        for step in range(3):
            rows = slice(step * BATCH, (step + 1) * BATCH)
            losses.append(net.train_step(X_shard[rows], Y_shard[rows], LR, comm=comm))
        result["losses"] = numpy.array(losses)
        result["params"] = flat_params(net)

    elif scenario == "nan":
        X, Y = data(comm.world_size * BATCH)
        X_shard, Y_shard = comm.shard(X, Y)
        comm.broadcast_params(net)
        before = flat_params(net)
        bad = X_shard.copy()
        if comm.rank == 1:
            bad[2, 1] = numpy.nan
        try:
            net.train_step(bad, Y_shard, LR, comm=comm)
            result["refused"] = False
        except gb.NonFiniteLossError as exc:
            result["refused"] = True
            result["message"] = str(exc)
        result["unchanged"] = bool((flat_params(net) == before).all())
        net.train_step(X_shard, Y_shard, LR, comm=comm)  # the next good step is taken everywhere
        result["after"] = flat_params(net)
        try:  # and fit refuses on every rank too
            net.fit(bad, Y_shard, epochs=1, batch_size=BATCH, lr=LR, comm=comm, shuffle=False, progress=False)
            result["fit_refused"] = False
        except gb.NonFiniteLossError:
            result["fit_refused"] = True

    elif scenario in ("die", "hang", "raise", "leave"):
        # Rank 1 fails after two epochs; the others must end with an error, within the deadline.
        X, Y = data(comm.world_size * BATCH * 8)
        X_shard, Y_shard = comm.shard(X, Y)
        net.fit(X_shard, Y_shard, epochs=2, batch_size=BATCH, lr=LR, comm=comm, progress=False)
        if comm.rank == 1:
            sys.stderr.write(f"rank 1: {scenario} now\n")
            sys.stderr.flush()
            if scenario == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            elif scenario == "hang":
                time.sleep(600)
            elif scenario == "raise":
                raise RuntimeError("rank 1 failed on purpose")
            else:
                sys.exit(0)  # leaves quietly (MPI_Finalize at exit), as a rank that skipped its training would
        net.fit(X_shard, Y_shard, epochs=50, batch_size=BATCH, lr=LR, comm=comm, progress=False)
        result["finished"] = True  # not reached by the surviving ranks: they must raise

    elif scenario == "mismatch":
        X, Y = data(comm.world_size * BATCH * 2)
        X_shard, Y_shard = comm.shard(X, Y)
        try:
            net.fit(X_shard, Y_shard, epochs=1, batch_size=BATCH + comm.rank, lr=LR, comm=comm, progress=False)
            result["error"] = ""
        except distributed.DistributedError as exc:
            result["error"] = str(exc)
        result["unchanged"] = bool((flat_params(net) == result["initial"]).all())

    elif scenario == "checkpoint":
        X, Y = data(comm.world_size * BATCH * 3)
        X_shard, Y_shard = comm.shard(X, Y)
        net.fit(X_shard, Y_shard, epochs=2, batch_size=BATCH, lr=LR, comm=comm, progress=False)
        if comm.is_root:
            net.save(os.path.join(out, "model.npz"))
        result["params"] = flat_params(net)

    else:
        raise SystemExit(f"unknown scenario {scenario!r}")

    numpy.savez(os.path.join(out, f"rank{comm.rank}.npz"), **result)


if __name__ == "__main__":
    main(*sys.argv[1:])
