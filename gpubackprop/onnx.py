"""ONNX export of a ``gpubackprop.MLP``: a standard ONNX model that any ONNX runtime can serve.

The graph, per layer ``i``: ``Gemm(h, W_i, b_i, transB=1)`` (z = h Wᵀ + b, W stored (out, in) as
in the network) then the layer's activation as one standard operator (``Sigmoid``, ``Tanh``,
``Relu``; none for the identity). Input "X" (batch, inputs), output "Y" (batch, outputs) equal to
``MLP.predict``; with ``probabilities``, a second output "probabilities" equal to
``MLP.predict_proba`` (``Softmax`` over axis 1 for softmax_cross_entropy, ``Sigmoid`` for
sigmoid_binary_cross_entropy), and, given the class labels, "label" (``ArgMax`` + ``Gather``: what
the scikit-learn classifier's ``predict`` gives). The batch dimension is symbolic ("N"); every tensor is in the
network's dtype (float32 or float64: onnxruntime's CPU provider has double kernels for Gemm,
Sigmoid, Tanh, Relu and Softmax, checked by tests/test_onnx.py).

Operator set ``OPSET`` (17: Softmax's one-axis semantics date from 13, every operator used here
is unchanged since); the IR version is the lowest that opset needs, so that older runtimes load the
file too. Built with the ``onnx`` package's helper API (``pip install 'onnx>=1.14'``; in a source checkout ``pip install '.[onnx]'``).

Numbers: onnxruntime computes the same formulas in another order (its own GEMM kernels, and
``Sigmoid`` by its own formula where the network uses t/(1 + t) or 1/(1 + t), t = e^−|z|), so outputs agree to
rounding, not bit for bit: within 1e-5 in float32 and 1e-12 in float64 on the tests' networks.
"""
from __future__ import annotations

import numpy

OPSET = 17
_ACTIVATION_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "identity": None}


def _require_onnx():
    try:
        import onnx
    except ImportError:
        from .extras import install_hint

        raise ImportError(f"ONNX export needs the onnx package: {install_hint('onnx')}") from None
    return onnx


def to_onnx(net, path=None, *, probabilities=False, opset=None, binary_two_columns=False, labels=None,
            graph_name="gpubackprop_mlp"):
    """``net`` (a ``gpubackprop.MLP``) as an ``onnx.ModelProto``, checked by ``onnx.checker``
    (full check, with shape inference), and written to ``path`` when given.

    ``probabilities``: also output "probabilities" (batch, outputs), the network's
    ``predict_proba`` (a classification loss only; ValueError otherwise). ``binary_two_columns``:
    for one sigmoid output, "probabilities" is [1 − p, p] (batch, 2), as scikit-learn's
    ``predict_proba`` gives for two classes. ``labels`` (needs ``probabilities``): also output
    "label": a sequence of class labels (ints or strings, one per column of "probabilities") gives
    the label of the most probable column, (batch,) (``ArgMax`` then ``Gather``); "indicator" gives
    [p > ½] per output as int64, (batch, outputs) (multilabel). ``opset``: the operator set (default
    ``OPSET``; 13 or above). Raises ImportError without the onnx package.
    """
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    opset = OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ValueError(f"opset must be an int >= 13 (Softmax over one axis), got {opset!r}")
    if probabilities and net.loss not in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
        raise ValueError(f"probabilities apply to a classification loss (softmax_cross_entropy, "
                         f"sigmoid_binary_cross_entropy); this network's loss is {net.loss!r}")
    dtype = numpy.dtype(net.dtype)
    elem = TensorProto.FLOAT if dtype == numpy.float32 else TensorProto.DOUBLE
    nodes, initializers = [], []
    h = "X"
    params = net.get_params()
    for i, ((W, b), act) in enumerate(zip(params, net.activations)):
        initializers.append(numpy_helper.from_array(numpy.ascontiguousarray(W, dtype), f"W{i}"))
        initializers.append(numpy_helper.from_array(numpy.ascontiguousarray(b, dtype), f"b{i}"))
        last = i == len(params) - 1
        op = _ACTIVATION_OPS[act]
        z = "Y" if last and op is None else f"z{i}"
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [z], name=f"gemm{i}", transB=1))
        if op is not None:
            a = "Y" if last else f"a{i}"
            nodes.append(helper.make_node(op, [z], [a], name=f"{op.lower()}{i}"))
            z = a
        h = z
    outputs = [helper.make_tensor_value_info("Y", elem, ["N", net.layer_sizes[-1]])]
    width = None
    if probabilities:
        if net.loss == "softmax_cross_entropy":
            nodes.append(helper.make_node("Softmax", ["Y"], ["probabilities"], name="softmax", axis=1))
            width = net.layer_sizes[-1]
        elif binary_two_columns and net.layer_sizes[-1] == 1:
            nodes.append(helper.make_node("Sigmoid", ["Y"], ["p"], name="sigmoid"))
            initializers.append(numpy_helper.from_array(numpy.ones((1, 1), dtype), "one"))
            nodes.append(helper.make_node("Sub", ["one", "p"], ["q"], name="one_minus_p"))
            nodes.append(helper.make_node("Concat", ["q", "p"], ["probabilities"], name="concat", axis=1))
            width = 2
        else:
            nodes.append(helper.make_node("Sigmoid", ["Y"], ["probabilities"], name="sigmoid"))
            width = net.layer_sizes[-1]
        outputs.append(helper.make_tensor_value_info("probabilities", elem, ["N", width]))
    if labels is not None:
        if not probabilities:
            raise ValueError("labels are read off the probabilities: pass probabilities=True with labels")
        outputs.append(_label_nodes(labels, width, dtype, nodes, initializers))
    graph = helper.make_graph(nodes, graph_name, [helper.make_tensor_value_info("X", elem, ["N", net.layer_sizes[0]])],
                              outputs, initializer=initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="gpubackprop",
                              ir_version=helper.find_min_ir_version_for(opsets))
    model.doc_string = f"{net!r}"
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save_model(model, str(path) if not hasattr(path, "write") else path)
    return model


def _label_nodes(labels, width, dtype, nodes, initializers):
    """The "label" output's nodes and initializers (appended), read off "probabilities" (``width``
    columns); returns the output's value info."""
    from onnx import TensorProto, helper, numpy_helper

    if isinstance(labels, str) and labels == "indicator":
        initializers.append(numpy_helper.from_array(numpy.full((1, 1), 0.5, dtype), "half"))
        nodes.append(helper.make_node("Greater", ["probabilities", "half"], ["above_half"], name="above_half"))
        nodes.append(helper.make_node("Cast", ["above_half"], ["label"], name="indicator", to=TensorProto.INT64))
        return helper.make_tensor_value_info("label", TensorProto.INT64, ["N", width])
    classes = numpy.asarray(labels)
    if classes.ndim != 1 or classes.shape[0] != width:
        raise ValueError(f"labels must hold one label per column of the probabilities ({width}), "
                         f"got shape {classes.shape}")
    if classes.dtype.kind in "iub":
        classes, label_type = classes.astype(numpy.int64), TensorProto.INT64
    elif classes.dtype.kind == "f":
        classes, label_type = classes.astype(numpy.float64), TensorProto.DOUBLE
    else:
        classes, label_type = numpy.array([str(c) for c in classes], dtype=object), TensorProto.STRING
    initializers.append(numpy_helper.from_array(classes, "classes"))
    nodes.append(helper.make_node("ArgMax", ["probabilities"], ["column"], name="argmax", axis=1, keepdims=0))
    nodes.append(helper.make_node("Gather", ["classes", "column"], ["label"], name="label", axis=0))
    return helper.make_tensor_value_info("label", label_type, ["N"])
