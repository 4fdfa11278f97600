"""ONNX export (gpubackprop.onnx, MLP.to_onnx): the file passes onnx.checker and onnxruntime
reproduces predict / predict_proba for every activation, loss and dtype."""
import sys

import numpy
import pytest
from conftest import need

import gpubackprop as gb
import gpubackprop.onnx as gb_onnx
from gpubackprop import activations, losses

onnx = need("onnx")
ort = need("onnxruntime")

# onnxruntime's GEMM sums in another order than NumPy's BLAS and its Sigmoid is 1/(1 + e^−z)
# where the network computes (1 + tanh(z/2))/2: results agree to rounding (observed: a few ulp,
# 2e-7 in float32 and 4e-16 in float64 here); the bounds, absolute on outputs of order 1.
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def _run(model_or_path, X):
    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


def _network(hidden, loss, dtype, output_activation="identity", sizes=(5, 7, 6, 4)):
    net = gb.MLP(list(sizes), hidden_activation=hidden, output_activation=output_activation, loss=loss, dtype=dtype,
                 seed=3, backend="numpy")
    rng = numpy.random.default_rng(1)
    # Trained a few steps, so that the biases are not zero and the outputs spread out.
    X = rng.normal(size=(64, sizes[0]))
    Y = rng.integers(0, sizes[-1], 64) if loss == "softmax_cross_entropy" else \
        rng.uniform(0, 1, (64, sizes[-1])) if loss == "sigmoid_binary_cross_entropy" else rng.normal(size=(64, sizes[-1]))
    net.fit(X, Y, epochs=3, batch_size=16, lr=0.1, progress=False)
    return net, rng.normal(scale=2.0, size=(100, sizes[0])).astype(dtype)


CASES = [(hidden, "mse", out) for hidden in activations.HIDDEN for out in activations.OUTPUT] + \
        [(hidden, loss, "identity") for hidden in activations.HIDDEN for loss in losses.CLASSIFICATION]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden, loss, output_activation", CASES)
def test_onnxruntime_reproduces_predict(hidden, loss, output_activation, dtype, tmp_path):
    net, X = _network(hidden, loss, dtype, output_activation)
    probabilities = loss in losses.CLASSIFICATION
    path = tmp_path / "net.onnx"
    model = net.to_onnx(path, probabilities=probabilities)
    onnx.checker.check_model(str(path), full_check=True)
    loaded = onnx.load(str(path))
    assert loaded.opset_import[0].version == gb_onnx.OPSET == 17 and loaded.opset_import[0].domain == ""
    assert loaded.SerializeToString() == model.SerializeToString()
    ops = [node.op_type for node in loaded.graph.node]
    expected = []
    for act in net.activations:  # one Gemm and one activation per layer (none for the identity)
        expected += ["Gemm"] + ([{"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}[act]] if act != "identity" else [])
    if probabilities:
        expected.append("Softmax" if loss == "softmax_cross_entropy" else "Sigmoid")
    assert ops == expected
    outputs = _run(str(path), X)
    assert outputs[0].dtype == numpy.dtype(dtype) and outputs[0].shape == (100, 4)
    numpy.testing.assert_allclose(outputs[0], net.predict(X), rtol=0, atol=TOLERANCE[dtype])
    if probabilities:
        numpy.testing.assert_allclose(outputs[1], net.predict_proba(X), rtol=0, atol=TOLERANCE[dtype])
    else:
        assert len(outputs) == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_layer_and_batch_of_one(dtype):
    net, X = _network("relu", "mse", dtype, sizes=(3, 2))
    model = net.to_onnx()
    assert [node.op_type for node in model.graph.node] == ["Gemm"]
    for rows in (X[:1], X):
        numpy.testing.assert_allclose(_run(model, rows)[0], net.predict(rows), rtol=0, atol=TOLERANCE[dtype])


def test_probabilities_need_a_classification_loss_and_opset_is_checked():
    net, _ = _network("tanh", "mse", "float64")
    with pytest.raises(ValueError, match="probabilities apply to a classification loss"):
        net.to_onnx(probabilities=True)
    with pytest.raises(ValueError, match="opset must be an int >= 13"):
        net.to_onnx(opset=11)
    model = net.to_onnx(opset=13)
    assert model.opset_import[0].version == 13 and model.ir_version == onnx.helper.find_min_ir_version_for(
        [onnx.helper.make_opsetid("", 13)])


def test_without_onnx_the_error_says_how_to_install(monkeypatch):
    net, _ = _network("tanh", "mse", "float32")
    monkeypatch.setitem(sys.modules, "onnx", None)  # importing onnx now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'onnx>=1.14' \(in a gpubackprop source checkout: pip install '\.\[onnx\]'\)"):
        net.to_onnx()


@pytest.mark.parametrize("labels", [["ant", "bee", "cat", "dog"], [3, 1, 4, 1]])
def test_label_output_of_a_softmax_network(labels):
    net, X = _network("relu", "softmax_cross_entropy", "float64")
    _, proba, label = _run(net.to_onnx(probabilities=True, labels=labels), X)
    assert label.tolist() == numpy.asarray(labels)[net.predict_proba(X).argmax(axis=1)].tolist()
    with pytest.raises(ValueError, match="pass probabilities=True with labels"):
        net.to_onnx(labels=labels)
    with pytest.raises(ValueError, match=r"one label per column of the probabilities \(4\)"):
        net.to_onnx(probabilities=True, labels=labels[:3])


def test_indicator_output_of_a_sigmoid_network():
    net, X = _network("tanh", "sigmoid_binary_cross_entropy", "float32")
    _, proba, label = _run(net.to_onnx(probabilities=True, labels="indicator"), X)
    assert label.dtype == numpy.int64
    numpy.testing.assert_array_equal(label, (proba > 0.5).astype(numpy.int64))
