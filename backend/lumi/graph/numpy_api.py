"""How each supported NumPy function and ufunc lowers to primitives.

``UFUNCS`` and ``FUNCTIONS`` are the whole supported surface; anything else raises
:class:`~lumi.errors.UnsupportedOperation` naming the function.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError, TraceError, UnsupportedOperation
from . import shapes as S
from .dtypes import dtype_name, float_of, is_float
from .indexing import take, take_along_axis
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


def clip(x, a_min=None, a_max=None, out=None, *, min=None, max=None, **kwargs):
    if out is not None or kwargs:
        raise unsupported("clip", f"with {', '.join(kwargs) or 'out='}")
    lo, hi = (min, max) if a_min is None and a_max is None else (a_min, a_max)
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def _constant_like(x: Tensor, value, dtype: str = "bool") -> Tensor:
    return broadcast_to(lift(x.builder, value, dtype), x.shape)


def isnan(x):
    x = lift(builder_of([x]), x)
    return logical_not(np.equal(x, x)) if is_float(x.dtype.name) else _constant_like(x, False)


def isinf(x):
    x = lift(builder_of([x]), x)
    return np.equal(absolute(x), np.inf) if is_float(x.dtype.name) else _constant_like(x, False)


def isfinite(x):
    x = lift(builder_of([x]), x)
    return np.equal(np.subtract(x, x), 0) if is_float(x.dtype.name) else _constant_like(x, True)


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    x = lift(builder_of([x]), x)
    if not is_float(x.dtype.name):
        return x
    big = float(np.finfo(x.dtype).max)
    y = where(isnan(x), nan, x)
    y = where(np.equal(x, np.inf), big if posinf is None else posinf, y)
    return where(np.equal(x, -np.inf), -big if neginf is None else neginf, y)


def sign(x):
    x = lift(builder_of([x]), x)
    s = np.subtract(cast(np.greater(x, 0), x.dtype.name), cast(np.less(x, 0), x.dtype.name))
    return where(isnan(x), x, s) if is_float(x.dtype.name) else s


def _rounding(name: str, adjust):
    """floor/ceil/trunc/rint without a primitive: an int64 round trip where a float may have a fraction
    (below 2**mantissa bits), then ``adjust(truncated, x)``; larger values, inf and NaN are kept."""

    def lower(x):
        x = lift(builder_of([x]), x)
        out = dtype_name(getattr(np, name)(np.zeros(1, x.dtype)).dtype)
        if not is_float(x.dtype.name):
            return cast(x, out)
        small = np.less(absolute(x), float(2 ** np.finfo(x.dtype).nmant))
        t = cast(cast(where(small, x, 0), "int64"), x.dtype.name)
        return where(small, adjust(t, x), x)

    return lower


def _round_half_even(t, x):
    r = np.subtract(t, np.greater(t, x))  # floor
    f = np.subtract(x, r)
    odd = np.equal(np.subtract(r, np.multiply(_floor(np.multiply(r, 0.5)), 2)), 1)
    return np.add(r, logical_or(np.greater(f, 0.5), logical_and(np.equal(f, 0.5), odd)))


_floor = _rounding("floor", lambda t, x: np.subtract(t, np.greater(t, x)))


def round_(x, decimals=0, out=None):
    """np.round: half to even, through x * 10**decimals like NumPy."""
    if out is not None:
        raise unsupported("round", "with out=")
    x = lift(builder_of([x]), x)
    if not is_float(x.dtype.name):
        if decimals >= 0:
            return x
        raise unsupported("round", "of integers to negative decimals")
    if decimals == 0:
        return np.rint(x)
    scale = 10.0 ** abs(decimals)
    scaled, unscale = (np.multiply, np.true_divide) if decimals > 0 else (np.true_divide, np.multiply)
    return unscale(np.rint(scaled(x, scale)), scale)


def _floor_quotient(a: Tensor, b: Tensor) -> Tensor:
    """``a // b`` of operands of one dtype; for integers through float64, corrected to be exact, and 0 where
    ``b == 0`` as NumPy gives."""
    if is_float(a.dtype.name):
        return _floor(np.true_divide(a, b))
    zero = np.equal(b, 0)
    b = where(zero, 1, b)
    q = cast(_floor(np.true_divide(cast(a, "float64"), cast(b, "float64"))), a.dtype.name)
    r = np.subtract(a, np.multiply(q, b))
    q = np.subtract(q, logical_and(np.not_equal(r, 0), np.not_equal(np.less(r, 0), np.less(b, 0))))
    q = np.add(q, np.greater_equal(np.multiply(np.subtract(a, np.multiply(q, b)), sign(b)), absolute(b)))
    return where(zero, 0, q)


def floor_divide(a, b):
    a, b = elementwise([a, b])
    return _floor_quotient(a, b)


def remainder(a, b):
    """``a % b`` with the sign of ``b``; exact for integers (0 where ``b == 0``), ``a - floor(a / b) * b`` for
    floats."""
    a, b = elementwise([a, b])
    r = np.subtract(a, np.multiply(_floor_quotient(a, b), b))
    return r if is_float(a.dtype.name) else where(np.equal(b, 0), 0, r)


def logaddexp(a, b):
    a, b = elementwise([a, b], float_of(result_dtype(a, b)))
    big = maximum(a, b)
    out = np.add(big, np.log(np.add(1, np.exp(negative(absolute(np.subtract(a, b)))))))
    return where(np.equal(a, b), np.add(a, math.log(2)), out)  # equal infinities give themselves, not NaN


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
    "isnan": isnan,
    "isinf": isinf,
    "isfinite": isfinite,
    "sign": sign,
    "floor": _floor,
    "ceil": _rounding("ceil", lambda t, x: np.add(t, np.less(t, x))),
    "trunc": _rounding("trunc", lambda t, x: t),
    "rint": _rounding("rint", _round_half_even),
    "logaddexp": logaddexp,
    "floor_divide": floor_divide,
    "remainder": remainder,
}


def apply_ufunc(ufunc, method: str, inputs, kwargs):
    name = ufunc.__name__
    if method == "reduce" and name in ("add", "maximum", "minimum") and not kwargs.get("out"):
        fn = {"add": reduce_sum, "maximum": reduce_max, "minimum": reduce_min}[name]
        return fn(inputs[0], axis=kwargs.get("axis", 0), keepdims=kwargs.get("keepdims", False))
    if method != "__call__":
        raise unsupported(f"{name}.{method}")
    if kwargs.get("out") is not None:
        raise TraceError(
            f"numpy.{name} into out= (or an in-place operator such as a += t on a NumPy array) with a traced value "
            "cannot store into a NumPy array; write a = a + t (the result is then traced), or make `a` a traced "
            "value first"
        )
    lower = UFUNCS.get(name)
    extra = {k: v for k, v in kwargs.items() if k not in ("out", "dtype")}
    if lower is None or extra:
        raise unsupported(name, f"with {', '.join(extra)}" if extra else "")
    result = lower(*inputs)
    if result is None:
        raise unsupported(name, "on non-bool arrays")
    if any(result is x for x in inputs):  # a ufunc makes a new array: updates of one must not reach the other
        result = Tensor(result.builder, result.id)
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


def _masked(x: Tensor, mask, fill) -> Tensor:
    """``x`` where ``mask`` (a reduction's ``where=``) holds, ``fill`` elsewhere."""
    if mask is True:
        return x
    m = lift(x.builder, mask)
    if S.broadcast(m.shape, x.shape) != x.shape:
        raise ShapeError(f"where= of shape {S.fmt(m.shape)} does not broadcast to {S.fmt(x.shape)}")
    return where(m, x, fill)


def reduce_sum(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    if out is not None:
        raise unsupported("sum", "with out=")
    x = lift(builder_of([x, where]), x)
    if dtype is not None:
        x = cast(x, dtype_name(dtype))
    elif x.dtype.kind in "bi":
        x = cast(x, "int64")
    result = _reduce("sum", _masked(x, where, 0), axis, keepdims)
    return result if initial is None else np.add(result, initial)


def reduce_max(x, axis=None, out=None, keepdims=False, initial=None, where=True):
    """np.max with NumPy's ``initial=`` and ``where=`` (which needs ``initial``)."""
    if out is not None:
        raise unsupported("max", "with out=")
    if where is not True and initial is None:
        raise ValueError("reduction operation 'maximum' does not have an identity, so to use a where mask one "
                         "has to specify 'initial'")
    x = lift(builder_of([x, where]), x)
    result = _reduce("max", _masked(x, where, initial), axis, keepdims)
    return result if initial is None else maximum(result, initial)


def reduce_min(x, axis=None, out=None, keepdims=False, initial=None, where=True):
    """np.min as the negated max of the negation (logical not for bool)."""
    if out is not None:
        raise unsupported("min", "with out=")
    x = lift(builder_of([x, where]), x)
    flip = logical_not if x.dtype == bool else negative
    start = None if initial is None else (not initial) if x.dtype == bool else -initial
    return flip(reduce_max(flip(x), axis, None, keepdims, start, where))


def mean(x, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    if out is not None:
        raise unsupported("mean", "with out=")
    x = lift(builder_of([x, where]), x)
    final = dtype_name(dtype) if dtype is not None else float_of(x.dtype.name)
    work = "float32" if final == "float16" else final
    x = cast(x, work)
    axes = S.normalize_axes(axis, x.ndim)
    total = _reduce("sum", _masked(x, where, 0), axes, True)
    if where is True:
        count = _count(x, axes, work)
    else:
        count = _reduce("sum", cast(broadcast_to(lift(x.builder, where), x.shape), work), axes, True)
    result = np.true_divide(total, count)
    if not keepdims:
        result = reshape(result, [d for i, d in enumerate(x.shape) if i not in axes])
    return cast(result, final)


def cumsum(x, axis=None, dtype=None, out=None):
    """Inclusive prefix sums by log-step shifted adds (exact for integers)."""
    if out is not None:
        raise unsupported("cumsum", "with out=")
    x = lift(builder_of([x]), x)
    if axis is None:
        x, axis = reshape(x, [-1]), 0
    x = cast(x, dtype_name(dtype) if dtype is not None else "int64" if x.dtype.kind in "bi" else x.dtype.name)
    (axis,) = S.normalize_axes(axis, x.ndim)
    n = x.shape[axis]
    if isinstance(n, str):
        raise unsupported("cumsum", f"along the symbolic dimension {n}")
    step = 1
    while step < n:
        zeros = broadcast_to(lift(x.builder, 0, x.dtype.name), x.shape[:axis] + (step,) + x.shape[axis + 1 :])
        x = np.add(x, concatenate([zeros, _axis_slice(x, axis, 0, n - step)], axis=axis))
        step *= 2
    return x


def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm: vector norms, and the Frobenius, 1 and inf matrix norms."""
    x = to_float(lift(builder_of([x]), x))
    if axis is None and (ord is None or x.ndim == 1):
        axes = tuple(range(x.ndim))
        matrix = False
    else:
        axes = tuple(range(x.ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        matrix = len(axes) == 2
    axes = tuple(a % x.ndim for a in axes)
    if ord is None or (ord == "fro" and matrix) or (ord == 2 and not matrix):
        return np.sqrt(reduce_sum(np.multiply(x, x), axes, keepdims=keepdims))
    if matrix and ord in (1, -1, np.inf, -np.inf):
        rows, cols = axes if ord in (1, -1) else axes[::-1]
        pick = reduce_max if ord > 0 else reduce_min
        inner = reduce_sum(absolute(x), rows, keepdims=True)
        result = pick(inner, cols, keepdims=True)
        return result if keepdims else reshape(result, [d for i, d in enumerate(x.shape) if i not in axes])
    if matrix:
        raise unsupported("linalg.norm", f"ord={ord!r} of a matrix needs singular values")
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order {ord!r} for vectors")
    if ord in (np.inf, -np.inf):
        return (reduce_max if ord > 0 else reduce_min)(absolute(x), axes, keepdims=keepdims)
    if ord == 0:
        return reduce_sum(cast(np.not_equal(x, 0), x.dtype.name), axes, keepdims=keepdims)
    if ord == 1:
        return reduce_sum(absolute(x), axes, keepdims=keepdims)
    return np.power(reduce_sum(np.power(absolute(x), ord), axes, keepdims=keepdims), 1 / ord)


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


def stack(arrays, axis=0, out=None, dtype=None, **kwargs):
    b = builder_of(arrays)
    ts = [lift(b, a) for a in arrays]
    return concatenate([expand_dims(t, axis) for t in ts], axis=axis, out=out, dtype=dtype, **kwargs)


def _atleast(ndim: int):
    """atleast_1d/2d/3d: (n,) becomes (1, n) and (1, n, 1); (m, n) becomes (m, n, 1)."""

    def one(x):
        x = lift(builder_of([x]), x)
        if x.ndim >= ndim:
            return x
        if ndim < 3:
            return reshape(x, (1,) * (ndim - x.ndim) + x.shape)
        return reshape(x, {0: (1, 1, 1), 1: (1, *x.shape, 1)}.get(x.ndim, (*x.shape, 1)))

    def lower(*arrays):
        out = [one(x) for x in arrays]
        return out[0] if len(out) == 1 else tuple(out)

    return lower


atleast_1d, atleast_2d, atleast_3d = _atleast(1), _atleast(2), _atleast(3)


def _joined(axis_of, prepare):
    """hstack/vstack/dstack/column_stack: ``prepare`` each array, then concatenate along ``axis_of(first)``."""

    def lower(tup, *, dtype=None, casting="same_kind"):
        b = builder_of(tup)
        ts = [prepare(lift(b, t)) for t in tup]
        return concatenate(ts, axis=axis_of(ts[0]), dtype=dtype)

    return lower


def _column(t: Tensor) -> Tensor:
    return reshape(t, (t.shape[0] if t.ndim else 1, 1)) if t.ndim < 2 else t


hstack = _joined(lambda t: 0 if t.ndim == 1 else 1, atleast_1d)
vstack = _joined(lambda t: 0, atleast_2d)
dstack = _joined(lambda t: 2, atleast_3d)
column_stack = _joined(lambda t: 1, _column)


def _axis_slice(x: Tensor, axis: int, start, stop, step=None) -> Tensor:
    """``x[..., start:stop:step, ...]`` along one axis."""
    from .indexing import getitem

    return getitem(x, (slice(None),) * axis + (slice(start, stop, step),))


def _concrete_dim(x: Tensor, axis: int, name: str) -> int:
    d = x.shape[axis]
    if isinstance(d, str):
        raise unsupported(name, f"along the symbolic dimension {d}")
    return d


def array_split(x, indices_or_sections, axis=0):
    x = lift(builder_of([x]), x)
    (axis,) = S.normalize_axes(axis, x.ndim)
    n = _concrete_dim(x, axis, "split")
    if isinstance(indices_or_sections, int | np.integer):
        q, r = divmod(n, int(indices_or_sections))
        sizes = [q + 1] * r + [q] * (int(indices_or_sections) - r)
        bounds = [0, *np.cumsum(sizes).tolist()]
    else:
        bounds = [0, *[int(i) for i in indices_or_sections], n]
    return [_axis_slice(x, axis, lo, max(lo, hi)) for lo, hi in zip(bounds, bounds[1:])]


def split(x, indices_or_sections, axis=0):
    if isinstance(indices_or_sections, int | np.integer):
        x = lift(builder_of([x]), x)
        n = _concrete_dim(x, S.normalize_axes(axis, x.ndim)[0], "split")
        if n % int(indices_or_sections):
            raise ValueError("array split does not result in an equal division")
    return array_split(x, indices_or_sections, axis)


def hsplit(x, indices_or_sections):
    return split(x, indices_or_sections, axis=1 if np.ndim(x) > 1 else 0)


def vsplit(x, indices_or_sections):
    if np.ndim(x) < 2:
        raise ValueError("vsplit only works on arrays of 2 or more dimensions")
    return split(x, indices_or_sections, axis=0)


def dsplit(x, indices_or_sections):
    if np.ndim(x) < 3:
        raise ValueError("dsplit only works on arrays of 3 or more dimensions")
    return split(x, indices_or_sections, axis=2)


def _merge(dims, what: str):
    """The size of several dimensions as one (a single symbolic dimension is kept as it is)."""
    if len(dims) == 1:
        return dims[0]
    if not all(isinstance(d, int) for d in dims):
        raise UnsupportedOperation(f"{what} would merge the symbolic dimensions of {S.fmt(dims)}")
    return math.prod(dims)


def repeat(x, repeats, axis=None):
    x = lift(builder_of([x]), x)
    if axis is None:
        x, axis = reshape(x, [-1]), 0
    (axis,) = S.normalize_axes(axis, x.ndim)
    if isinstance(repeats, Tensor):
        raise unsupported("repeat", "with traced repeats: the result's shape would depend on values; give the "
                          "repeats as Python ints or a constant array")
    if np.ndim(repeats) == 0:
        r = int(repeats)
        t = broadcast_to(expand_dims(x, axis + 1), x.shape[: axis + 1] + (r,) + x.shape[axis + 1 :])
        return reshape(t, x.shape[:axis] + (_merge((x.shape[axis], r), "repeat"),) + x.shape[axis + 1 :])
    n = _concrete_dim(x, axis, "repeat")
    index = np.repeat(np.arange(n, dtype=np.int64), np.broadcast_to(np.asarray(repeats), (n,)))
    return prim(x.builder, "gather", x, lift(x.builder, index), axis=axis)


def tile(x, reps):
    x = lift(builder_of([x]), x)
    reps = (int(reps),) if np.ndim(reps) == 0 else tuple(int(r) for r in reps)
    ndim = max(x.ndim, len(reps))
    dims = (1,) * (ndim - x.ndim) + x.shape
    reps = (1,) * (ndim - len(reps)) + reps
    t = reshape(x, [v for d in dims for v in (1, d)])
    t = broadcast_to(t, [v for r, d in zip(reps, dims) for v in (r, d)])
    return reshape(t, [d if r == 1 else _merge((r, d), "tile") for r, d in zip(reps, dims)])


def _pad_blocks(x: Tensor, axis: int, before: int, after: int, mode: str, value) -> list[Tensor]:
    """What goes before and after ``x`` along ``axis`` for one pad mode."""
    n = x.shape[axis]
    if mode == "constant":
        lo, hi = value
        block = lambda w, v: broadcast_to(lift(x.builder, v, x.dtype.name), x.shape[:axis] + (w,) + x.shape[axis + 1 :])
        return [block(before, lo), block(after, hi)]
    limit = {"edge": math.inf, "reflect": n - 1, "symmetric": n, "wrap": n}[mode]
    if max(before, after) > limit:
        raise unsupported("pad", f"mode={mode!r} wider than the axis ({max(before, after)} > {limit})")
    if mode == "edge":
        edge = lambda i, w: broadcast_to(_axis_slice(x, axis, i, i + 1), x.shape[:axis] + (w,) + x.shape[axis + 1 :])
        return [edge(0, before), edge(n - 1, after)]
    below = lambda stop: None if stop < 0 else stop
    if mode == "reflect":
        return [_axis_slice(x, axis, before, 0, -1), _axis_slice(x, axis, n - 2, below(n - 2 - after), -1)]
    if mode == "symmetric":
        return [_axis_slice(x, axis, before - 1, None, -1), _axis_slice(x, axis, n - 1, below(n - 1 - after), -1)]
    return [_axis_slice(x, axis, n - before, n), _axis_slice(x, axis, 0, after)]


def pad(x, pad_width, mode="constant", **kwargs):
    """np.pad in modes constant, edge, reflect, symmetric and wrap, by concatenation along each axis."""
    x = lift(builder_of([x]), x)
    modes = ("constant", "edge", "reflect", "symmetric", "wrap")
    extra = set(kwargs) - ({"constant_values"} if mode == "constant" else set())
    if mode not in modes or extra:
        raise unsupported("pad", f"mode={mode!r}" + (f" with {', '.join(sorted(extra))}" if extra else "")
                          + f"; supported modes are {', '.join(modes)}")
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    values = np.broadcast_to(np.asarray(kwargs.get("constant_values", 0)), (x.ndim, 2))
    for axis, (before, after) in enumerate(widths.tolist()):
        if before < 0 or after < 0:
            raise ValueError("index can't contain negative values")
        if before or after:
            _concrete_dim(x, axis, "pad")
            lo, hi = _pad_blocks(x, axis, before, after, mode, values[axis].tolist())
            x = concatenate([t for t, w in ((lo, before), (x, 1), (hi, after)) if w], axis=axis)
    return x


def flip(x, axis=None):
    x = lift(builder_of([x]), x)
    from .indexing import getitem

    axes = S.normalize_axes(axis, x.ndim)
    return getitem(x, tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(x.ndim)))


def roll(x, shift, axis=None):
    x = lift(builder_of([x]), x)
    if axis is None:
        return reshape(roll(reshape(x, [-1]), shift, 0), x.shape)
    shifts, axes = np.broadcast_arrays(np.asarray(shift), np.asarray(axis))
    for s, a in zip(shifts.ravel().tolist(), axes.ravel().tolist()):
        a = a % x.ndim
        n = _concrete_dim(x, a, "roll")
        s %= n or 1
        if s:
            x = concatenate([_axis_slice(x, a, n - s, n), _axis_slice(x, a, 0, n - s)], axis=a)
    return x


def moveaxis(x, source, destination):
    x = lift(builder_of([x]), x)
    source = [a % x.ndim for a in np.atleast_1d(source).tolist()]
    destination = [a % x.ndim for a in np.atleast_1d(destination).tolist()]
    order = [a for a in range(x.ndim) if a not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(x, order)


def _triangle(lower: bool):
    """tril/triu: zero above (below) the k-th diagonal of the last two axes, through a mask constant."""

    def fn(x, k=0):
        x = lift(builder_of([x]), x)
        if x.ndim < 2 or not S.is_concrete(x.shape[-2:]):
            raise unsupported("tril" if lower else "triu", "of an array without two concrete last dimensions")
        n, m = x.shape[-2:]
        keep = np.tri(n, m, k, dtype=bool) if lower else ~np.tri(n, m, k - 1, dtype=bool)
        return where(broadcast_to(lift(x.builder, keep), x.shape), x, _constant_like(x, 0, x.dtype.name))

    return fn


tril, triu = _triangle(True), _triangle(False)


def copy(x, order="K", subok=False):
    x = lift(builder_of([x]), x)
    return Tensor(x.builder, x.id)


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


def outer(a, b, out=None):
    if out is not None:
        raise unsupported("outer", "with out=")
    bld = builder_of([a, b])
    a, b = reshape(lift(bld, a), [-1, 1]), reshape(lift(bld, b), [1, -1])
    return np.multiply(a, b)


def _einsum_operands(spec: str, ndims: list[int]) -> tuple[list[str], str]:
    """Input and output labels of an einsum spec, ``...`` spelled out as capital letters."""
    spec = spec.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    labels = inputs.split(",")
    if len(labels) != len(ndims):
        raise ValueError(f"einsum: {len(labels)} operands in {spec!r} but {len(ndims)} arrays given")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in spec]
    widths = [n - len(lab.replace("...", "")) if "..." in lab else 0 for lab, n in zip(labels, ndims)]
    ellipsis = "".join(spare[: max(widths, default=0)])
    labels = [lab.replace("...", ellipsis[len(ellipsis) - w :]) for lab, w in zip(labels, widths)]
    if not arrow:
        counts = {c: "".join(labels).count(c) for c in "".join(labels)}
        output = ellipsis + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ellipsis))
    output = output.replace("...", ellipsis)
    for lab, n in zip(labels, ndims):
        if len(lab) != n:
            raise ValueError(f"einsum: operand {lab!r} has {len(lab)} labels for a {n}-dimensional array")
        if len(set(lab)) != len(lab):
            raise unsupported("einsum", f"a label repeated within one operand ({lab!r}: a diagonal or trace); "
                              "multiply by np.eye(n) and sum instead")
    if (not all(c.isalpha() for c in "".join(labels) + output) or set(output) - set("".join(labels))
            or len(set(output)) != len(output)):
        raise ValueError(f"einsum: invalid subscripts {spec!r}")
    return labels, output


def _align(t: Tensor, labels: str, order: str, sizes: dict) -> Tensor:
    """``t`` permuted to ``order`` (labels it lacks become size-1 axes), broadcast to ``sizes``."""
    t = transpose(t, [labels.index(c) for c in order if c in labels])
    t = reshape(t, [t.shape[[c for c in order if c in labels].index(c)] if c in labels else 1 for c in order])
    return broadcast_to(t, [sizes[c] if c in labels else 1 for c in order])


def _contract(a: Tensor, la: str, b: Tensor, lb: str, keep: set, sizes: dict) -> tuple[Tensor, str]:
    """Two einsum operands as one (a multiply, or a batched matmul over the shared labels not kept)."""
    a, la = _sum_labels(a, la, set(lb) | keep)
    b, lb = _sum_labels(b, lb, set(la) | keep)
    batch = "".join(c for c in la if c in lb and c in keep)
    inner = "".join(c for c in la if c in lb and c not in keep)
    left, right = "".join(c for c in la if c not in lb), "".join(c for c in lb if c not in la)
    if not inner:
        order = batch + left + right
        return np.multiply(_align(a, la, order, sizes), _align(b, lb, order, sizes)), order
    a = _align(a, la, batch + left + inner, sizes)
    b = _align(b, lb, batch + inner + right, sizes)
    dims = lambda labels: [sizes[c] for c in labels]
    m, k, n = (_merge(dims(g), "einsum") if g else 1 for g in (left, inner, right))
    a = reshape(a, dims(batch) + [m, k])
    b = reshape(b, dims(batch) + [k, n])
    return reshape(matmul(a, b), dims(batch + left + right)), batch + left + right


def _sum_labels(t: Tensor, labels: str, needed: set) -> tuple[Tensor, str]:
    axes = [i for i, c in enumerate(labels) if c not in needed]
    if not axes:
        return t, labels
    return _reduce("sum", t, axes, False), "".join(c for c in labels if c in needed)


def einsum(*operands, out=None, dtype=None, optimize=False, **kwargs):
    """einsum as permutes, reshapes, multiplies, matmuls and sums; operands fold left to right."""
    if out is not None or kwargs or not isinstance(operands[0], str):
        raise unsupported("einsum", "with out=, casting= or the interleaved (array, labels) form")
    spec, arrays = operands[0], operands[1:]
    bld = builder_of(arrays)
    dt = dtype_name(dtype) if dtype is not None else result_dtype(*arrays)
    ts = [lift(bld, x, dt) for x in arrays]
    labels, output = _einsum_operands(spec, [t.ndim for t in ts])
    sizes: dict = {}
    for t, lab in zip(ts, labels):
        for c, d in zip(lab, t.shape):
            if sizes.get(c, 1) == 1:
                sizes[c] = d
            elif d not in (1, sizes[c]):
                raise ShapeError(f"einsum: label {c} has sizes {sizes[c]} and {d} in {spec!r}")
    acc, la = ts[0], labels[0]
    for i in range(1, len(ts)):
        keep = set(output).union(*labels[i + 1 :])
        acc, la = _contract(acc, la, ts[i], labels[i], keep, sizes)
    acc, la = _sum_labels(acc, la, set(output))
    return _align(acc, la, output, sizes)


def tensordot(a, b, axes=2):
    a_nd = a.ndim if isinstance(a, Tensor) else np.ndim(a)
    b_nd = b.ndim if isinstance(b, Tensor) else np.ndim(b)
    if isinstance(axes, int | np.integer):
        pairs = list(zip(range(a_nd - int(axes), a_nd), range(int(axes))))
    else:
        xs, ys = (np.atleast_1d(v).tolist() for v in axes)
        pairs = [(x % a_nd, y % b_nd) for x, y in zip(xs, ys)]
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    la = [next(letters) for _ in range(a_nd)]
    lb = [next(letters) for _ in range(b_nd)]
    for x, y in pairs:
        lb[y] = la[x]
    shared = {la[x] for x, _ in pairs}
    output = "".join(c for c in la if c not in shared) + "".join(c for c in lb if c not in shared)
    return einsum(f"{''.join(la)},{''.join(lb)}->{output}", a, b)


def full_like(x, fill_value, dtype=None, order="K", subok=True, shape=None):
    x = lift(builder_of([x]), x)
    dtype = dtype_name(dtype) if dtype is not None else x.dtype.name
    return broadcast_to(lift(x.builder, fill_value, dtype), S.check_shape(shape) if shape else x.shape)


def _like(fill):
    return lambda x, dtype=None, order="K", subok=True, shape=None: full_like(x, fill, dtype, shape=shape)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, **kwargs):
    """np.linspace with traced ends (NumPy's own formula: ramp * step + start, the last value set to stop)."""
    b = builder_of([start, stop])
    dt = result_dtype(start, stop, float(num))
    start, stop = lift(b, start, dt), lift(b, stop, dt)
    shape = S.broadcast(start.shape, stop.shape)
    div = num - 1 if endpoint else num
    step = np.true_divide(np.subtract(stop, start), div) if div > 0 else np.subtract(stop, start)
    y = np.add(np.multiply(lift(b, np.arange(num, dtype=dt).reshape((num,) + (1,) * len(shape))), step), start)
    if endpoint and num > 1:
        y[-1] = stop
    y = moveaxis(y, 0, axis)
    y = cast(y, dtype_name(dtype)) if dtype is not None else y
    return (y, step) if retstep else y


def ndim(x):
    return x.ndim


def shape(x):
    return x.shape


def size(x, axis=None):
    return S.numel(x.shape) if axis is None else x.shape[axis]


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
    np.cumsum: cumsum,
    np.linalg.norm: norm,
    np.reshape: np_reshape,
    np.transpose: transpose,
    np.swapaxes: swapaxes,
    np.moveaxis: moveaxis,
    np.expand_dims: expand_dims,
    np.squeeze: squeeze,
    np.broadcast_to: np_broadcast_to,
    np.atleast_1d: atleast_1d,
    np.atleast_2d: atleast_2d,
    np.atleast_3d: atleast_3d,
    np.ravel: ravel,
    np.copy: copy,
    np.concatenate: concatenate,
    np.stack: stack,
    np.hstack: hstack,
    np.vstack: vstack,
    np.dstack: dstack,
    np.column_stack: column_stack,
    np.split: split,
    np.array_split: array_split,
    np.hsplit: hsplit,
    np.vsplit: vsplit,
    np.dsplit: dsplit,
    np.repeat: repeat,
    np.tile: tile,
    np.pad: pad,
    np.flip: flip,
    np.roll: roll,
    np.tril: tril,
    np.triu: triu,
    np.take: take,
    np.take_along_axis: take_along_axis,
    np.where: where,
    np.clip: clip,
    np.round: round_,
    np.around: round_,
    np.nan_to_num: nan_to_num,
    np.matmul: matmul,
    np.dot: dot,
    np.outer: outer,
    np.einsum: einsum,
    np.tensordot: tensordot,
    np.zeros_like: _like(0),
    np.ones_like: _like(1),
    np.empty_like: _like(0),
    np.full_like: full_like,
    np.linspace: linspace,
    np.ndim: ndim,
    np.shape: shape,
    np.size: size,
}

# Constructors of shapes and Python numbers: NumPy runs them while tracing and what they make becomes a
# constant of the graph (np.tri(n) as a causal mask, np.arange(n) as positions).
CONSTANTS = (np.arange, np.eye, np.identity, np.tri, np.zeros, np.ones, np.full, np.empty, np.linspace)


def _public_name(func) -> str:
    module = getattr(func, "__module__", "numpy").removeprefix("numpy").lstrip(".")
    return f"{module}.{func.__name__}" if module else func.__name__


def supported_names() -> list[str]:
    """Every NumPy function and ufunc the tracer records (``np.`` + name), sorted; the README lists these."""
    return sorted(set(UFUNCS) | {_public_name(f) for f in (*FUNCTIONS, *CONSTANTS)})


def apply_function(func, args, kwargs):
    lower = FUNCTIONS.get(func)
    if lower is None:
        raise unsupported(_public_name(func))
    return lower(*args, **kwargs)
