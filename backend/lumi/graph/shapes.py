"""Shapes whose entries are ints or symbolic dimension names (``("batch", 784)``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..errors import ShapeError

Dim = int | str
Shape = tuple[Dim, ...]


def fmt(shape: Sequence[Dim]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def check_shape(shape: Sequence) -> Shape:
    out = []
    for d in shape:
        if isinstance(d, str):
            if not d.isidentifier():
                raise ShapeError(f"symbolic dimension {d!r} must be a Python identifier")
            out.append(d)
        elif isinstance(d, int | bool) or hasattr(d, "__index__"):
            if int(d) < 0:
                raise ShapeError(f"negative dimension {d} in shape {fmt(shape)}")
            out.append(int(d))
        else:
            raise ShapeError(f"dimension {d!r} must be an int or a name")
    return tuple(out)


def is_concrete(shape: Sequence[Dim]) -> bool:
    return all(isinstance(d, int) for d in shape)


def numel(shape: Sequence[Dim]) -> int:
    if not is_concrete(shape):
        raise ShapeError(f"shape {fmt(shape)} has symbolic dimensions; its size is known only at run time")
    return math.prod(shape)


def symbols(shape: Sequence[Dim]) -> list[str]:
    return [d for d in shape if isinstance(d, str)]


def broadcast(a: Sequence[Dim], b: Sequence[Dim]) -> Shape:
    """NumPy broadcasting, where a name matches itself or 1."""
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(f"shapes {fmt(a)} and {fmt(b)} do not broadcast (dimension {x} against {y})")
    return tuple(out)


def normalize_axes(axes, ndim: int) -> tuple[int, ...]:
    """Axes as sorted non-negative ints; ``None`` means all."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int) or hasattr(axes, "__index__"):
        axes = (axes,)
    out = []
    for ax in axes:
        ax = int(ax)
        if not -ndim <= ax < ndim:
            raise ShapeError(f"axis {ax} is out of range for an array of {ndim} dimensions")
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {tuple(axes)}")
    return tuple(sorted(out))


def infer_reshape(src: Sequence[Dim], target: Sequence) -> Shape:
    """Resolve one ``-1`` in a reshape target; symbolic names must carry over unchanged."""
    target = list(target)
    if target.count(-1) > 1:
        raise ShapeError("reshape accepts at most one -1")
    if sorted(symbols(src)) != sorted(d for d in target if isinstance(d, str)):
        raise ShapeError(
            f"cannot reshape {fmt(src)} to {fmt(target)}: symbolic dimensions must appear unchanged"
        )
    known_src = math.prod(d for d in src if isinstance(d, int))
    known_dst = math.prod(d for d in target if isinstance(d, int) and d != -1)
    if -1 in target:
        if known_dst == 0 or known_src % known_dst:
            raise ShapeError(f"cannot reshape {fmt(src)} to {fmt(target)}")
        target[target.index(-1)] = known_src // known_dst
    elif known_src != known_dst:
        raise ShapeError(f"cannot reshape {fmt(src)} ({known_src} elements) to {fmt(target)}")
    return check_shape(target)


def bind(shape: Sequence[Dim], actual: Sequence[int], bindings: dict[str, int], what: str) -> None:
    """Match a concrete shape against a declared one, recording symbol values."""
    if len(shape) != len(actual):
        raise ShapeError(f"{what} expects {len(shape)} dimensions {fmt(shape)}, got shape {fmt(actual)}")
    for d, n in zip(shape, actual):
        if isinstance(d, str):
            if bindings.setdefault(d, n) != n:
                raise ShapeError(
                    f"{what}: dimension {d} is {bindings[d]} elsewhere but {n} here (shape {fmt(actual)})"
                )
        elif d != n:
            raise ShapeError(f"{what} expects shape {fmt(shape)}, got {fmt(actual)}")


def resolve(shape: Sequence[Dim], bindings: Mapping[str, int]) -> tuple[int, ...]:
    try:
        return tuple(bindings[d] if isinstance(d, str) else d for d in shape)
    except KeyError as e:
        raise ShapeError(f"symbolic dimension {e.args[0]} has no value; bind it through an input") from None
