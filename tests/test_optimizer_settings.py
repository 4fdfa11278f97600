"""Optimizer settings and state checked however they arrive (issue 15, part 6): one set of rules,
applied at construction, for MLP keywords, an Optimizer object and a checkpoint; state no training
can produce refused where it enters; replacing a trained network's optimizer starts its state fresh.
CPU (NumPy backend); no torch needed."""
import math

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import optimizers

BAD = [  # (name, settings, error, what the one-line message says)
    ("adam", {"eps": 0.0}, ValueError, r"eps must be in \(0, inf\), got 0\.0"),
    ("adam", {"eps": -1e-8}, ValueError, r"eps must be in \(0, inf\)"),
    ("adam", {"beta1": 1.0}, ValueError, r"beta1 must be in \[0, 1\), got 1\.0"),
    ("adam", {"beta2": 1.0}, ValueError, r"beta2 must be in \[0, 1\), got 1\.0"),
    ("adam", {"beta1": math.nan}, ValueError, r"beta1 must be in \[0, 1\)"),
    ("adam", {"weight_decay": -0.01}, ValueError, r"weight_decay must be in \[0, inf\), got -0\.01"),
    ("sgd", {"weight_decay": -1.0}, ValueError, r"weight_decay must be in \[0, inf\)"),
    ("momentum", {"weight_decay": math.inf}, ValueError, r"weight_decay must be in \[0, inf\)"),
    ("momentum", {"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\)"),
    ("momentum", {"momentum": -0.5}, ValueError, r"momentum must be in \[0, 1\)"),
    ("momentum", {"momentum": 0.0, "nesterov": True}, ValueError, "nesterov needs a momentum above 0"),
    ("momentum", {"nesterov": 1}, TypeError, "nesterov must be True or False"),
    ("sgd", {"beta1": 0.5}, ValueError, "beta1 applies to optimizer 'adam' or 'adamw', not 'sgd'"),
    ("adam", {"momentum": 0.9}, ValueError, "momentum applies to optimizer 'momentum', not 'adam'"),
    ("adam", {"beta1": "0.9"}, TypeError, "beta1 must be a real number"),
    ("adamw", {"momentum": 0.9}, ValueError, "momentum applies to optimizer 'momentum', not 'adamw'"),
    ("rmsprop", {}, ValueError, r"optimizer must be one of 'sgd', 'momentum', 'adam', 'adamw', got 'rmsprop' \(an unknown"),
    (None, {}, ValueError, r"optimizer must be one of .*got None"),
]


@pytest.mark.parametrize("name, settings, error, match", BAD, ids=[f"{n}-{s}" for n, s, _, _ in BAD])
def test_bad_settings_are_refused_at_construction_whichever_way_they_come(name, settings, error, match):
    with pytest.raises(error, match=match) as direct:
        gb.Optimizer(name, **settings)  # the object: refused here, not at the first step or the load
    with pytest.raises(error, match=match) as keywords:
        gb.MLP([2, 1], backend="numpy", optimizer=name, **settings)
    with pytest.raises(error, match=match) as configured:
        optimizers.configure(name, **settings)
    assert str(direct.value) == str(keywords.value) == str(configured.value)  # one set of rules
    assert "\n" not in str(direct.value)


def test_the_object_and_the_keywords_mean_the_same_defaults():
    """Optimizer("momentum") is momentum 0.9, as MLP(optimizer="momentum") (it was 0: plain SGD)."""
    assert gb.Optimizer("momentum") == optimizers.configure("momentum") == gb.Optimizer("momentum", momentum=0.9)
    assert gb.Optimizer("adam") == optimizers.configure("adam")
    assert gb.Optimizer() == optimizers.configure("sgd") == gb.Optimizer("sgd", weight_decay=0.0)
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    a = gb.MLP([3, 4, 2], optimizer=gb.Optimizer("momentum"), dtype="float64", backend="numpy", seed=0)
    b = gb.MLP([3, 4, 2], optimizer="momentum", dtype="float64", backend="numpy", seed=0)
    for _ in range(3):
        a.train_step(X, Y, 0.1)
        b.train_step(X, Y, 0.1)
    assert a.get_optimizer_state()["buffers"].tobytes() == b.get_optimizer_state()["buffers"].tobytes()
    assert [x.tobytes() for p in a.get_params() for x in p] == [x.tobytes() for p in b.get_params() for x in p]


@pytest.mark.parametrize("settings, match", [
    ({"eps": 1e-50}, r"eps 1e-50 rounds to 0 in float32"),
    ({"weight_decay": 1e39}, r"weight_decay 1e\+39 overflows to inf in float32"),
])
def test_settings_that_lose_their_meaning_in_the_network_dtype_are_refused(settings, match):
    optimizer = gb.Optimizer("adam", **settings)  # a valid setting in itself
    with pytest.raises(ValueError, match=match):
        gb.MLP([2, 1], optimizer=optimizer, dtype="float32", backend="numpy")
    gb.MLP([2, 1], optimizer=optimizer, dtype="float64", backend="numpy")  # float64 holds it


def test_what_trains_also_saves_and_loads(tmp_path):
    """Every network that can be built saves a file that loads (eps=0 trained, saved, then MLP.load
    refused its own file as corrupt)."""
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    for optimizer in (gb.Optimizer("adam", eps=1e-300), gb.Optimizer("adam", beta1=0.0, beta2=0.0),
                      gb.Optimizer("momentum", momentum=0.0), gb.Optimizer("sgd", weight_decay=1e-3)):
        net = gb.MLP([3, 4, 1], optimizer=optimizer, dtype="float64", backend="numpy", seed=0)
        net.train_step(X, Y, 0.01)
        net.save(tmp_path / "net.npz")
        back = gb.MLP.load(tmp_path / "net.npz")
        assert back.optimizer == optimizer


# ---------------------------------------------------------------- state no training produces
def adam_with_state(tmp_path=None):
    rng = numpy.random.default_rng(0)
    net = gb.MLP([3, 4, 2], optimizer="adam", dtype="float32", backend="numpy", seed=0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    for _ in range(3):
        net.train_step(X, Y, 0.01)
    return net, X, Y


BAD_STATE = [  # (what to do to the state, what the message says)
    ("nan m", lambda s: s["buffers"].__setitem__((0, 5), numpy.nan), "got nan in the first moment m at parameter 5"),
    ("inf v", lambda s: s["buffers"].__setitem__((1, 7), numpy.inf), "got inf in the second moment v at parameter 7"),
    ("negative v", lambda s: s["buffers"].__setitem__((1, 2), -1e-3), "second moment v >= 0"),
    ("negative step", lambda s: s.__setitem__("step", -1), "non-negative int, got -1"),
    ("wrong shape", lambda s: s.__setitem__("buffers", s["buffers"][:1]), "shape (2, 26)"),
]


@pytest.mark.parametrize("case, corrupt, match", BAD_STATE, ids=[c[0] for c in BAD_STATE])
def test_impossible_state_is_refused_by_set_optimizer_state_and_nothing_changes(case, corrupt, match):
    net, X, Y = adam_with_state()
    state = net.get_optimizer_state()
    before = (net.get_optimizer_state()["buffers"].tobytes(), state["step"])
    corrupt(state)
    with pytest.raises(ValueError) as info:
        net.set_optimizer_state(state)
    assert match in str(info.value) and str(info.value).startswith("optimizer state: expected")
    after = net.get_optimizer_state()
    assert (after["buffers"].tobytes(), after["step"]) == before
    net.train_step(X, Y, 0.01)  # still trains


def test_state_that_overflows_the_network_dtype_is_refused():
    net, _, _ = adam_with_state()
    state = net.get_optimizer_state()
    state["buffers"] = state["buffers"].astype(numpy.float64)
    state["buffers"][0, 3] = 1e39  # finite in float64, Inf once in the float32 network
    with pytest.raises(ValueError, match="got inf in the first moment m at parameter 3"):
        net.set_optimizer_state(state)


def rewrite_npz(source, target, **members):
    with numpy.load(source) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(members)
    numpy.savez(target, **arrays)
    return target


@pytest.mark.parametrize("case, corrupt, match", BAD_STATE[:3], ids=[c[0] for c in BAD_STATE[:3]])
def test_a_checkpoint_with_impossible_state_is_refused_where_it_enters(tmp_path, case, corrupt, match):
    """It loaded, and every later step was refused as 'learning rate too high?'."""
    net, _, _ = adam_with_state()
    net.save(tmp_path / "good.npz")
    state = net.get_optimizer_state()
    corrupt(state)
    path = rewrite_npz(tmp_path / "good.npz", tmp_path / "bad.npz", optimizer_state=state["buffers"])
    with pytest.raises(gb.CheckpointError) as info:
        gb.MLP.load(path)
    message = str(info.value)
    assert str(path) in message and "optimizer_state" in message and match in message, message


@pytest.mark.parametrize("settings, match", [
    ('{"name": "adam", "eps": 0.0}', r"eps must be in \(0, inf\)"),
    ('{"name": "adam", "eps": 1e-50}', "eps 1e-50 rounds to 0 in float32"),
    ('{"name": "sgd", "weight_decay": -0.1}', r"weight_decay must be in \[0, inf\)"),
    ('{"name": "rmsprop"}', "unknown optimizer"),
])
def test_a_checkpoint_with_bad_settings_is_refused_by_the_same_rules(tmp_path, settings, match):
    net = gb.MLP([3, 4, 2], dtype="float32", backend="numpy", seed=0)
    net.save(tmp_path / "good.npz")
    path = rewrite_npz(tmp_path / "good.npz", tmp_path / "bad.npz", optimizer=numpy.array(settings))
    with pytest.raises(gb.CheckpointError, match=match):
        gb.MLP.load(path)


# ---------------------------------------------------------------- replacing the optimizer
@pytest.mark.parametrize("old, new", [("sgd", "adam"), ("sgd", "momentum"), ("adam", "momentum"), ("momentum", "adam"),
                                      ("adam", "adam"), ("adam", "sgd")])
def test_replacing_a_trained_networks_optimizer_starts_its_state_fresh(old, new):
    """It was an IndexError at the next step (sgd has no state buffer to index)."""
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    net = gb.MLP([3, 4, 2], optimizer=old, dtype="float64", backend="numpy", seed=0)
    for _ in range(3):
        net.train_step(X, Y, 0.01)
    net.optimizer = new  # a name or an Optimizer, as the constructor takes
    assert net.optimizer == optimizers.configure(new)
    state = net.get_optimizer_state()
    assert state["step"] == 0 and not state["buffers"].any()
    assert state["buffers"].shape == (optimizers.configure(new).state_buffers, 26)
    # the same steps as a new network with that optimizer and these parameters
    fresh = gb.MLP([3, 4, 2], optimizer=new, dtype="float64", backend="numpy", seed=1)
    fresh.set_params(net.get_params())
    for _ in range(2):
        assert net.train_step(X, Y, 0.01) == fresh.train_step(X, Y, 0.01)
    assert [a.tobytes() for p in net.get_params() for a in p] == [a.tobytes() for p in fresh.get_params() for a in p]
    assert net.get_optimizer_state()["buffers"].tobytes() == fresh.get_optimizer_state()["buffers"].tobytes()
    net.fit(X, Y, epochs=2, batch_size=4, progress=False)  # fit too


@pytest.mark.parametrize("value, error, match", [
    (gb.Optimizer("adam", eps=1e-50), ValueError, "rounds to 0 in float32"),
    ("rmsprop", ValueError, "unknown optimizer"),
    (42, ValueError, "optimizer must be one of"),
])
def test_a_bad_replacement_is_refused_and_nothing_changes(value, error, match):
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    net = gb.MLP([3, 4, 2], optimizer="adam", backend="numpy", seed=0)
    net.train_step(X, Y, 0.01)
    state = net.get_optimizer_state()
    with pytest.raises(error, match=match):
        net.optimizer = value
    assert net.optimizer == gb.Optimizer("adam")
    after = net.get_optimizer_state()
    assert after["step"] == state["step"] == 1 and after["buffers"].tobytes() == state["buffers"].tobytes()
