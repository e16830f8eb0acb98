"""``lumi.to_onnx``: a Lumi graph as an ONNX model, one ONNX node per primitive.

Inputs and outputs keep their names; symbolic dimensions become ``dim_param``s. ``expand`` feeding only
broadcasting ops is dropped (ONNX broadcasts like NumPy). A reshape or expand to a shape with symbolic
dimensions reads their sizes at run time (``Shape`` of an input that has them, ``Gather``, ``Concat``).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import UnsupportedOperation
from ..graph.ir import Graph
from .importer import require_onnx

OPSET = 20
_DT = {"float16": 10, "float32": 1, "float64": 11, "int32": 6, "int64": 7, "bool": 9}  # TensorProto codes
_SIMPLE = {"exp": "Exp", "log": "Log", "sqrt": "Sqrt", "recip": "Reciprocal", "tanh": "Tanh", "erf": "Erf",
           "sin": "Sin", "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "maximum": "Max", "pow": "Pow",
           "cmplt": "Less", "cmpeq": "Equal", "where": "Where", "matmul": "MatMul"}
_BROADCASTING = set(_SIMPLE) - {"matmul"}


def from_lumi(graph: Graph):
    """The ``onnx.ModelProto`` of ``graph``."""
    onnx = require_onnx()
    from onnx import helper, numpy_helper

    users: dict[int, list[str]] = {}
    for n in graph.nodes:
        for s in n.src:
            users.setdefault(s, []).append(n.op)
    outs = set(graph.outputs.values())
    names = {i: name for name, i in graph.inputs.items()}
    name = lambda i: names.get(i, f"v{i}")  # noqa: E731
    nodes, inits = [], []

    def const(label: str, values, dtype=np.int64) -> str:
        inits.append(numpy_helper.from_array(np.asarray(values, dtype), label))
        return label

    where = {d: (name(i), axis) for i in graph.inputs.values() for axis, d in enumerate(graph.nodes[i].shape)
             if isinstance(d, str)}

    def shape_of(label: str, shape) -> str:
        """``shape`` as an int64 tensor, its symbolic dimensions read from an input's shape."""
        if all(isinstance(d, int) for d in shape):
            return const(label, list(shape))
        parts = []
        for k, d in enumerate(shape):
            if isinstance(d, str):
                src, axis = where[d]
                nodes.append(helper.make_node("Shape", [src], [f"{label}_s{k}"], start=axis, end=axis + 1))
                parts.append(f"{label}_s{k}")
            else:
                parts.append(const(f"{label}_c{k}", [d]))
        nodes.append(helper.make_node("Concat", parts, [label], axis=0))
        return label

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
            axes = const(f"axes{n.id}", n.attrs["axes"])
            op = "ReduceSum" if n.op == "sum" else "ReduceMax"
            nodes.append(helper.make_node(op, [*x, axes], y, keepdims=int(n.attrs["keepdims"])))
        elif n.op == "expand" and n.id not in outs and set(users.get(n.id, [])) <= _BROADCASTING:
            nodes.append(helper.make_node("Identity", x, y))
        elif n.op == "reshape":
            nodes.append(helper.make_node("Reshape", [*x, shape_of(f"shape{n.id}", n.shape)], y))
        elif n.op == "expand":
            nodes.append(helper.make_node("Expand", [*x, shape_of(f"shape{n.id}", n.shape)], y))
        elif n.op == "permute":
            nodes.append(helper.make_node("Transpose", x, y, perm=list(n.attrs["axes"])))
        elif n.op == "slice":
            sl = n.attrs["slices"]
            big = np.iinfo(np.int64).max
            ends = [(-big if s[2] < 0 else big) if s[1] is None else s[1] for s in sl]
            parts = [const(f"starts{n.id}", [s[0] if s[0] is not None else (big if s[2] < 0 else 0) for s in sl]),
                     const(f"ends{n.id}", ends), const(f"saxes{n.id}", np.arange(len(sl))),
                     const(f"steps{n.id}", [s[2] for s in sl])]
            nodes.append(helper.make_node("Slice", [x[0], *parts], y))
        elif n.op == "concat":
            nodes.append(helper.make_node("Concat", x, y, axis=n.attrs["axis"]))
        elif n.op == "gather":
            nodes.append(helper.make_node("Gather", x, y, axis=n.attrs["axis"]))
        else:
            raise UnsupportedOperation(f"Lumi op {n.op!r} (node %{n.id}) has no ONNX translation yet")

    def value_info(i: int, label: str):
        node = graph.nodes[i]
        return helper.make_tensor_value_info(label, _DT[node.dtype], list(node.shape))

    inputs = [value_info(i, name(i)) for i in graph.inputs.values()]
    outputs = []
    for out_name, i in graph.outputs.items():
        nodes.append(helper.make_node("Identity", [name(i)], [out_name]))
        outputs.append(value_info(i, out_name))
    model = helper.make_model(helper.make_graph(nodes, "lumi", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def to_onnx(graph: Graph, path: str | os.PathLike | None = None):
    """Write ``graph`` as ONNX to ``path`` (when given) and return the model."""
    model = from_lumi(graph)
    if path is not None:
        require_onnx().save(model, os.fspath(path))
    return model
