"""lumi.from_onnx: names, symbolic batch, folding, errors, and CUDA source of the shipped light models."""

from __future__ import annotations

import os
import subprocess
import sys

import lumi
import numpy as np
import pytest
from compiler.conftest import assert_cuda_compiles
from lumi import conv
from lumi.onnx.conformance import LIGHT_IN_SUITE

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
RNG = np.random.default_rng(1)


def model(nodes, inputs, outputs, inits=(), opset=17):
    m = helper.make_model(helper.make_graph(nodes, "m", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid("", opset)])
    return m


def conv_bn():
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    stats = [RNG.random(4).astype(np.float32) + 0.5 for _ in range(4)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], epsilon=1e-3),
             helper.make_node("Relu", ["y"], ["out"])]
    inits = [numpy_helper.from_array(w, "w")] + [numpy_helper.from_array(a, k) for a, k in zip(stats, "sbmv")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 4, 8, 8])
    return model(nodes, [x], [out], inits), w, stats


def test_unnamed_first_dimension_is_a_symbolic_batch_and_batchnorm_folds_into_the_conv():
    m, w, (s, b, mu, v) = conv_bn()
    g = lumi.from_onnx(m)
    assert g.input_specs() == [("x", ("batch", 3, 8, 8), "float32")]
    assert not {"mul", "div", "sqrt"} & {n.op for n in g.nodes}  # the normalisation is in the weights and bias
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    c = conv.conv(x, w, pads=[1, 1, 1, 1])
    want = np.maximum(conv.batchnorm(c, s, b, mu, v, 1e-3), 0)
    np.testing.assert_allclose(g.run(x, backend="cpu"), want, rtol=1e-4, atol=1e-5)


def test_shape_arithmetic_folds_and_keeps_the_batch():
    """PyTorch's flatten: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"]),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["out"])]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])
    g = lumi.from_onnx(model(nodes, [x], [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 6])], inits))
    assert g.output_specs() == [("out", ("N", 6), "float32")]
    assert [n.op for n in g.nodes] == ["input", "reshape"]


def test_an_unsupported_op_names_itself_its_node_and_the_opset():
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="pick")]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "v")]
    m = model(nodes, [io[0]], [io[1]], [numpy_helper.from_array(np.array([2], np.int64), "k")], opset=13)
    with pytest.raises(lumi.UnsupportedOperation, match=r"ONNX op TopK \(node 'pick', opset 13\)"):
        lumi.from_onnx(m)


def test_import_lumi_does_not_import_onnx():
    code = "import sys, lumi; lumi.from_onnx; assert 'onnx' not in sys.modules, 'onnx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", LIGHT_IN_SUITE)
def test_light_model_cuda_source_compiles(name, tmp_path):
    g = lumi.from_onnx(os.path.join(LIGHT, f"light_{name}.onnx"))
    plan = lumi.compile(g, "cuda")
    assert_cuda_compiles([k.source for k in plan.kernels if k.kind in ("elementwise", "reduce")], tmp_path)
