"""``lumi.from_onnx``: an ONNX model as a Lumi graph.

The model is checked (``onnx.checker``) and its shapes inferred (``onnx.shape_inference``); then each
node is lowered in order through :data:`lumi.onnx.ops.OPS` on a tracer, so the result is a graph of
Lumi's primitives. Initializers are constants and whatever depends on constants only folds while
importing. A ``BatchNormalization`` right after a ``Conv`` (its only consumer) is folded into the
convolution's weights and bias, and a ``Relu`` after one into its matmul epilogue.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping

import numpy as np

from ..errors import LumiError, ShapeError, TraceError, UnsupportedOperation
from ..graph import shapes as S
from ..graph.dtypes import dtype_name
from ..graph.ir import Graph
from ..graph.tensor import Tensor
from ..graph.trace import Tracer, spec
from . import ops
from .ops import OPS, Node

BATCH = "batch"


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise LumiError('reading or writing ONNX needs the onnx package: pip install "lumi-magics[onnx]"') from None
    return onnx


def _identifier(name: str) -> str:
    """``name`` as a symbolic dimension name (a Python identifier)."""
    ident = re.sub(r"\W", "_", name)
    return ident if ident.isidentifier() else f"d_{ident}"


def _input_shape(value_info, batch: str) -> tuple:
    dims = []
    for i, d in enumerate(value_info.type.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.dim_param:
            dims.append(_identifier(d.dim_param))
        else:
            dims.append(batch if i == 0 else f"{_identifier(value_info.name)}_{i}")
    return tuple(dims)


def _np_dtype(elem_type: int, what: str) -> np.dtype:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        raise UnsupportedOperation(f"{what} has ONNX element type {elem_type}, which Lumi does not carry; "
                                   "Lumi has float16/32/64, int32/64 and bool") from None


def opset_of(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _load(model):
    onnx = require_onnx()
    if isinstance(model, str | os.PathLike):
        model = onnx.load(os.fspath(model))
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise LumiError(f"not a valid ONNX model ({e}); check it with onnx.checker.check_model") from None
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a check only: the importer infers every shape itself
        return model


def _fold_batchnorm(conv: Node | None, n: Node) -> Node | None:
    """The convolution ``conv`` with the batch normalisation ``n`` folded into its weights, if all are constants."""
    params = [conv.x(1), conv.x(2), *n.inputs[1:5]] if conv is not None else []
    if conv is None or any(isinstance(p, Tensor) for p in params) or n.n_outputs > 1:
        return None
    from .. import conv as C

    w, b = np.asarray(conv.x(1)), conv.x(2)
    a, shift = C.batchnorm_affine(*(np.asarray(p, np.float64) for p in n.inputs[1:5]),
                                  float(n.attr("epsilon", 1e-5)))
    w = (w * a.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    b = (shift if b is None else np.asarray(b) * a + shift).astype(w.dtype)
    return Node("Conv", conv.name, [conv.x(0), w, b], conv.attrs, conv.opset, 1, conv.builder)


def _attribute(value):
    """An attribute's value with byte strings decoded (``auto_pad``, ``mode``, ``approximate``)."""
    return value.decode() if isinstance(value, bytes) else value


def _check_shape(value, inferred: dict, name: str, node: Node) -> None:
    want = inferred.get(name)
    got = ops.value_shape(value)
    if want is not None and S.is_concrete(got) and all(isinstance(d, int) for d in want) and tuple(want) != tuple(got):
        raise ShapeError(f"ONNX {node.op} (node {node.name!r}): Lumi computed shape {S.fmt(got)} for {name!r} but "
                         f"ONNX shape inference says {S.fmt(want)}; please report this with the model")


def shape_inputs(model) -> list[str]:
    """The graph inputs that some node reads as a shape, axes or sizes (see ``ops.SHAPE_INPUTS``)."""
    inputs = {vi.name for vi in model.graph.input} - {i.name for i in model.graph.initializer}
    used = {node.input[i] for node in model.graph.node for i in ops.SHAPE_INPUTS.get(node.op_type, ())
            if i < len(node.input)}
    return [vi.name for vi in model.graph.input if vi.name in inputs & used]


def from_onnx(model, batch: str = BATCH, constants: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Import an ONNX model (a path, bytes or ``onnx.ModelProto``) as a :class:`lumi.Graph`.

    Graph inputs keep their names; unknown dimensions become symbolic (an unnamed first one is ``batch``,
    so a deployed model batches). ``constants`` fixes the values of some graph inputs (shape inputs, say),
    which then are no inputs of the result. Unsupported ops raise :class:`lumi.UnsupportedOperation` naming
    the op, the node and the opset.
    """
    model = _load(model)
    g, opset = model.graph, opset_of(model)
    tracer = Tracer()
    from onnx import helper, numpy_helper

    env: dict[str, object] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    env.update({k: np.asarray(v) for k, v in (constants or {}).items()})
    for vi in g.input:
        if vi.name in env:
            continue
        dims = _input_shape(vi, batch)
        dtype = dtype_name(_np_dtype(vi.type.tensor_type.elem_type, f"input {vi.name!r}"))
        env[vi.name] = tracer.input(vi.name, spec(dims, dtype))
    inferred = {vi.name: [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
                for vi in [*g.value_info, *g.output] if vi.type.tensor_type.HasField("shape")}
    users: dict[str, int] = {}
    for node in g.node:
        for i in node.input:
            users[i] = users.get(i, 0) + 1
    outputs = {o.name for o in g.output}
    convs: dict[str, Node] = {}
    for index, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{index}"
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOperation(f"ONNX op {node.domain}.{node.op_type} (node {name!r}, opset {opset}) is not "
                                       "supported: Lumi reads the default ONNX domain only")
        lower = OPS.get(node.op_type)
        if lower is None:
            raise UnsupportedOperation(
                f"ONNX op {node.op_type} (node {name!r}, opset {opset}) is not supported by Lumi; supported ops: "
                f"{', '.join(sorted(OPS))}. Rewrite the model without it or file an issue with the model attached")
        n = Node(node.op_type, name, [env[i] if i else None for i in node.input],
                 {a.name: _attribute(helper.get_attribute_value(a)) for a in node.attribute}, opset,
                 sum(1 for o in node.output if o), tracer.builder)
        if node.op_type == "BatchNormalization":
            folded = _fold_batchnorm(convs.get(node.input[0]), n)
            n, lower = (folded, OPS["Conv"]) if folded is not None else (n, lower)
        elif node.op_type == "Relu" and node.input[0] in convs:  # into the conv's matmul epilogue
            n, lower = convs[node.input[0]], functools.partial(ops.conv_, activation=ops.relu)
        try:
            result = lower(n)
        except (UnsupportedOperation, ShapeError, TraceError) as e:
            if f"node {name!r}" in str(e):
                raise
            raise type(e)(f"ONNX {node.op_type} (node {name!r}, opset {opset}): {e}") from None
        results = result if isinstance(result, tuple) else (result,)
        for out, value in zip(node.output, results):
            if not isinstance(value, Tensor | np.ndarray):  # NumPy scalars, and a dimension taken out of a shape
                value = np.asarray(value, dtype=object if isinstance(value, str) else None)
            if out:
                env[out] = value
                _check_shape(value, inferred, out, n)
        if n.op == "Conv" and node.op_type != "Relu" and users.get(node.output[0]) == 1 and \
                node.output[0] not in outputs:  # a Conv, or a BatchNormalization folded into one
            convs[node.output[0]] = n
    result = {}
    for o in g.output:
        value = env[o.name]
        if not isinstance(value, Tensor) and np.asarray(value).dtype == object:
            value = np.asarray(value.tolist(), np.int64)  # a shape: refused below if it holds symbols
        result[o.name] = value
    try:
        return tracer.graph(result)
    except (TypeError, ValueError) as e:
        raise ShapeError(f"an output of the ONNX model is not a tensor Lumi can carry ({e})") from None
