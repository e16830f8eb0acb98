"""The lazy tracing Tensor: NumPy code run on it records primitive ops instead of computing.

It implements NEP 13 (``__array_ufunc__``) and NEP 18 (``__array_function__``), so unmodified
NumPy code and functions built on it trace. The lowering of each NumPy function to
primitives lives in :mod:`lumi.graph.numpy_api`; this module holds the Tensor and the few
helpers every lowering shares (lifting operands, promotion, broadcasting).
"""

from __future__ import annotations

import dis
import os
import sys

import numpy as np

from ..errors import ShapeError, TraceError, UnsupportedOperation
from . import shapes as S
from .dtypes import dtype_name, is_float
from .ir import GraphBuilder

_LUMI_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))
CELL_FILENAME = "<lumi-cell>"


def _user_frame():
    """The first frame outside Lumi and NumPy: the user code that is recording an op."""
    frame = sys._getframe(1)
    while frame is not None:
        fn = frame.f_code.co_filename
        if not fn.startswith((_LUMI_DIR, _NUMPY_DIR)) and "scipy" not in fn:
            return frame
        frame = frame.f_back
    return None


def caller_location() -> str | None:
    """The user line that is recording an op (``cell line 3`` inside a cell)."""
    frame = _user_frame()
    if frame is None:
        return None
    if frame.f_code.co_filename == CELL_FILENAME:
        return f"cell line {frame.f_lineno}"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _user_instruction() -> str:
    """The bytecode instruction the user line is executing (``STORE_SUBSCR`` for ``a[i] = v``)."""
    frame = _user_frame()
    return dis.opname[frame.f_code.co_code[frame.f_lasti]] if frame is not None and frame.f_lasti >= 0 else ""


def _value_error(what: str) -> TraceError:
    loc = caller_location()
    at = f" at {loc}" if loc else ""
    return TraceError(
        f"{what}{at} needs the value of a traced array, but tracing records operations without "
        "computing them. Use np.where(...) for elementwise choices and keep Python control flow on "
        "shapes and constants, or run the cell as ordinary Python with %%remote --python."
    )


class Dim(str):
    """A symbolic dimension as ``x.shape`` shows it: it names itself (``B, T, C = x.shape; x.reshape(B, T, 4, -1)``),
    and arithmetic that would need its size says so instead of acting on the name as a string."""

    __slots__ = ()

    def _refuse(self, op: str, other) -> TraceError:
        return TraceError(
            f"{self} is a symbolic dimension (its size is known only at run time), so {self} {op} {other!r} cannot "
            "be computed while tracing; use -1 in reshape (x.reshape(-1, ...)) or keep the dimension whole"
        )

    def _arith(op: str, identity=None, as_str=None):  # a helper that builds the methods below, not a method
        """With an int: the identity (``B * 1``) or a clear refusal; with a str: ``as_str`` (names still
        concatenate and sort as strings)."""

        def method(self, other):
            if isinstance(other, str):
                if as_str is None:
                    raise self._refuse(op, other)
                return as_str(str.__str__(self), other)
            if isinstance(other, bool) or not isinstance(other, int | np.integer):
                return NotImplemented
            if identity is not None and other == identity:
                return self
            raise self._refuse(op, other)

        return method

    __add__ = _arith("+", 0, str.__add__)
    __radd__ = _arith("+", 0, lambda s, o: o + s)
    __mul__ = __rmul__ = _arith("*", 1)
    __sub__ = _arith("-", 0)
    __floordiv__ = _arith("//", 1)
    __truediv__ = _arith("/")
    __rsub__ = __rfloordiv__ = __rtruediv__ = _arith("with")
    __lt__, __le__ = _arith("<", None, str.__lt__), _arith("<=", None, str.__le__)
    __gt__, __ge__ = _arith(">", None, str.__gt__), _arith(">=", None, str.__ge__)
    del _arith

    def __index__(self):
        raise TraceError(f"{self} is a symbolic dimension (its size is known only at run time), so it cannot be "
                         "used as a number while tracing (range, np.arange, np.zeros); trace with a concrete size")

    __int__ = __index__
    __hash__ = str.__hash__
    __eq__ = str.__eq__
    __ne__ = str.__ne__


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
        return tuple(Dim(d) if isinstance(d, str) else d for d in self.builder.shape(self.id))

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
            raise TraceError(f"len() of a tensor whose first dimension is symbolic ({self.shape[0]}): its size is "
                             "known only at run time; trace with a concrete size, or write the code over x.shape")
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
        instruction = _user_instruction()
        loc = caller_location()
        at = f" at {loc}" if loc else ""
        if instruction == "STORE_SUBSCR":
            raise TraceError(
                f"Assigning a traced array into a NumPy array (buffer[...] = value){at} is not supported: the "
                "NumPy array cannot hold a lazy value. Build the result with np.concatenate (for a cache: "
                "cache = np.concatenate([cache, new], axis=...)), or keep the cache as a traced value (for "
                "example cache = np.zeros_like(x, shape=...)), so that cache[...] = value records an update."
            )
        if instruction == "BINARY_SUBSCR":
            raise TraceError(
                f"Indexing a NumPy array with a traced array (table[ids]){at} is not supported: NumPy would need "
                "the index values. Write np.take(table, ids, axis=0), which records a gather."
            )
        raise _value_error("Converting a traced array to a NumPy array (np.array or np.asarray; for a list of "
                           "traced arrays write np.stack(list))")

    def item(self, *args):
        raise _value_error(".item()")

    def tolist(self):
        raise _value_error(".tolist()")

    def __setitem__(self, key, value):
        """``x[key] = value`` records a functional update and rebinds this Tensor to the new value."""
        from .indexing import setitem

        self.id = setitem(self, key, value).id

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
        from .indexing import getitem

        return getitem(self, key)

    def sum(self, axis=None, dtype=None, keepdims=False, **kwargs):
        return np.sum(self, axis=axis, dtype=dtype, keepdims=keepdims, **kwargs)

    def mean(self, axis=None, dtype=None, keepdims=False, **kwargs):
        return np.mean(self, axis=axis, dtype=dtype, keepdims=keepdims, **kwargs)

    def var(self, axis=None, ddof=0, keepdims=False):
        return np.var(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, ddof=0, keepdims=False):
        return np.std(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def clip(self, min=None, max=None, **kwargs):
        return np.clip(self, min, max, **kwargs)

    def cumsum(self, axis=None, dtype=None):
        return np.cumsum(self, axis=axis, dtype=dtype)

    def round(self, decimals=0):
        return np.round(self, decimals)

    def take(self, indices, axis=None, mode="raise"):
        return np.take(self, indices, axis=axis, mode=mode)

    def repeat(self, repeats, axis=None):
        return np.repeat(self, repeats, axis=axis)

    def dot(self, other):
        return np.dot(self, other)

    def squeeze(self, axis=None):
        return np.squeeze(self, axis=axis)

    def swapaxes(self, a, b):
        return np.swapaxes(self, a, b)

    @property
    def mT(self) -> Tensor:
        return np.swapaxes(self, -1, -2)

    def ravel(self, order="C"):
        return np.ravel(self, order)

    flatten = ravel

    def copy(self, order="C"):
        """A new Tensor of the same value: later updates of either do not reach the other."""
        return Tensor(self.builder, self.id)

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return np.reshape(self, shape, order=order)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        return np.transpose(self, axes or None)

    def astype(self, dtype, copy=True):
        return Tensor(self.builder, cast(self, dtype_name(dtype)).id)


def _operator(ufunc, reflected: bool = False):
    return (lambda self, other: ufunc(other, self)) if reflected else (lambda self, other: ufunc(self, other))


def _inplace(ufunc):
    """``x += v``: like NumPy, the result keeps x's shape and dtype, and every alias of x sees it."""

    def update(self, other):
        result = ufunc(self, other)
        if result.shape != self.shape:
            raise ShapeError(f"non-broadcastable output operand with shape {S.fmt(self.shape)} doesn't match the "
                             f"broadcast shape {S.fmt(result.shape)}")
        if not np.can_cast(result.dtype, self.dtype, "same_kind"):
            raise TraceError(f"cannot update a {self.dtype} array in place with a {result.dtype} result; "
                             f"write x = x {ufunc.__name__} v, or cast v first")
        self.id = cast(result, self.dtype.name).id
        return self

    return update


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
    setattr(Tensor, f"__i{_name}__", _inplace(_ufunc))
for _name, _ufunc in _OTHER_OPERATORS.items():
    setattr(Tensor, f"__{_name}__", _operator(_ufunc))
for _name in ("and", "or"):
    setattr(Tensor, f"__i{_name}__", _inplace(_OTHER_OPERATORS[_name]))
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


def _plain(v):
    """Attribute values with symbolic dimensions as plain strings (what graphs store)."""
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return str.__str__(v) if isinstance(v, str) else v


def prim(b: GraphBuilder, op: str, *src: Tensor, **attrs) -> Tensor:
    """Record one primitive op on tensors of builder ``b``."""
    attrs = {k: _plain(v) for k, v in attrs.items()}
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
