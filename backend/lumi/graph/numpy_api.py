"""How each supported NumPy function and ufunc lowers to primitives.

``UFUNCS`` and ``FUNCTIONS`` are the whole supported surface; anything else raises
:class:`~lumi.errors.UnsupportedOperation` naming the function.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedOperation
from . import shapes as S
from .dtypes import dtype_name, float_of
from .tensor import (
    Tensor,
    broadcast_to,
    builder_of,
    cast,
    elementwise,
    lift,
    prim,
    reshape,
    result_dtype,
    to_float,
)

_FALLBACK = "run the cell as ordinary Python on a worker with %%remote --python"


def unsupported(name: str, why: str = "") -> UnsupportedOperation:
    why = f" ({why})" if why else ""
    return UnsupportedOperation(f"numpy.{name} is not supported by Lumi's tracer{why}; {_FALLBACK}.")


# -- elementwise ------------------------------------------------------------------------------
def _binary(op: str, float_result: bool = False):
    def lower(a, b):
        dtype = result_dtype(a, b)
        a, b = elementwise([a, b], float_of(dtype) if float_result else dtype)
        return prim(a.builder, op, a, b)

    return lower


def _unary(op: str):
    def lower(x):
        x = to_float(lift(builder_of([x]), x))
        return prim(x.builder, op, x)

    return lower


def _compare(op: str, swap: bool = False, negate: bool = False):
    def lower(a, b):
        a, b = elementwise([a, b])
        out = prim(a.builder, op, *((b, a) if swap else (a, b)))
        return logical_not(out) if negate else out

    return lower


def logical_not(x):
    x = cast(lift(builder_of([x]), x), "bool")
    return prim(x.builder, "cmpeq", *elementwise([x, False]))


def negative(x):
    x = lift(builder_of([x]), x)
    if x.dtype == bool:
        raise unsupported("negative", "of a bool array; use np.logical_not")
    return prim(x.builder, "mul", *elementwise([x, -1]))


def absolute(x):
    x = lift(builder_of([x]), x)
    return maximum(x, negative(x)) if x.dtype != bool else x


def maximum(a, b):
    a, b = elementwise([a, b])
    return prim(a.builder, "maximum", a, b)


def minimum(a, b):
    a, b = elementwise([a, b])
    if a.dtype == bool:
        return prim(a.builder, "mul", a, b)
    return negative(maximum(negative(a), negative(b)))


def power(a, b):
    dtype = result_dtype(a, b)
    a, b = elementwise([a, b], dtype)
    return prim(a.builder, "pow", a, b)


def cos(x):
    x = to_float(lift(builder_of([x]), x))
    return prim(x.builder, "sin", np.add(x, math.pi / 2))


def square(x):
    return np.multiply(x, x)


def logical_or(a, b):
    a, b = elementwise([a, b], "bool")
    return prim(a.builder, "maximum", a, b)


def logical_and(a, b):
    a, b = elementwise([a, b], "bool")
    return prim(a.builder, "mul", a, b)


def where(cond, a=None, b=None):
    if a is None or b is None:
        raise unsupported("where", "with one argument; give both branches")
    dtype = result_dtype(a, b)
    b_ = builder_of([cond, a, b])
    cond = cast(lift(b_, cond), "bool")
    x, y = lift(b_, a, dtype), lift(b_, b, dtype)
    shape = S.broadcast(S.broadcast(cond.shape, x.shape), y.shape)
    return prim(b_, "where", broadcast_to(cond, shape), broadcast_to(x, shape), broadcast_to(y, shape))


def clip(x, lo=None, hi=None, **kwargs):
    if kwargs:
        raise unsupported("clip", f"with {', '.join(kwargs)}")
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


UFUNCS = {
    "add": _binary("add"),
    "subtract": _binary("sub"),
    "multiply": _binary("mul"),
    "divide": _binary("div", float_result=True),
    "true_divide": _binary("div", float_result=True),
    "power": power,
    "maximum": maximum,
    "minimum": minimum,
    "exp": _unary("exp"),
    "log": _unary("log"),
    "sqrt": _unary("sqrt"),
    "reciprocal": _unary("recip"),
    "tanh": _unary("tanh"),
    "sin": _unary("sin"),
    "erf": _unary("erf"),
    "cos": cos,
    "negative": negative,
    "absolute": absolute,
    "square": square,
    "less": _compare("cmplt"),
    "greater": _compare("cmplt", swap=True),
    "less_equal": _compare("cmplt", swap=True, negate=True),
    "greater_equal": _compare("cmplt", negate=True),
    "equal": _compare("cmpeq"),
    "not_equal": _compare("cmpeq", negate=True),
    "logical_not": logical_not,
    "logical_and": logical_and,
    "logical_or": logical_or,
    "invert": lambda x: logical_not(x) if lift(builder_of([x]), x).dtype == bool else None,  # ~mask only
}


def apply_ufunc(ufunc, method: str, inputs, kwargs):
    name = ufunc.__name__
    if method == "reduce" and name in ("add", "maximum", "minimum") and not kwargs.get("out"):
        fn = {"add": reduce_sum, "maximum": reduce_max, "minimum": reduce_min}[name]
        return fn(inputs[0], axis=kwargs.get("axis", 0), keepdims=kwargs.get("keepdims", False))
    if method != "__call__":
        raise unsupported(f"{name}.{method}")
    if kwargs.get("out") is not None:
        raise unsupported(name, "with out=: traced arrays are immutable")
    lower = UFUNCS.get(name)
    extra = {k: v for k, v in kwargs.items() if k not in ("out", "dtype")}
    if lower is None or extra:
        raise unsupported(name, f"with {', '.join(extra)}" if extra else "")
    result = lower(*inputs)
    if result is None:
        raise unsupported(name, "on non-bool arrays")
    if kwargs.get("dtype") is not None:
        result = cast(result, dtype_name(kwargs["dtype"]))
    return result


# -- reductions -------------------------------------------------------------------------------
def _reduce(op: str, x: Tensor, axis, keepdims: bool) -> Tensor:
    axes = S.normalize_axes(axis, x.ndim)
    if not axes:
        return x
    return prim(x.builder, op, x, axes=list(axes), keepdims=bool(keepdims))


def _count(x: Tensor, axes, dtype: str) -> Tensor:
    """Number of elements reduced over ``axes``, symbolic dimensions included."""
    dims = [x.shape[a] for a in axes]
    if all(isinstance(d, int) for d in dims):
        return lift(x.builder, math.prod(dims), dtype)
    ones = broadcast_to(lift(x.builder, 1, dtype), x.shape)
    return prim(x.builder, "sum", ones, axes=list(axes), keepdims=True)


def reduce_sum(x, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
    if out is not None or kwargs:
        raise unsupported("sum", "with out= or where=")
    x = lift(builder_of([x]), x)
    if dtype is not None:
        x = cast(x, dtype_name(dtype))
    elif x.dtype.kind in "bi":
        x = cast(x, "int64")
    return _reduce("sum", x, axis, keepdims)


def reduce_max(x, axis=None, out=None, keepdims=False, **kwargs):
    if out is not None or kwargs:
        raise unsupported("max", "with out=, initial= or where=")
    x = lift(builder_of([x]), x)
    return _reduce("max", x, axis, keepdims)


def reduce_min(x, axis=None, out=None, keepdims=False, **kwargs):
    if out is not None or kwargs:
        raise unsupported("min", "with out=, initial= or where=")
    x = lift(builder_of([x]), x)
    if x.dtype == bool:
        return logical_not(reduce_max(logical_not(x), axis, keepdims=keepdims))
    return negative(reduce_max(negative(x), axis, keepdims=keepdims))


def mean(x, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
    if out is not None or kwargs:
        raise unsupported("mean", "with out= or where=")
    x = lift(builder_of([x]), x)
    final = dtype_name(dtype) if dtype is not None else float_of(x.dtype.name)
    work = "float32" if final == "float16" else final
    x = cast(x, work)
    axes = S.normalize_axes(axis, x.ndim)
    total = _reduce("sum", x, axes, True)
    result = np.true_divide(total, _count(x, axes, work))
    if not keepdims:
        result = reshape(result, [d for i, d in enumerate(x.shape) if i not in axes])
    return cast(result, final)


def var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kwargs):
    if out is not None or kwargs:
        raise unsupported("var", "with out=, where= or mean=")
    x = lift(builder_of([x]), x)
    final = dtype_name(dtype) if dtype is not None else float_of(x.dtype.name)
    x = cast(x, "float32" if final == "float16" else final)
    axes = S.normalize_axes(axis, x.ndim)
    d = np.subtract(x, mean(x, axes, keepdims=True))
    total = _reduce("sum", np.multiply(d, d), axes, True)
    n = _count(x, axes, x.dtype.name)
    result = np.true_divide(total, np.subtract(n, ddof) if ddof else n)
    if not keepdims:
        result = reshape(result, [d for i, d in enumerate(x.shape) if i not in axes])
    return cast(result, final)


def std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kwargs):
    return np.sqrt(var(x, axis, dtype, out, ddof, keepdims, **kwargs))


def _arg_extreme(x, axis, keepdims, sign: int, name: str):
    x = lift(builder_of([x]), x)
    if x.dtype == bool:
        x = cast(x, "int32")
    if axis is None:
        x, axis = reshape(x, [-1]), 0
    (axis,) = S.normalize_axes(axis, x.ndim)
    n = x.shape[axis]
    if isinstance(n, str):
        raise unsupported(name, f"along the symbolic dimension {n}")
    key = x if sign > 0 else negative(x)
    best = broadcast_to(_reduce("max", key, axis, True), x.shape)
    index_shape = [n if i == axis else 1 for i in range(x.ndim)]
    index = broadcast_to(lift(x.builder, np.arange(n, dtype=np.int64).reshape(index_shape)), x.shape)
    candidates = where(np.equal(key, best), index, n)
    return reduce_min(candidates, axis, keepdims=keepdims)


def argmax(x, axis=None, out=None, keepdims=False):
    return _arg_extreme(x, axis, keepdims, 1, "argmax")


def argmin(x, axis=None, out=None, keepdims=False):
    return _arg_extreme(x, axis, keepdims, -1, "argmin")


def any_(x, axis=None, out=None, keepdims=False, **kwargs):
    return reduce_max(cast(lift(builder_of([x]), x), "bool"), axis, keepdims=keepdims)


def all_(x, axis=None, out=None, keepdims=False, **kwargs):
    return reduce_min(cast(lift(builder_of([x]), x), "bool"), axis, keepdims=keepdims)


# -- shapes and views -------------------------------------------------------------------------
def np_reshape(x, shape=None, order="C", *, newshape=None, copy=None):
    if order != "C":
        raise unsupported("reshape", f"with order={order!r}")
    shape = newshape if shape is None else shape
    shape = [shape] if isinstance(shape, int | str) else list(shape)
    return reshape(lift(builder_of([x]), x), shape)


def transpose(x, axes=None):
    x = lift(builder_of([x]), x)
    axes = list(range(x.ndim))[::-1] if axes is None else [a % x.ndim for a in axes]
    if axes == list(range(x.ndim)):
        return x
    return prim(x.builder, "permute", x, axes=axes)


def swapaxes(x, a, b):
    x = lift(builder_of([x]), x)
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def expand_dims(x, axis):
    x = lift(builder_of([x]), x)
    axes = S.normalize_axes(axis, x.ndim + (1 if isinstance(axis, int) else len(axis)))
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, shape)


def squeeze(x, axis=None):
    x = lift(builder_of([x]), x)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else S.normalize_axes(axis, x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        raise UnsupportedOperation(f"cannot squeeze axes {list(axes)} of shape {S.fmt(x.shape)}: not of size 1")
    return reshape(x, [d for i, d in enumerate(x.shape) if i not in axes])


def np_broadcast_to(x, shape, subok=False):
    return broadcast_to(lift(builder_of([x]), x), S.check_shape(shape))


def ravel(x, order="C"):
    return np_reshape(x, [-1], order)


def concatenate(arrays, axis=0, out=None, dtype=None, **kwargs):
    if out is not None or kwargs:
        raise unsupported("concatenate", "with out= or casting=")
    b = builder_of(arrays)
    dtype = dtype_name(dtype) if dtype is not None else result_dtype(*arrays)
    ts = [lift(b, a, dtype) for a in arrays]
    if axis is None:
        ts, axis = [reshape(t, [-1]) for t in ts], 0
    (axis,) = S.normalize_axes(axis, ts[0].ndim)
    return ts[0] if len(ts) == 1 else prim(b, "concat", *ts, axis=axis)


def stack(arrays, axis=0, out=None, **kwargs):
    b = builder_of(arrays)
    ts = [lift(b, a) for a in arrays]
    return concatenate([expand_dims(t, axis) for t in ts], axis=axis, out=out, **kwargs)


def getitem(x: Tensor, key):
    """Basic indexing: ints, slices, None and Ellipsis."""
    key = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, Tensor | np.ndarray | list | bool) for k in key):
        raise UnsupportedOperation(
            f"advanced indexing (arrays, lists or masks as indices) is not supported by Lumi's tracer; "
            f"use np.where for masks, or {_FALLBACK}"
        )
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise UnsupportedOperation(f"too many indices ({n_real}) for a tensor of {x.ndim} dimensions")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (x.ndim - n_real) + key[i + 1 :]
    else:
        key = key + (slice(None),) * (x.ndim - n_real)
    slices, out_shape, axis = [], [], 0
    for k in key:
        if k is None:
            out_shape.append(1)
            continue
        d = x.shape[axis]
        if isinstance(k, slice):
            if isinstance(d, str):
                if k != slice(None):
                    raise UnsupportedOperation(f"symbolic dimension {d} can only be sliced whole")
                slices.append((0, None, 1))
                out_shape.append(d)
            else:
                start, stop, step = k.indices(d)
                slices.append((start, None if stop < 0 else stop, step))
                out_shape.append(len(range(start, stop, step)))
        elif isinstance(k, int | np.integer):
            if isinstance(d, str):
                raise UnsupportedOperation(f"cannot index the symbolic dimension {d} with an integer")
            if not -d <= k < d:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {d}")
            k = int(k) % d
            slices.append((k, k + 1, 1))
        else:
            raise UnsupportedOperation(f"index of type {type(k).__name__} is not supported by Lumi's tracer")
        axis += 1
    whole = all(s == (0, None, 1) or (s[0] == 0 and s[1] == d and s[2] == 1) for s, d in zip(slices, x.shape))
    t = x if whole else prim(x.builder, "slice", x, slices=[list(s) for s in slices])
    return reshape(t, out_shape)


# -- contractions -----------------------------------------------------------------------------
def matmul(a, b, **kwargs):
    if kwargs:
        raise unsupported("matmul", f"with {', '.join(kwargs)}")
    dtype = result_dtype(a, b)
    if dtype == "bool":
        dtype = "int64"
    bld = builder_of([a, b])
    a, b = lift(bld, a, dtype), lift(bld, b, dtype)
    if a.ndim == 0 or b.ndim == 0:
        raise UnsupportedOperation("matmul of a 0-d array; use * for scalars")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a:
        a = reshape(a, [1, a.shape[0]])
    if squeeze_b:
        b = reshape(b, [b.shape[0], 1])
    batch = S.broadcast(a.shape[:-2], b.shape[:-2])
    a = broadcast_to(a, batch + a.shape[-2:])
    b = broadcast_to(b, batch + b.shape[-2:])
    out = prim(bld, "matmul", a, b)
    shape = list(out.shape)
    if squeeze_b:
        shape.pop(-1)
    if squeeze_a:
        shape.pop(-2 if not squeeze_b else -1)
    return reshape(out, shape)


def dot(a, b, out=None):
    if out is not None:
        raise unsupported("dot", "with out=")
    if max(np.ndim(a) if not isinstance(a, Tensor) else a.ndim, b.ndim if isinstance(b, Tensor) else np.ndim(b)) > 2:
        raise unsupported("dot", "of arrays above 2-D; use np.matmul or @")
    return matmul(a, b)


def full_like(x, fill_value, dtype=None, order="K", subok=True, shape=None):
    x = lift(builder_of([x]), x)
    dtype = dtype_name(dtype) if dtype is not None else x.dtype.name
    return broadcast_to(lift(x.builder, fill_value, dtype), S.check_shape(shape) if shape else x.shape)


def _like(fill):
    return lambda x, dtype=None, order="K", subok=True, shape=None: full_like(x, fill, dtype, shape=shape)


def ndim(x):
    return x.ndim


def shape(x):
    return x.shape


UFUNCS["matmul"] = matmul

FUNCTIONS = {
    np.sum: reduce_sum,
    np.max: reduce_max,
    np.amax: reduce_max,
    np.min: reduce_min,
    np.amin: reduce_min,
    np.mean: mean,
    np.var: var,
    np.std: std,
    np.argmax: argmax,
    np.argmin: argmin,
    np.any: any_,
    np.all: all_,
    np.reshape: np_reshape,
    np.transpose: transpose,
    np.swapaxes: swapaxes,
    np.expand_dims: expand_dims,
    np.squeeze: squeeze,
    np.broadcast_to: np_broadcast_to,
    np.ravel: ravel,
    np.concatenate: concatenate,
    np.stack: stack,
    np.where: where,
    np.clip: clip,
    np.matmul: matmul,
    np.dot: dot,
    np.zeros_like: _like(0),
    np.ones_like: _like(1),
    np.full_like: full_like,
    np.ndim: ndim,
    np.shape: shape,
    np.maximum: maximum,
    np.minimum: minimum,
}


def apply_function(func, args, kwargs):
    lower = FUNCTIONS.get(func)
    if lower is None:
        module = getattr(func, "__module__", "numpy").removeprefix("numpy").lstrip(".")
        raise unsupported(f"{module}.{func.__name__}" if module else func.__name__)
    return lower(*args, **kwargs)
