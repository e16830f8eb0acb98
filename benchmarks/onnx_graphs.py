"""ONNX peers for the kernel benchmarks, built with ``onnx.helper``.

``from_lumi`` (:mod:`lumi.onnx.exporter`) writes a traced Lumi graph op for op as an ONNX graph (the same
primitives NumPy eager runs; onnxruntime applies its own graph optimisations on top). ``mlp_block_fused`` is the
idiomatic ONNX form of the transformer MLP block (LayerNormalization and Gelu ops), so the
comparison is also made against onnxruntime's fused kernels.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
from lumi.graph.ir import Graph
from lumi.onnx.exporter import OPSET, from_lumi
from onnx import TensorProto, helper, numpy_helper

__all__ = ["OPSET", "feeds", "from_lumi", "light_models", "mlp_block_fused", "session"]


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # Idle intra-op threads would otherwise spin after each run and take the cores from the peer
    # timed next (the rounds are interleaved); onnxruntime's own run time is unaffected.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "lumi", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def feeds(graph: Graph, arrays) -> dict:
    return dict(zip(graph.inputs, arrays))


def light_models():
    """ResNet-50 and SqueezeNet from the onnx wheel's light models (224x224) at batch 1 and 8. They hard-code
    batch 1 (input, output, and ResNet's Reshape before its classifier), which batch 8 rewrites."""
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    for label, file in (("resnet50-light", "light_resnet50.onnx"), ("squeezenet-light", "light_squeezenet.onnx")):
        for batch in (1, 8):
            model = onnx.load(os.path.join(light, file))
            inits = {i.name for i in model.graph.initializer}
            data = next(i for i in model.graph.input if i.name not in inits)
            data.type.tensor_type.shape.dim[0].dim_value = batch
            for init in model.graph.initializer:
                if any(n.op_type == "Reshape" and n.input[1] == init.name for n in model.graph.node):
                    init.CopyFrom(numpy_helper.from_array(np.array([batch, -1], np.int64), init.name))
            model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = batch
            yield f"{label} 224x224 batch {batch}", model


def mlp_block_fused(tokens: int, d: int, eps: float = 1e-5) -> onnx.ModelProto:
    """LayerNormalization -> MatMul + Add -> Gelu(tanh) -> MatMul + Add -> residual Add."""
    f = TensorProto.FLOAT
    names = ["x", "w1", "b1", "w2", "b2", "gamma", "beta"]
    shapes = [[tokens, d], [d, 4 * d], [4 * d], [4 * d, d], [d], [d], [d]]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["h"], axis=-1, epsilon=eps),
        helper.make_node("MatMul", ["h", "w1"], ["u"]),
        helper.make_node("Add", ["u", "b1"], ["ub"]),
        helper.make_node("Gelu", ["ub"], ["a"], approximate="tanh"),
        helper.make_node("MatMul", ["a", "w2"], ["z"]),
        helper.make_node("Add", ["z", "b2"], ["zb"]),
        helper.make_node("Add", ["x", "zb"], ["out"]),
    ]
    inputs = [helper.make_tensor_value_info(n, f, s) for n, s in zip(names, shapes)]
    return _model(nodes, inputs, [helper.make_tensor_value_info("out", f, [tokens, d])], [])
