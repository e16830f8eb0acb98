"""How each ONNX op lowers to Lumi: one table, ``OPS``, from op type to a function of the node.

A lowering is NumPy code over the node's input values, each a NumPy array (a constant: initializers,
``Constant``, and everything computed from constants alone, which NumPy folds eagerly) or a traced
:class:`~lumi.graph.tensor.Tensor`. ``Shape`` of a tensor with symbolic dimensions is an object array
holding the dimension names, so shape arithmetic (``Gather``, ``Concat``, ``Unsqueeze`` ...) still folds
and a ``Reshape`` to it keeps the batch dimension symbolic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from .. import conv, nn
from ..errors import UnsupportedOperation
from ..graph import shapes as S
from ..graph.ir import GraphBuilder
from ..graph.tensor import Tensor, broadcast_to, lift

TO_THE_END = 2**60  # a Slice end at least this large means "to the end" (models write INT64_MAX)


@dataclass
class Node:
    """One ONNX node being lowered: its input values (``None`` for an omitted optional input), attributes,
    the model's opset and how many outputs the model uses."""

    op: str
    name: str
    inputs: list
    attrs: dict
    opset: int
    n_outputs: int
    builder: GraphBuilder

    def x(self, i: int = 0):
        return self.inputs[i] if i < len(self.inputs) else None

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def unsupported(self, why: str) -> UnsupportedOperation:
        return UnsupportedOperation(f"ONNX {self.op} (node {self.name!r}, opset {self.opset}) {why}; "
                                    "rewrite the model without it or file an issue with the model attached")

    def ints(self, i: int, attr: str | None = None, default=None) -> list | None:
        """A list-of-ints argument: input ``i`` (newer opsets) or attribute ``attr`` (older ones)."""
        v = self.x(i)
        if v is None:
            return list(self.attr(attr, default)) if attr and self.attr(attr, default) is not None else default
        if isinstance(v, Tensor):
            raise self.unsupported(f"needs input {i} to be a constant, but it is computed from the graph's inputs "
                                   "(if it is a graph input, fix its value: from_onnx(model, constants={name: value}))")
        return [d if isinstance(d, str) else int(d) for d in np.asarray(v).reshape(-1).tolist()]

    def scalar(self, i: int, attr: str | None = None, default=None):
        v = self.x(i)
        if v is None:
            return self.attr(attr, default) if attr else default
        return v if isinstance(v, Tensor) else np.asarray(v).reshape(()).item()


Lowering = Callable[[Node], object]


def _dtype(v) -> np.dtype:
    return v.dtype if isinstance(v, Tensor) else np.asarray(v).dtype


def value_shape(v) -> tuple:
    """The shape of a value (a constant or a traced tensor)."""
    return v.shape if isinstance(v, Tensor) else np.shape(v)


def _is_float(v) -> bool:
    return _dtype(v).kind == "f"


# -- elementwise -------------------------------------------------------------------------------
def _unary(fn):
    return lambda n: fn(n.x(0))


def _binary(fn):
    return lambda n: fn(n.x(0), n.x(1))


def _variadic(fn):
    def lower(n):
        out = n.x(0)
        for v in n.inputs[1:]:
            out = fn(out, v)
        return out

    return lower


def _astype(v, dtype):
    dtype = np.dtype(dtype)
    if isinstance(v, Tensor):
        return v if v.dtype == dtype else v.astype(dtype)
    v = np.asarray(v)
    if v.dtype == object:  # a shape holding symbolic dimensions stays as it is
        return v
    return v.astype(dtype)


def div(a, b):
    if _is_float(a):
        return np.true_divide(a, b)
    return _astype(np.trunc(np.true_divide(a, b)), _dtype(a))  # integer Div truncates towards zero


def power(a, b):
    return _astype(np.power(a, _astype(b, _dtype(a)) if _is_float(a) else b), _dtype(a))


def mean(n):
    return _astype(np.true_divide(_variadic(np.add)(n), len(n.inputs)), _dtype(n.x(0)))


def relu(x):
    return np.maximum(x, 0)


def _scaled(n, name: str, default: float) -> float:
    return float(n.attr(name, default))


def leaky_relu(n):
    x, a = n.x(0), _scaled(n, "alpha", 0.01)
    return np.where(np.less(x, 0), x * a, x)


def prelu(n):
    x, slope = n.x(0), n.x(1)
    return np.where(np.less(x, 0), x * slope, x)


def elu(n):
    x, a = n.x(0), _scaled(n, "alpha", 1.0)
    return np.where(np.less(x, 0), (np.exp(np.minimum(x, 0)) - 1) * a, x)


def celu(n):
    x, a = n.x(0), _scaled(n, "alpha", 1.0)
    return np.maximum(x, 0) + np.minimum(0, (np.exp(np.minimum(x, 0) / a) - 1) * a)


def selu(n):
    x, a, g = n.x(0), _scaled(n, "alpha", 1.67326319217681884765625), _scaled(n, "gamma", 1.05070102214813232421875)
    return np.where(np.less(x, 0), (np.exp(np.minimum(x, 0)) * a - a) * g, x * g)


def hard_sigmoid(n):
    x = n.x(0)
    return np.clip(x * _scaled(n, "alpha", 0.2) + _scaled(n, "beta", 0.5), 0, 1)


def hard_swish(n):
    x = n.x(0)
    return x * np.clip(x * (1 / 6) + 0.5, 0, 1)


def softplus(x):
    return np.logaddexp(x, 0)


def thresholded_relu(n):
    x = n.x(0)
    return np.where(np.less(_scaled(n, "alpha", 1.0), x), x, 0)


def is_inf(n):
    x = n.x(0)
    pos, neg = n.attr("detect_positive", 1), n.attr("detect_negative", 1)
    found = np.equal(x, np.inf) if pos else False
    return np.logical_or(found, np.equal(x, -np.inf)) if neg else np.logical_and(found, True)


def clip(n):
    lo, hi = n.scalar(1, "min"), n.scalar(2, "max")
    x = n.x(0)
    if lo is not None:
        x = np.maximum(x, lo if isinstance(lo, Tensor) else np.asarray(lo, _dtype(x)))
    if hi is not None:
        x = np.minimum(x, hi if isinstance(hi, Tensor) else np.asarray(hi, _dtype(x)))
    return x


def where(n):
    return np.where(*n.inputs)


# -- casts ---------------------------------------------------------------------------------------
def _onnx_dtype(n: Node, code: int) -> np.dtype:
    from onnx import helper

    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(code))
    except (KeyError, TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise n.unsupported(f"casts to ONNX type {code}, which Lumi does not carry (it has float16/32/64, int32/64 "
                            "and bool)")
    return dtype


def cast(n):
    if n.attr("saturate", 1) != 1 and n.opset >= 19:
        raise n.unsupported("with saturate=0 (float8 types)")
    return _astype(n.x(0), _onnx_dtype(n, n.attr("to")))


def cast_like(n):
    return _astype(n.x(0), _dtype(n.x(1)))


# -- contractions and activations ---------------------------------------------------------------
def gemm(n):
    a, b, c = n.x(0), n.x(1), n.x(2)
    a = np.swapaxes(a, 0, 1) if n.attr("transA", 0) else a
    b = np.swapaxes(b, 0, 1) if n.attr("transB", 0) else b
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    y = np.matmul(a, b)
    y = y * alpha if alpha != 1.0 else y
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return _astype(y, _dtype(n.x(0)))


def _softmax_axes(n) -> tuple:
    rank = len(value_shape(n.x(0)))
    axis = n.attr("axis", -1 if n.opset >= 13 else 1) % max(rank, 1)
    return (axis,) if n.opset >= 13 else tuple(range(axis, rank))  # older opsets flatten from ``axis`` on


def softmax(n):
    return nn.softmax(n.x(0), axis=_softmax_axes(n))


def log_softmax(n):
    return nn.log_softmax(n.x(0), axis=_softmax_axes(n))


def gelu(n):
    return nn.gelu(n.x(0), n.attr("approximate", "none"))


def layer_norm(n):
    x, scale, bias = n.x(0), n.x(1), n.x(2)
    rank = len(value_shape(x))
    axes = tuple(range(n.attr("axis", -1) % rank, rank))
    dtype = _dtype(x)
    work = np.float32 if n.attr("stash_type", 1) == 1 and dtype == np.float16 else dtype
    xw = _astype(x, work)
    mu = np.mean(xw, axis=axes, keepdims=True)
    d = xw - mu
    inv = 1 / np.sqrt(np.mean(d * d, axis=axes, keepdims=True) + float(n.attr("epsilon", 1e-5)))
    y = _astype(d * inv, dtype) * scale
    y = y + bias if bias is not None else y
    return y, mu, inv


# -- reductions -------------------------------------------------------------------------------------
def _reduce(fn, axes_input_from: int):
    """Reduce over ``axes`` (an input from ``axes_input_from`` on, else an attribute); none means all axes
    unless ``noop_with_empty_axes``."""

    def lower(n):
        x = n.x(0)
        axes = n.ints(1) if n.opset >= axes_input_from else n.attr("axes")
        if not axes:
            if n.attr("noop_with_empty_axes", 0):
                return x
            axes = range(len(value_shape(x)))
        axes = tuple(int(a) % len(value_shape(x)) for a in axes)
        return fn(x, axes, bool(n.attr("keepdims", 1)))

    return lower


def _keep_dtype(fn):
    return lambda x, axes, keep: _astype(fn(x, axes, keep), _dtype(x))


def _log_sum_exp(x, axes, keep):
    big = np.max(x, axis=axes, keepdims=True)
    big = np.where(np.isinf(big), 0, big)
    out = np.log(np.sum(np.exp(x - big), axis=axes, keepdims=True)) + big
    return out if keep else np.squeeze(out, axis=axes)


def _prod(x, axes, keep):
    """Product as sign times exp of the summed logs of magnitudes (no product primitive); a zero gives 0."""
    if not _is_float(x):
        raise UnsupportedOperation("ONNX ReduceProd of integers is not supported (Lumi has no product "
                                   "reduction); cast to float first")
    mag = np.exp(np.sum(np.log(np.abs(x)), axis=axes, keepdims=keep))
    negatives = np.sum(_astype(np.less(x, 0), x.dtype), axis=axes, keepdims=keep)
    odd = np.equal(negatives - np.floor(negatives * 0.5) * 2, 1)
    return np.where(odd, -mag, mag)


_REDUCTIONS = {
    "ReduceSum": (_keep_dtype(lambda x, a, k: np.sum(x, axis=a, keepdims=k)), 13),
    "ReduceMean": (_keep_dtype(lambda x, a, k: np.mean(x, axis=a, keepdims=k)), 18),
    "ReduceMax": (lambda x, a, k: np.max(x, axis=a, keepdims=k), 18),
    "ReduceMin": (lambda x, a, k: np.min(x, axis=a, keepdims=k), 18),
    "ReduceProd": (_prod, 18),
    "ReduceL1": (_keep_dtype(lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k)), 18),
    "ReduceL2": (_keep_dtype(lambda x, a, k: np.sqrt(np.sum(x * x, axis=a, keepdims=k))), 18),
    "ReduceSumSquare": (_keep_dtype(lambda x, a, k: np.sum(x * x, axis=a, keepdims=k)), 18),
    "ReduceLogSum": (lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)), 18),
    "ReduceLogSumExp": (_log_sum_exp, 18),
}


def _arg(fn):
    def lower(n):
        x = n.x(0)
        axis = n.attr("axis", 0) % len(value_shape(x))
        keep = bool(n.attr("keepdims", 1))
        if n.attr("select_last_index", 0):  # the first index of the reversed axis, counted from the end
            return _astype(value_shape(x)[axis] - 1 - fn(np.flip(x, axis), axis=axis, keepdims=keep), np.int64)
        return _astype(fn(x, axis=axis, keepdims=keep), np.int64)

    return lower


# -- shapes and views ---------------------------------------------------------------------------------
def _dims_array(dims) -> np.ndarray:
    """A shape as a value: int64, or an object array when it holds symbolic dimensions."""
    if all(isinstance(d, int) for d in dims):
        return np.asarray(dims, dtype=np.int64).reshape(len(dims))
    out = np.empty(len(dims), dtype=object)
    out[:] = list(dims)
    return out


def shape(n):
    dims = value_shape(n.x(0))
    start, end = n.attr("start", 0), n.attr("end", None)
    return _dims_array(list(dims)[slice(start, end)])


def size(n):
    return np.asarray(S.numel(value_shape(n.x(0))), dtype=np.int64)


def _merged(dims) -> int | str:
    """The size of several dimensions as one: their product, or the one symbolic dimension among ones."""
    names = [d for d in dims if isinstance(d, str)]
    known = math.prod(d for d in dims if isinstance(d, int))
    if not names:
        return known
    if len(names) == 1 and known == 1:
        return names[0]
    raise UnsupportedOperation(f"merging dimensions {S.fmt(dims)} into one needs their sizes; the symbolic ones are "
                               "known only at run time (export the model with a concrete shape)")


def reshape(n):
    x = n.x(0)
    target = n.ints(1, "shape")
    if not n.attr("allowzero", 0):
        target = [value_shape(x)[i] if d == 0 else d for i, d in enumerate(target)]
    return np.reshape(x, target)


def flatten(n):
    x = n.x(0)
    dims = value_shape(x)
    axis = n.attr("axis", 1)
    axis = axis + len(dims) if axis < 0 else axis
    rest = dims[axis:]
    return np.reshape(x, (_merged(dims[:axis]), _merged(rest) if any(isinstance(d, str) for d in rest) else -1))


def transpose(n):
    x = n.x(0)
    perm = n.attr("perm") or list(range(len(value_shape(x))))[::-1]
    return np.transpose(x, perm)


def squeeze(n):
    x = n.x(0)
    dims = value_shape(x)
    axes = n.ints(1, "axes") if n.opset >= 13 else n.attr("axes")
    axes = {a % len(dims) for a in axes} if axes else {i for i, d in enumerate(dims) if d == 1}
    return np.reshape(x, [d for i, d in enumerate(dims) if i not in axes])


def unsqueeze(n):
    x = n.x(0)
    dims = list(value_shape(x))
    axes = n.ints(1, "axes") if n.opset >= 13 else n.attr("axes")
    rank = len(dims) + len(axes)
    for a in sorted(a % rank for a in axes):
        dims.insert(a, 1)
    return np.reshape(x, dims)


def concat(n):
    values = [v for v in n.inputs if v is not None]
    if all(not isinstance(v, Tensor) for v in values):
        return np.concatenate([np.asarray(v) for v in values], axis=n.attr("axis"))
    return np.concatenate(values, axis=n.attr("axis"))


def _slice_of(start: int, end: int, step: int, dim) -> slice:
    """ONNX's clamped start/end (they may run past either end) as a Python slice."""
    if isinstance(dim, str):
        if (start, step) == (0, 1) and end >= TO_THE_END:
            return slice(None)
        raise UnsupportedOperation(f"slicing the symbolic dimension {dim} other than whole is not supported")
    start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    start, end = min(max(start, -1), dim - 1), min(max(end, -1), dim - 1)
    return slice(0, 0, 1) if start < 0 else slice(start, None if end < 0 else end, step)


def slice_(n):
    x = n.x(0)
    if n.opset >= 10:
        starts, ends, axes, steps = n.ints(1), n.ints(2), n.ints(3), n.ints(4)
    else:
        starts, ends, axes, steps = n.attr("starts"), n.attr("ends"), n.attr("axes"), None
    dims = value_shape(x)
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    key = [slice(None)] * len(dims)
    for s, e, a, st in zip(starts, ends, axes, steps):
        key[a % len(dims)] = _slice_of(s, e, st, dims[a % len(dims)])
    return x[tuple(key)]


def split(n):
    x = n.x(0)
    dims = value_shape(x)
    axis = n.attr("axis", 0) % len(dims)
    sizes = n.ints(1) if n.opset >= 13 else n.attr("split")
    if not sizes:
        parts = n.attr("num_outputs", n.n_outputs)
        chunk = -(-dims[axis] // parts)
        sizes = [min(chunk, dims[axis] - i * chunk) for i in range(parts)]
    bounds = np.cumsum([0, *sizes]).tolist()
    lead = (slice(None),) * axis
    return tuple(x[(*lead, slice(a, b))] for a, b in zip(bounds, bounds[1:]))


def gather(n):
    x, index = n.x(0), n.x(1)
    return np.take(x, index, axis=n.attr("axis", 0) % len(value_shape(x)))


def expand(n):
    x = n.x(0)
    target = S.broadcast(value_shape(x), n.ints(1))
    if isinstance(x, Tensor) or not S.is_concrete(target):
        return broadcast_to(lift(n.builder, x), target)
    return np.broadcast_to(x, target)


def pad(n):
    x = n.x(0)
    mode = n.attr("mode", "constant")
    rank = len(value_shape(x))
    pads = n.ints(1, "pads") if n.opset >= 11 else n.attr("pads")
    value = n.scalar(2, "value", 0.0) if n.opset >= 11 else n.attr("value", 0.0)
    axes = n.ints(3) if n.x(3) is not None else list(range(rank))
    width = [(0, 0)] * rank
    for i, a in enumerate(axes):
        width[a % rank] = (pads[i], pads[i + len(axes)])
    if any(lo < 0 or hi < 0 for lo, hi in width):
        raise n.unsupported("with negative pads (cropping); slice instead")
    mode = {"edge": "edge", "reflect": "reflect", "wrap": "wrap", "constant": "constant"}.get(mode)
    if mode is None:
        raise n.unsupported("in this mode")
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=np.asarray(value if value is not None else 0,
                                                                            _dtype(x)).item())
    return np.pad(x, width, mode=mode)


# -- constants -----------------------------------------------------------------------------------------
def constant(n):
    from onnx import numpy_helper

    for key, make in (("value", numpy_helper.to_array), ("value_float", lambda v: np.asarray(v, np.float32)),
                      ("value_floats", lambda v: np.asarray(v, np.float32)),
                      ("value_int", lambda v: np.asarray(v, np.int64)),
                      ("value_ints", lambda v: np.asarray(v, np.int64))):
        if key in n.attrs:
            return make(n.attrs[key])
    raise n.unsupported(f"with {', '.join(n.attrs)} (strings and sparse tensors are not supported)")


def constant_of_shape(n):
    from onnx import numpy_helper

    value = n.attr("value")
    fill = numpy_helper.to_array(value).reshape(()) if value is not None else np.zeros((), np.float32)
    dims = n.ints(0)
    if all(isinstance(d, int) for d in dims):
        return np.broadcast_to(fill, dims)  # no memory until a lowering needs the values
    return broadcast_to(lift(n.builder, fill), dims)


def range_(n):
    start, limit, delta = (n.x(i) for i in range(3))
    if any(isinstance(v, Tensor) for v in (start, limit, delta)):
        raise n.unsupported("with inputs computed from the graph's inputs (the output's length would depend on values)")
    return np.arange(start, limit, delta, dtype=np.asarray(start).dtype)


def dropout(n):
    training = n.scalar(2, None, False) if n.opset >= 12 else False
    if isinstance(training, Tensor) or training:
        raise n.unsupported("in training mode")
    x = n.x(0)
    return x, np.full_like(x, True, dtype=bool)


# -- images ------------------------------------------------------------------------------------------
def _pads(n, x, kernel, strides, dilations) -> list:
    """Explicit begin/end pads from ``pads`` or ``auto_pad``."""
    spatial = value_shape(x)[2:]
    auto = n.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        return list(n.attr("pads", [0] * 2 * len(spatial)))
    if auto == "VALID":
        return [0] * 2 * len(spatial)
    lo, hi = [], []
    for d, k, s, dl in zip(spatial, kernel, strides, dilations):
        total = max((-(-d // s) - 1) * s + (k - 1) * dl + 1 - d, 0)
        small = total // 2
        lo.append(small if auto == "SAME_UPPER" else total - small)
        hi.append(total - lo[-1])
    return lo + hi


def _window_args(n, kernel):
    r = len(kernel)
    strides = list(n.attr("strides", [1] * r))
    dilations = list(n.attr("dilations", [1] * r))
    return strides, dilations, _pads(n, n.x(0), kernel, strides, dilations)


def conv_(n, activation=None):
    x, w, b = n.x(0), n.x(1), n.x(2)
    kernel = n.attr("kernel_shape") or list(value_shape(w)[2:])
    strides, dilations, pads = _window_args(n, kernel)
    return conv.conv(x, w, b, strides, pads, dilations, n.attr("group", 1), activation)


def max_pool(n):
    if n.n_outputs > 1:
        raise n.unsupported("with its Indices output")
    kernel = n.attr("kernel_shape")
    strides, dilations, pads = _window_args(n, kernel)
    if n.attr("storage_order", 0):
        raise n.unsupported("with storage_order=1")
    return conv.max_pool(n.x(0), kernel, strides, pads, dilations, bool(n.attr("ceil_mode", 0)))


def avg_pool(n):
    kernel = n.attr("kernel_shape")
    strides, dilations, pads = _window_args(n, kernel)
    return conv.avg_pool(n.x(0), kernel, strides, pads, dilations, bool(n.attr("ceil_mode", 0)),
                         bool(n.attr("count_include_pad", 0)))


def batch_norm(n):
    if n.n_outputs > 1 or n.attr("training_mode", 0):
        raise n.unsupported("in training mode (only inference batch normalisation is supported)")
    x, scale, bias, m, v = n.inputs[:5]
    return conv.batchnorm(x, scale, bias, m, v, float(n.attr("epsilon", 1e-5)))


def lrn(n):
    return conv.lrn(n.x(0), n.attr("size"), float(n.attr("alpha", 1e-4)), float(n.attr("beta", 0.75)),
                    float(n.attr("bias", 1.0)))


# Inputs that are shapes, axes, sizes or pad values: Lumi needs their values while importing (the graph's
# shapes depend on them). The ONNX backend turns graph inputs feeding these into constants of each run's values.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Slice": (1, 2, 3, 4), "Split": (1,), "Squeeze": (1,), "Unsqueeze": (1,),
    "Pad": (1, 2, 3), "ConstantOfShape": (0,), "Range": (0, 1, 2),
    **{op: (1,) for op in _REDUCTIONS},
}

OPS: dict[str, Lowering] = {
    # elementwise
    "Identity": _unary(lambda x: x),
    "Abs": _unary(np.abs),
    "Neg": _unary(np.negative),
    "Exp": _unary(np.exp),
    "Log": _unary(np.log),
    "Sqrt": _unary(np.sqrt),
    "Reciprocal": _unary(np.reciprocal),
    "Sin": _unary(np.sin),
    "Cos": _unary(np.cos),
    "Tanh": _unary(np.tanh),
    "Erf": _unary(erf),
    "Floor": _unary(np.floor),
    "Ceil": _unary(np.ceil),
    "Round": _unary(np.rint),
    "Sign": _unary(np.sign),
    "Not": _unary(np.logical_not),
    "IsNaN": _unary(np.isnan),
    "IsInf": is_inf,
    "Relu": _unary(relu),
    "Sigmoid": _unary(nn.sigmoid),
    "Softplus": _unary(softplus),
    "Softsign": _unary(lambda x: x / (np.abs(x) + 1)),
    "Mish": _unary(lambda x: x * np.tanh(softplus(x))),
    "LeakyRelu": leaky_relu,
    "PRelu": prelu,
    "Elu": elu,
    "Celu": celu,
    "Selu": selu,
    "HardSigmoid": hard_sigmoid,
    "HardSwish": hard_swish,
    "ThresholdedRelu": thresholded_relu,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(div),
    "Pow": _binary(power),
    "Equal": _binary(np.equal),
    "Less": _binary(np.less),
    "Greater": _binary(np.greater),
    "LessOrEqual": _binary(np.less_equal),
    "GreaterOrEqual": _binary(np.greater_equal),
    "And": _binary(np.logical_and),
    "Or": _binary(np.logical_or),
    "Xor": _binary(np.not_equal),
    "Sum": _variadic(np.add),
    "Max": _variadic(np.maximum),
    "Min": _variadic(np.minimum),
    "Mean": mean,
    "Clip": clip,
    "Where": where,
    "Cast": cast,
    "CastLike": cast_like,
    # contractions, activations, normalisation
    "MatMul": _binary(np.matmul),
    "Gemm": gemm,
    "Softmax": softmax,
    "LogSoftmax": log_softmax,
    "Gelu": gelu,
    "LayerNormalization": layer_norm,
    # reductions
    **{op: _reduce(fn, since) for op, (fn, since) in _REDUCTIONS.items()},
    "ArgMax": _arg(np.argmax),
    "ArgMin": _arg(np.argmin),
    # shapes and views
    "Shape": shape,
    "Size": size,
    "Reshape": reshape,
    "Flatten": flatten,
    "Transpose": transpose,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Concat": concat,
    "Split": split,
    "Slice": slice_,
    "Gather": gather,
    "Expand": expand,
    "Pad": pad,
    # constants
    "Constant": constant,
    "ConstantOfShape": constant_of_shape,
    "Range": range_,
    "Dropout": dropout,
    # images
    "Conv": conv_,
    "MaxPool": max_pool,
    "AveragePool": avg_pool,
    "GlobalAveragePool": _unary(conv.global_avg_pool),
    "GlobalMaxPool": _unary(conv.global_max_pool),
    "BatchNormalization": batch_norm,
    "LRN": lrn,
}
