"""The lazy tracing Tensor: NumPy code run on it records primitive ops instead of computing.

It implements NEP 13 (``__array_ufunc__``) and NEP 18 (``__array_function__``), so unmodified
NumPy code and functions built on it trace. The lowering of each NumPy function to
primitives lives in :mod:`lumi.graph.numpy_api`; this module holds the Tensor and the few
helpers every lowering shares (lifting operands, promotion, broadcasting).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import TraceError, UnsupportedOperation
from . import shapes as S
from .dtypes import dtype_name, is_float
from .ir import GraphBuilder

_LUMI_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))
CELL_FILENAME = "<lumi-cell>"


def caller_location() -> str | None:
    """The first frame outside Lumi and NumPy: the user line that is recording an op."""
    frame = sys._getframe(1)
    while frame is not None:
        fn = frame.f_code.co_filename
        if not fn.startswith((_LUMI_DIR, _NUMPY_DIR)) and "scipy" not in fn:
            if fn == CELL_FILENAME:
                return f"cell line {frame.f_lineno}"
            return f"{os.path.basename(fn)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _value_error(what: str) -> TraceError:
    loc = caller_location()
    at = f" at {loc}" if loc else ""
    return TraceError(
        f"{what}{at} needs the value of a traced array, but tracing records operations without "
        "computing them. Use np.where(...) for elementwise choices and keep Python control flow on "
        "shapes and constants, or run the cell as ordinary Python with %%remote --python."
    )


class Tensor:
    """A lazy array inside a trace: its operations become graph nodes."""

    __slots__ = ("builder", "id")
    __array_priority__ = 1000
    __hash__ = None

    def __init__(self, builder: GraphBuilder, node_id: int):
        self.builder = builder
        self.id = node_id

    # -- what is known at trace time -----------------------------------------------------
    @property
    def shape(self) -> S.Shape:
        return self.builder.shape(self.id)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.builder.dtype(self.id))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return S.numel(self.shape)

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __repr__(self) -> str:
        return f"lumi.Tensor({self.dtype.name}{S.fmt(self.shape)}, lazy)"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        if isinstance(self.shape[0], str):
            raise TraceError(f"len() of a tensor whose first dimension is symbolic ({self.shape[0]})")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # -- what needs a value is refused -------------------------------------------------------
    def __bool__(self):
        raise _value_error("Branching on a traced array (if/while/and/or)")

    def __int__(self):
        raise _value_error("int() of a traced array")

    def __float__(self):
        raise _value_error("float() of a traced array")

    def __index__(self):
        raise _value_error("Using a traced array as an index")

    def __array__(self, dtype=None, copy=None):
        raise _value_error("Converting a traced array to a NumPy array")

    def item(self, *args):
        raise _value_error(".item()")

    def tolist(self):
        raise _value_error(".tolist()")

    def __setitem__(self, key, value):
        raise UnsupportedOperation(
            "Assigning into a traced array (x[...] = v) is not supported: traced arrays are immutable. "
            "Build the result with np.where or np.concatenate, or use %%remote --python."
        )

    # -- NumPy protocols -----------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from .numpy_api import apply_ufunc

        return apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from .numpy_api import apply_function

        return apply_function(func, args, kwargs)

    def __pos__(self):
        return self

    def __getitem__(self, key):
        from .numpy_api import getitem

        return getitem(self, key)

    def sum(self, axis=None, dtype=None, keepdims=False):
        return np.sum(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, keepdims=False):
        return np.mean(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def var(self, axis=None, ddof=0, keepdims=False):
        return np.var(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, ddof=0, keepdims=False):
        return np.std(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def clip(self, lo=None, hi=None):
        return np.clip(self, lo, hi)

    def dot(self, other):
        return np.dot(self, other)

    def squeeze(self, axis=None):
        return np.squeeze(self, axis=axis)

    def ravel(self):
        return np.ravel(self)

    flatten = ravel

    def copy(self):
        return self

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return np.reshape(self, shape, order=order)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        return np.transpose(self, axes or None)

    def astype(self, dtype, copy=True):
        return cast(self, dtype_name(dtype))


def _operator(ufunc, reflected: bool = False):
    return (lambda self, other: ufunc(other, self)) if reflected else (lambda self, other: ufunc(self, other))


def _reduction(fn):
    return lambda self, axis=None, keepdims=False: fn(self, axis=axis, keepdims=keepdims)


_BINARY_OPERATORS = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide, "pow": np.power,
    "matmul": np.matmul, "floordiv": np.floor_divide, "mod": np.remainder,
}
_OTHER_OPERATORS = {
    "and": np.logical_and, "or": np.logical_or, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal,
}
for _name, _ufunc in _BINARY_OPERATORS.items():
    setattr(Tensor, f"__{_name}__", _operator(_ufunc))
    setattr(Tensor, f"__r{_name}__", _operator(_ufunc, reflected=True))
for _name, _ufunc in _OTHER_OPERATORS.items():
    setattr(Tensor, f"__{_name}__", _operator(_ufunc))
for _name, _ufunc in {"neg": np.negative, "abs": np.absolute, "invert": np.invert}.items():
    setattr(Tensor, f"__{_name}__", lambda self, _ufunc=_ufunc: _ufunc(self))
for _name, _fn in {"max": np.max, "min": np.min, "argmax": np.argmax, "argmin": np.argmin, "any": np.any,
                   "all": np.all}.items():
    setattr(Tensor, _name, _reduction(_fn))


# -- helpers shared by every lowering ---------------------------------------------------------
def builder_of(values) -> GraphBuilder:
    builders = {id(v.builder): v.builder for v in values if isinstance(v, Tensor)}
    if len(builders) != 1:
        raise TraceError("an operation mixes tensors from different traces")
    return next(iter(builders.values()))


def prim(b: GraphBuilder, op: str, *src: Tensor, **attrs) -> Tensor:
    """Record one primitive op on tensors of builder ``b``."""
    return Tensor(b, b.add(op, [t.id for t in src], attrs, caller_location()))


def check_operand(v) -> None:
    if isinstance(v, Tensor | np.ndarray | np.generic | bool | int | float):
        return
    if isinstance(v, list | tuple):
        np.asarray(v)  # nested numbers become constants; anything else fails below
        return
    raise UnsupportedOperation(f"cannot use a {type(v).__name__} as an array operand in a traced cell")


def operand_dtype(v):
    """What ``np.result_type`` should see for ``v``: Python scalars stay weak (NEP 50)."""
    if isinstance(v, Tensor):
        return v.dtype
    if isinstance(v, bool | int | float):
        return v
    return np.asarray(v).dtype


def result_dtype(*values) -> str:
    return dtype_name(np.result_type(*[operand_dtype(v) for v in values]))


def lift(b: GraphBuilder, v, dtype: str | None = None) -> Tensor:
    """A Tensor for ``v`` (constants for arrays and scalars), cast to ``dtype`` if given."""
    if not isinstance(v, Tensor):
        check_operand(v)
        a = np.asarray(v)
        return Tensor(b, b.const(a.astype(dtype or dtype_name(a.dtype)), caller_location()))
    return cast(v, dtype) if dtype else v


def cast(t: Tensor, dtype: str) -> Tensor:
    return t if t.dtype.name == dtype else prim(t.builder, "cast", t, dtype=dtype)


def to_float(t: Tensor) -> Tensor:
    return t if is_float(t.dtype.name) else cast(t, "float64")


def reshape(t: Tensor, shape) -> Tensor:
    shape = S.infer_reshape(t.shape, list(shape))
    return t if shape == t.shape else prim(t.builder, "reshape", t, shape=list(shape))


def broadcast_to(t: Tensor, shape) -> Tensor:
    shape = tuple(shape)
    if t.shape == shape:
        return t
    full = S.broadcast(t.shape, shape)
    if full != shape:
        raise UnsupportedOperation(f"cannot broadcast {S.fmt(t.shape)} to {S.fmt(shape)}")
    t = reshape(t, (1,) * (len(shape) - t.ndim) + t.shape)
    return t if t.shape == shape else prim(t.builder, "expand", t, shape=list(shape))


def elementwise(values, dtype: str | None = None) -> list[Tensor]:
    """Lift, promote and broadcast operands to one dtype and one shape."""
    b = builder_of(values)
    dtype = dtype or result_dtype(*values)
    ts = [lift(b, v, dtype) for v in values]
    shape = ts[0].shape
    for t in ts[1:]:
        shape = S.broadcast(shape, t.shape)
    return [broadcast_to(t, shape) for t in ts]
