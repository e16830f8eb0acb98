"""ONNX peers for the kernel benchmarks, built with ``onnx.helper``.

``from_lumi`` writes a traced Lumi graph op for op as an ONNX graph (the same primitives NumPy
eager runs; onnxruntime applies its own graph optimisations on top). ``mlp_block_fused`` is the
idiomatic ONNX form of the transformer MLP block (LayerNormalization and Gelu ops), so the
comparison is also made against onnxruntime's fused kernels.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from lumi.graph.ir import Graph
from onnx import TensorProto, helper, numpy_helper

_DT = {"float16": TensorProto.FLOAT16, "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE,
       "int32": TensorProto.INT32, "int64": TensorProto.INT64, "bool": TensorProto.BOOL}
_SIMPLE = {"exp": "Exp", "log": "Log", "sqrt": "Sqrt", "recip": "Reciprocal", "tanh": "Tanh", "erf": "Erf",
           "sin": "Sin", "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "maximum": "Max", "pow": "Pow",
           "cmplt": "Less", "cmpeq": "Equal", "where": "Where", "matmul": "MatMul"}
_BROADCASTING = set(_SIMPLE) - {"matmul"}
OPSET = 20


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


def from_lumi(graph: Graph) -> onnx.ModelProto:
    """The graph as ONNX, one node per primitive. ``expand`` feeding only broadcasting ops is dropped
    (ONNX broadcasts like NumPy), as NumPy eager never materialises it either."""
    users: dict[int, list[str]] = {}
    for n in graph.nodes:
        for s in n.src:
            users.setdefault(s, []).append(n.op)
    outs = set(graph.outputs.values())
    nodes, inits, name = [], [], lambda i: f"v{i}"
    for n in graph.nodes:
        x, y = [name(s) for s in n.src], [name(n.id)]
        if n.op == "input":
            continue
        if n.op == "const":
            inits.append(numpy_helper.from_array(graph.constants[n.id], name(n.id)))
        elif n.op in _SIMPLE:
            nodes.append(helper.make_node(_SIMPLE[n.op], x, y))
        elif n.op == "cast":
            nodes.append(helper.make_node("Cast", x, y, to=_DT[n.dtype]))
        elif n.op in ("sum", "max"):
            axes = numpy_helper.from_array(np.array(n.attrs["axes"], np.int64), f"axes{n.id}")
            inits.append(axes)
            op = "ReduceSum" if n.op == "sum" else "ReduceMax"
            nodes.append(helper.make_node(op, [*x, axes.name], y, keepdims=int(n.attrs["keepdims"])))
        elif n.op == "reshape" or (n.op == "expand" and n.id not in outs
                                   and set(users.get(n.id, [])) <= _BROADCASTING):
            shape = numpy_helper.from_array(np.array(n.shape, np.int64), f"shape{n.id}")
            inits.append(shape)
            nodes.append(helper.make_node("Reshape", [*x, shape.name], y) if n.op == "reshape"
                         else helper.make_node("Identity", x, y))
        elif n.op == "expand":
            shape = numpy_helper.from_array(np.array(n.shape, np.int64), f"shape{n.id}")
            inits.append(shape)
            nodes.append(helper.make_node("Expand", [*x, shape.name], y))
        elif n.op == "permute":
            nodes.append(helper.make_node("Transpose", x, y, perm=list(n.attrs["axes"])))
        elif n.op == "slice":
            starts = np.array([s[0] for s in n.attrs["slices"]], np.int64)
            ends = np.array([np.iinfo(np.int64).max if s[1] is None else s[1] for s in n.attrs["slices"]], np.int64)
            steps = np.array([s[2] for s in n.attrs["slices"]], np.int64)
            parts = []
            for k, arr in (("starts", starts), ("ends", ends), ("steps", steps)):
                inits.append(numpy_helper.from_array(arr, f"{k}{n.id}"))
                parts.append(f"{k}{n.id}")
            axes = numpy_helper.from_array(np.arange(len(n.attrs["slices"]), dtype=np.int64), f"saxes{n.id}")
            inits.append(axes)
            nodes.append(helper.make_node("Slice", [x[0], parts[0], parts[1], axes.name, parts[2]], y))
        elif n.op == "concat":
            nodes.append(helper.make_node("Concat", x, y, axis=n.attrs["axis"]))
        else:
            raise ValueError(f"no ONNX translation for Lumi op {n.op!r} (node %{n.id}); add one above to benchmark it")
    vi = lambda i, label: helper.make_tensor_value_info(label, _DT[graph.nodes[i].dtype],  # noqa: E731
                                                        list(graph.nodes[i].shape))
    inputs = [vi(i, name(i)) for i in graph.inputs.values()]
    outputs = []
    for out_name, i in graph.outputs.items():
        nodes.append(helper.make_node("Identity", [name(i)], [out_name]))
        outputs.append(vi(i, out_name))
    return _model(nodes, inputs, outputs, inits)


def feeds(graph: Graph, arrays) -> dict:
    return {f"v{i}": a for i, a in zip(graph.inputs.values(), arrays)}


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
