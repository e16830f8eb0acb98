"""The op table: every primitive's name, kind, arity, shape and dtype rule, and NumPy reference.

Design.md's elementwise ``max`` is named ``maximum`` here so that the reduction keeps ``max``
and every name is unique. Primitives are strict so that compilers stay simple: elementwise ops take operands of one
shape and one dtype (the tracer inserts ``expand`` and ``cast``), reductions keep their
input dtype, and views never compute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from ..errors import IndexOutOfRange, ShapeError
from . import shapes as S
from .dtypes import DTYPES, is_float

Rule = Callable[[list, list, dict], tuple[tuple, str]]


@dataclass(frozen=True)
class Op:
    name: str
    kind: str  # source | unary | binary | ternary | cast | reduce | view | concat | matmul | gather
    arity: int  # -1: any number of operands
    rule: Rule | None
    ref: Callable | None  # ref(arrays, attrs, out_shape) -> np.ndarray


def _same(shapes: list, dtypes: list, what: str) -> None:
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(f"{what} takes operands of one shape, got {', '.join(map(S.fmt, shapes))}")
    if any(d != dtypes[0] for d in dtypes):
        raise ShapeError(f"{what} takes operands of one dtype, got {', '.join(dtypes)}")


def _unary_rule(name):
    def rule(shapes, dtypes, attrs):
        if not is_float(dtypes[0]):
            raise ShapeError(f"{name} takes a float operand, got {dtypes[0]}")
        return shapes[0], dtypes[0]

    return rule


def _binary_rule(name, out_dtype=None, float_only=False):
    def rule(shapes, dtypes, attrs):
        _same(shapes, dtypes, name)
        if float_only and not is_float(dtypes[0]):
            raise ShapeError(f"{name} takes float operands, got {dtypes[0]}")
        if name == "sub" and dtypes[0] == "bool":  # NumPy refuses it too
            raise ShapeError("subtracting bool arrays is not supported (NumPy refuses it too); use np.logical_xor "
                             "or x != y, or cast to int first")
        return shapes[0], out_dtype or dtypes[0]

    return rule


def _where_rule(shapes, dtypes, attrs):
    if dtypes[0] != "bool":
        raise ShapeError(f"where takes a bool condition, got {dtypes[0]}")
    _same(shapes, [dtypes[1]] * 3, "where")
    _same(shapes[1:], dtypes[1:], "where")
    return shapes[0], dtypes[1]


def _cast_rule(shapes, dtypes, attrs):
    if attrs["dtype"] not in DTYPES:
        raise ShapeError(f"cast to unknown dtype {attrs['dtype']}")
    return shapes[0], attrs["dtype"]


def _reduce_rule(shapes, dtypes, attrs):
    shape = shapes[0]
    axes = S.normalize_axes(attrs["axes"], len(shape))
    if list(axes) != list(attrs["axes"]):
        raise ShapeError(f"reduce axes must be sorted and non-negative, got {attrs['axes']}")
    if attrs["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(shape)), dtypes[0]
    return tuple(d for i, d in enumerate(shape) if i not in axes), dtypes[0]


def _reshape_rule(shapes, dtypes, attrs):
    return S.infer_reshape(shapes[0], attrs["shape"]), dtypes[0]


def _permute_rule(shapes, dtypes, attrs):
    axes = list(attrs["axes"])
    if sorted(axes) != list(range(len(shapes[0]))):
        raise ShapeError(f"permute axes {axes} are not a permutation of {len(shapes[0])} dimensions")
    return tuple(shapes[0][a] for a in axes), dtypes[0]


def _expand_rule(shapes, dtypes, attrs):
    src, dst = shapes[0], S.check_shape(attrs["shape"])
    if len(src) != len(dst) or any(s != d and s != 1 for s, d in zip(src, dst)):
        raise ShapeError(f"cannot expand {S.fmt(src)} to {S.fmt(dst)}: only size-1 dimensions expand")
    return dst, dtypes[0]


def _slice_rule(shapes, dtypes, attrs):
    out = []
    for d, (start, stop, step) in zip(shapes[0], attrs["slices"]):
        if isinstance(d, str):
            if (start, stop, step) != (0, None, 1):
                raise ShapeError(f"symbolic dimension {d} can only be sliced whole")
            out.append(d)
        else:
            out.append(len(range(*slice(start, stop, step).indices(d))))
    if len(attrs["slices"]) != len(shapes[0]):
        raise ShapeError("slice needs one (start, stop, step) per dimension")
    return tuple(out), dtypes[0]


def _concat_rule(shapes, dtypes, attrs):
    axis = attrs["axis"]
    if len({len(s) for s in shapes}) != 1 or not 0 <= axis < len(shapes[0]):
        raise ShapeError(f"concat along axis {axis} needs operands of one rank, got {', '.join(map(S.fmt, shapes))}")
    if len(set(dtypes)) != 1:
        raise ShapeError(f"concat takes operands of one dtype, got {', '.join(dtypes)}")
    for s in shapes[1:]:
        if any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis):
            raise ShapeError(f"concat along axis {axis}: shapes {', '.join(map(S.fmt, shapes))} differ elsewhere")
    parts = [s[axis] for s in shapes]
    if any(isinstance(p, str) for p in parts):
        raise ShapeError("concat along a symbolic dimension is not supported")
    return shapes[0][:axis] + (sum(parts),) + shapes[0][axis + 1 :], dtypes[0]


def _matmul_rule(shapes, dtypes, attrs):
    a, b = shapes
    if len(a) < 2 or len(a) != len(b) or a[:-2] != b[:-2]:
        raise ShapeError(f"matmul takes operands of equal batch dimensions, got {S.fmt(a)} @ {S.fmt(b)}")
    if a[-1] != b[-2]:
        raise ShapeError(f"matmul: inner dimensions differ, {S.fmt(a)} @ {S.fmt(b)}")
    _same([(), ()], dtypes, "matmul")
    if dtypes[0] == "bool":
        raise ShapeError("matmul of bool arrays is not supported; cast first")
    return a[:-1] + (b[-1],), dtypes[0]


def _gather_rule(shapes, dtypes, attrs):
    data, index = shapes
    axis = attrs["axis"]
    if not 0 <= axis < len(data):
        raise ShapeError(f"gather along axis {axis} of a {len(data)}-dimensional operand")
    if dtypes[1] not in ("int32", "int64"):
        raise ShapeError(f"gather takes integer indices, got {dtypes[1]}")
    if isinstance(data[axis], str):
        raise ShapeError(f"gather along the symbolic dimension {data[axis]} is not supported")
    return tuple(data[:axis]) + tuple(index) + tuple(data[axis + 1:]), dtypes[0]


def index_out_of_range(index: np.ndarray, n: int) -> int | None:
    """The first of ``index`` outside ``[-n, n)`` (NumPy's valid indices for an axis of size ``n``), or None."""
    bad = (index < -n) | (index >= n)
    return int(index[bad].flat[0]) if bad.any() else None


def _ref_gather(xs, attrs, shape):
    data, index = xs
    n = data.shape[attrs["axis"]]
    bad = index_out_of_range(index, n)
    if bad is not None:
        raise IndexOutOfRange(bad, attrs["axis"], n)
    return np.take(data, index, axis=attrs["axis"])


def _ref_cast(xs, attrs, shape):
    with np.errstate(all="ignore"):  # NaN to int, float16 overflow: defined by the cast, not worth a warning
        return xs[0].astype(attrs["dtype"])


def _ref_slice(xs, attrs, shape):
    return xs[0][tuple(slice(*s) for s in attrs["slices"])]


def _ref_reduce(fn):
    return lambda xs, attrs, shape: fn(xs[0], axis=tuple(attrs["axes"]), keepdims=attrs["keepdims"])


def _ignore_fp(fn):
    def wrapped(xs, attrs, shape):
        with np.errstate(all="ignore"):
            return fn(*xs)

    return wrapped


_UNARY = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "recip": np.reciprocal,
    "tanh": np.tanh,
    "erf": erf,
    "sin": np.sin,
}
_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum, "pow": np.power}

OPS: dict[str, Op] = {
    "input": Op("input", "source", 0, None, None),
    "const": Op("const", "source", 0, None, None),
    **{n: Op(n, "unary", 1, _unary_rule(n), _ignore_fp(f)) for n, f in _UNARY.items()},
    **{n: Op(n, "binary", 2, _binary_rule(n), _ignore_fp(f)) for n, f in _BINARY.items()},
    "div": Op("div", "binary", 2, _binary_rule("div", float_only=True), _ignore_fp(np.divide)),
    "cmplt": Op("cmplt", "binary", 2, _binary_rule("cmplt", "bool"), _ignore_fp(np.less)),
    "cmpeq": Op("cmpeq", "binary", 2, _binary_rule("cmpeq", "bool"), _ignore_fp(np.equal)),
    "where": Op("where", "ternary", 3, _where_rule, lambda xs, a, s: np.where(*xs)),
    "cast": Op("cast", "cast", 1, _cast_rule, _ref_cast),
    "sum": Op("sum", "reduce", 1, _reduce_rule, _ref_reduce(np.sum)),
    "max": Op("max", "reduce", 1, _reduce_rule, _ref_reduce(np.max)),
    "reshape": Op("reshape", "view", 1, _reshape_rule, lambda xs, a, s: xs[0].reshape(s)),
    "permute": Op("permute", "view", 1, _permute_rule, lambda xs, a, s: xs[0].transpose(a["axes"])),
    "expand": Op("expand", "view", 1, _expand_rule, lambda xs, a, s: np.broadcast_to(xs[0], s)),
    "slice": Op("slice", "view", 1, _slice_rule, _ref_slice),
    "concat": Op("concat", "concat", -1, _concat_rule, lambda xs, a, s: np.concatenate(xs, axis=a["axis"])),
    "matmul": Op("matmul", "matmul", 2, _matmul_rule, lambda xs, a, s: np.matmul(*xs)),
    # out[pre, i..., post] = data[pre, index[i...], post] (np.take); negative indices wrap, others out of
    # range raise IndexOutOfRange on every target and never read outside ``data``
    "gather": Op("gather", "gather", 2, _gather_rule, _ref_gather),
}


def infer(op: str, shapes: list, dtypes: list, attrs: dict) -> tuple[tuple, str]:
    """Output shape and dtype of ``op`` over operands of these shapes and dtypes."""
    spec = OPS.get(op)
    if spec is None or spec.rule is None:
        raise ShapeError(f"unknown op {op!r}")
    if spec.arity >= 0 and len(shapes) != spec.arity:
        raise ShapeError(f"{op} takes {spec.arity} operands, got {len(shapes)}")
    if spec.arity < 0 and not shapes:
        raise ShapeError(f"{op} takes at least one operand")
    return spec.rule(shapes, dtypes, attrs)
