"""Indexing a traced array: ``x[key]`` (views, and ``gather`` for index arrays) and ``x[key] = v``.

Reads follow NumPy: ints, slices, ``None`` and ``...`` are views; integer arrays, lists and ranges
are advanced indices that broadcast together and lower to one ``gather`` (their result dimensions
go first when they are not adjacent). Boolean masks known at trace time become integer indices;
traced masks would give a shape that depends on values and are refused. Writes are functional:
the new value is built with ``where`` over a mask constant, and the Tensor is rebound to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedOperation
from . import shapes as S
from .tensor import Tensor, broadcast_to, builder_of, cast, lift, prim, reshape

_MASK_HINT = (
    "a boolean mask gives a result whose shape depends on the mask's values, which tracing does not know; "
    "use np.where(mask, x, 0) to keep the shape, or np.where(mask, value, x) to assign"
)


@dataclass
class _Axis:
    """One axis of the tensor after the basic part of a key: what the key does with it."""

    role: str  # keep | int | new | array
    index: Tensor | np.ndarray | None = None


def _as_index_array(k) -> Tensor | np.ndarray | list[np.ndarray]:
    """An advanced index as a traced int tensor, a constant int64 array, or (for a constant mask) one per axis."""
    if isinstance(k, Tensor):
        if k.dtype == bool:
            raise UnsupportedOperation(f"indexing with a traced boolean mask: {_MASK_HINT}")
        if k.dtype.kind not in "iu":
            raise IndexError("arrays used as indices must be of integer (or boolean) type")
        return k
    if isinstance(k, list) and any(isinstance(v, Tensor) for v in k):
        return _as_index_array(_traced_list(k))
    a = np.asarray(k)
    if a.dtype == bool:
        return list(np.nonzero(a))
    if a.size == 0:
        return a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise IndexError("arrays used as indices must be of integer (or boolean) type")
    return a.astype(np.int64)


def _is_advanced(k) -> bool:
    return isinstance(k, Tensor | np.ndarray | list | range)


def _traced_list(k: list) -> Tensor:
    """``x[[i, j]]`` with traced scalars among the entries: the entries stacked into one index array."""
    return np.stack([lift(builder_of(k), v) for v in k])


def _expand_key(x: Tensor, key) -> list:
    """The key as one entry per consumed axis (plus ``None`` entries), Ellipsis filled in."""
    key = key if isinstance(key, tuple) else (key,)
    entries: list = []
    for k in key:
        if isinstance(k, bool | np.bool_):
            raise UnsupportedOperation("indexing with a Python bool is not supported by Lumi's tracer")
        if _is_advanced(k):
            a = _as_index_array(k)
            entries.extend(a if isinstance(a, list) else [a])
        else:
            entries.append(k)
    n_real = sum(1 for k in entries if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, but {n_real} were indexed")
    dots = [i for i, k in enumerate(entries) if k is Ellipsis]
    if len(dots) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    fill = [slice(None)] * (x.ndim - n_real)
    if dots:
        return entries[: dots[0]] + fill + entries[dots[0] + 1 :]
    return entries + fill


def _basic(x: Tensor, entries: list) -> tuple[Tensor, list[_Axis]]:
    """Apply slices, ints (kept as size-1 axes) and ``None``; array entries keep their axis whole."""
    slices, shape, axes, axis = [], [], [], 0
    for k in entries:
        if k is None:
            shape.append(1)
            axes.append(_Axis("new"))
            continue
        d = x.shape[axis]
        if isinstance(k, slice):
            if isinstance(d, str):
                if k != slice(None):
                    raise UnsupportedOperation(f"symbolic dimension {d} can only be sliced whole")
                slices.append((0, None, 1))
                shape.append(d)
            else:
                start, stop, step = k.indices(d)
                n = len(range(start, stop, step))
                slices.append((start, None if stop < 0 else stop, step) if n else (0, 0, 1))
                shape.append(n)
            axes.append(_Axis("keep"))
        elif isinstance(k, int | np.integer):
            if isinstance(d, str):
                raise UnsupportedOperation(f"cannot index the symbolic dimension {d} with an integer")
            if not -d <= k < d:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {d}")
            k = int(k) % d
            slices.append((k, k + 1, 1))
            shape.append(1)
            axes.append(_Axis("int"))
        elif isinstance(k, Tensor | np.ndarray):
            if isinstance(k, np.ndarray) and k.size:
                if isinstance(d, str):
                    raise UnsupportedOperation(f"cannot index the symbolic dimension {d} with an index array")
                bad = (k < -d) | (k >= d)
                if bad.any():
                    raise IndexError(f"index {int(k[bad].flat[0])} is out of bounds for axis {axis} with size {d}")
                k = k % d
            slices.append((0, None, 1))
            shape.append(d)
            axes.append(_Axis("array", k))
        else:
            raise UnsupportedOperation(f"index of type {type(k).__name__} is not supported by Lumi's tracer")
        axis += 1
    whole = all(s == (0, None, 1) or (s[0] == 0 and s[1] == d and s[2] == 1) for s, d in zip(slices, x.shape))
    t = x if whole else prim(x.builder, "slice", x, slices=[list(s) for s in slices])
    return reshape(t, shape), axes


def checked_index(index: Tensor, n: int) -> Tensor:
    """``index`` wrapped into ``[0, n)`` as int64; out-of-range values raise ``IndexOutOfRange`` when run."""
    table = lift(index.builder, np.arange(n, dtype=np.int64))
    return prim(index.builder, "gather", table, index, axis=0)


def _flat_index(t: Tensor, arrays: list[tuple[int, Tensor | np.ndarray]]) -> tuple[Tensor, Tensor, int]:
    """Several advanced indices as one: ``t`` with their axes merged at the first one, and the flat index."""
    b = t.builder
    dims = [t.shape[a] for a, _ in arrays]
    if not all(isinstance(d, int) for d in dims):
        raise UnsupportedOperation("several index arrays together over a symbolic dimension are not supported")
    shape = ()
    for _, k in arrays:
        shape = S.broadcast(shape, k.shape)
    flat = None
    for (a, k), stride in zip(arrays, [math.prod(dims[i + 1 :]) for i in range(len(dims))]):
        k = lift(b, k) if isinstance(k, np.ndarray) else checked_index(k, t.shape[a])
        term = np.multiply(broadcast_to(cast(k, "int64"), shape), stride)
        flat = term if flat is None else np.add(flat, term)
    first = arrays[0][0]
    rest = [i for i in range(t.ndim) if i not in {a for a, _ in arrays}]
    order = rest[:first] + [a for a, _ in arrays] + rest[first:]
    t = np.transpose(t, order)
    merged = t.shape[:first] + (math.prod(dims),) + t.shape[first + len(dims) :]
    return reshape(t, merged), flat, first


def _as_slice(entries: list, shape) -> list:
    """A lone constant index array that steps evenly (``wpe[range(n)]``, ``x[:, [-1]]``) as the slice it is,
    so it stays a view; with other advanced indices (ints among them) it keeps NumPy's placement rules."""
    arrays = [i for i, k in enumerate(entries) if isinstance(k, Tensor | np.ndarray)]
    if len(arrays) != 1 or any(isinstance(k, int | np.integer) for k in entries):
        return entries
    (i,) = arrays
    k, d = entries[i], shape[sum(1 for e in entries[:i] if e is not None)]
    if not isinstance(k, np.ndarray) or k.ndim != 1 or not k.size or isinstance(d, str) or k.min() < -d or k.max() >= d:
        return entries
    k = k % d
    step = int(k[1] - k[0]) if k.size > 1 else 1
    if step == 0 or np.any(np.diff(k) != step):
        return entries
    stop = int(k[-1]) + step
    return [*entries[:i], slice(int(k[0]), stop if stop >= 0 else None, step), *entries[i + 1 :]]


def getitem(x: Tensor, key) -> Tensor:
    """``x[key]`` with NumPy's basic and advanced indexing."""
    t, axes = _basic(x, _as_slice(_expand_key(x, key), x.shape))
    arrays = [(i, ax.index) for i, ax in enumerate(axes) if ax.role == "array"]
    if not arrays:
        return reshape(t, [d for d, ax in zip(t.shape, axes) if ax.role != "int"])
    if len(arrays) == 1:
        first, index = arrays[0]
        index = lift(t.builder, index)
    else:
        t, index, first = _flat_index(t, arrays)
    out = prim(t.builder, "gather", t, index, axis=first)
    others = [ax for ax in axes if ax.role != "array"]
    roles = [ax.role for ax in others[:first]] + ["index"] * index.ndim + [ax.role for ax in others[first:]]
    out = reshape(out, [d for d, r in zip(out.shape, roles) if r != "int"])
    roles = [r for r in roles if r != "int"]
    advanced = [i for i, ax in enumerate(axes) if ax.role in ("array", "int")]
    if advanced == list(range(advanced[0], advanced[-1] + 1)):
        return out
    front = [i for i, r in enumerate(roles) if r == "index"]
    return np.transpose(out, front + [i for i, r in enumerate(roles) if r != "index"])


def take(a, indices, axis=None, out=None, mode="raise") -> Tensor:
    """np.take: a gather along ``axis`` (of the flattened array when ``axis`` is None)."""
    if out is not None or mode != "raise":
        raise UnsupportedOperation(f"numpy.take with {'out=' if out is not None else f'mode={mode!r}'} is not "
                                   "supported by Lumi's tracer; use the default mode='raise'")
    x = lift(builder_of([a, indices]), a)
    if axis is None:
        x, axis = reshape(x, [-1]), 0
    (axis,) = S.normalize_axes(axis, x.ndim)
    return getitem(x, (slice(None),) * axis + (indices if isinstance(indices, Tensor) else np.asarray(indices),))


def take_along_axis(arr, indices, axis=-1) -> Tensor:
    """np.take_along_axis: one gather on the flattened array, at flat positions row * n + index (a select
    over the n positions where the other dimensions are symbolic)."""
    b = builder_of([arr, indices])
    x, idx = lift(b, arr), lift(b, indices)
    if axis is None:
        x, axis = reshape(x, [-1]), 0
    (axis,) = S.normalize_axes(axis, x.ndim)
    if idx.ndim != x.ndim:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    x, idx = np.moveaxis(x, axis, -1), np.moveaxis(idx, axis, -1)
    lead = S.broadcast(x.shape[:-1], idx.shape[:-1])
    n = x.shape[-1]
    if isinstance(n, str):
        raise UnsupportedOperation(f"numpy.take_along_axis along the symbolic dimension {n} is not supported by "
                                   "Lumi's tracer")
    if not S.is_concrete(lead):  # a symbolic batch: select by comparing with every position (exact)
        k = np.expand_dims(checked_index(idx, n), -1)
        hit = np.equal(k, lift(b, np.arange(n, dtype=np.int64)))
        picked = np.sum(np.where(hit, np.expand_dims(x, -2), np.zeros((), x.dtype)), axis=-1)
        return np.moveaxis(picked, -1, axis)
    rows = lift(b, np.arange(math.prod(lead), dtype=np.int64).reshape(lead + (1,)) * n)
    flat = np.add(broadcast_to(rows, lead + idx.shape[-1:]), broadcast_to(checked_index(idx, n), lead + idx.shape[-1:]))
    table = reshape(broadcast_to(x, lead + (n,)), [-1])
    return np.moveaxis(prim(b, "gather", table, flat, axis=0), -1, axis)


# -- x[key] = value ---------------------------------------------------------------------------
def _mask_key(x: Tensor, key) -> Tensor | None:
    """The boolean mask of ``x[mask]`` / ``x[mask, ...]``, traced or constant, or ``None``."""
    key = key if isinstance(key, tuple) else (key,)
    if key and key[-1] is Ellipsis:
        key = key[:-1]
    if len(key) != 1:
        if any(isinstance(k, Tensor) and k.dtype == bool for k in key):
            raise UnsupportedOperation(f"assigning through a traced boolean mask combined with other indices: "
                                       f"{_MASK_HINT}")
        return None
    (k,) = key
    if isinstance(k, Tensor) and k.dtype == bool or isinstance(k, np.ndarray) and k.dtype == bool:
        m = lift(x.builder, k)
        if m.shape != x.shape[: m.ndim]:
            raise IndexError(f"boolean index of shape {S.fmt(m.shape)} does not match the array's leading "
                             f"dimensions {S.fmt(x.shape[: m.ndim])}")
        return m
    return None


def _box(x: Tensor, entries: list) -> list[tuple[int, int]] | None:
    """Per axis ``(start, stop)`` when the key selects a box (step-1 slices and ints), else ``None``."""
    box, axis = [], 0
    for k in entries:
        if k is None:
            continue
        d = x.shape[axis]
        if isinstance(k, slice) and (k.step in (None, 1)):
            box.append((0, d) if isinstance(d, str) else k.indices(d)[:2])
        elif isinstance(k, int | np.integer) and isinstance(d, int) and -d <= k < d:
            box.append((int(k) % d, int(k) % d + 1))
        else:
            return None
        axis += 1
    return [(lo, hi if isinstance(hi, str) else max(lo, hi)) for lo, hi in box]


def _pad_box(v: Tensor, box: list[tuple[int, int]], shape) -> Tensor:
    """``v`` (of the box's shape) placed in zeros of ``shape``."""
    from .numpy_api import pad

    widths = [(0, 0) if isinstance(d, str) else (lo, d - hi) for (lo, hi), d in zip(box, shape)]
    return pad(v, widths)


def _box_mask(box: list[tuple[int, int]], shape) -> np.ndarray:
    """A bool constant that is true inside the box; size 1 along symbolic (whole) axes."""
    mask = np.zeros([1 if isinstance(d, str) else d for d in shape], dtype=bool)
    mask[tuple(slice(0, 1) if isinstance(d, str) else slice(lo, hi) for (lo, hi), d in zip(box, shape))] = True
    return mask


SCATTER_LIMIT = 1 << 24  # elements of the (written, positions) comparison behind x[traced_index] = v


def _scatter(x: Tensor, key, v: Tensor) -> Tensor:
    """``x[key] = v`` where traced index arrays pick the positions: each position compares against every
    written one, and the last write wins as in NumPy."""
    b = x.builder
    if not S.is_concrete(x.shape):
        raise UnsupportedOperation(f"x[idx] = v with a traced index array on an array of symbolic shape "
                                   f"{S.fmt(x.shape)}; build the result with np.where")
    n = S.numel(x.shape)
    positions = getitem(lift(b, np.arange(n, dtype=np.int64).reshape(x.shape)), key)
    m = S.numel(positions.shape)
    if m * n > SCATTER_LIMIT:
        raise UnsupportedOperation(
            f"x[idx] = v with a traced index array writes {m} of {n} positions, past the {SCATTER_LIMIT} "
            "comparisons Lumi records for it; build the result with np.where(np.arange(n) == idx[..., None], v, x)"
        )
    v = reshape(broadcast_to(v, positions.shape), [-1])
    hits = np.equal(reshape(positions, [m, 1]), lift(b, np.arange(n, dtype=np.int64).reshape(1, n)))
    last = np.max(np.where(hits, lift(b, np.arange(m, dtype=np.int64).reshape(m, 1)), -1), axis=0)
    placed = prim(b, "gather", v, np.maximum(last, 0), axis=0)
    return np.where(reshape(np.greater_equal(last, 0), x.shape), reshape(placed, x.shape), x)


def setitem(x: Tensor, key, value) -> Tensor:
    """The value of ``x`` after ``x[key] = value``, as a new Tensor (NumPy's semantics, last write wins)."""
    b = builder_of([x, value])
    v = cast(lift(b, value), x.dtype.name)
    mask = _mask_key(x, key)
    if mask is not None:
        v = broadcast_to(v, x.shape[mask.ndim :])
        mask = reshape(mask, mask.shape + (1,) * (x.ndim - mask.ndim))
        return np.where(broadcast_to(mask, x.shape), broadcast_to(v, x.shape), x)
    entries = _expand_key(x, key)
    if any(isinstance(k, Tensor) for k in entries):
        return _scatter(x, key, v)
    target = getitem(x, key).shape
    v = broadcast_to(v, target)
    box = _box(x, entries)
    if box is not None:
        v = reshape(v, [hi - lo if isinstance(d, int) else d for (lo, hi), d in zip(box, x.shape)])
        if all(isinstance(d, str) or (lo, hi) == (0, d) for (lo, hi), d in zip(box, x.shape)):
            return Tensor(b, v.id)
        if any(lo == hi for lo, hi in box):
            return Tensor(b, x.id)
        mask = broadcast_to(lift(b, _box_mask(box, x.shape)), x.shape)
        return np.where(mask, _pad_box(v, box, x.shape), x)
    if not S.is_concrete(x.shape):
        raise UnsupportedOperation(f"x[key] = v with strides or index arrays on an array of symbolic shape "
                                   f"{S.fmt(x.shape)}; use step-1 slices")
    positions = np.arange(S.numel(x.shape), dtype=np.int64).reshape(x.shape)[tuple(entries)].ravel()
    if positions.size == 0:
        return Tensor(b, x.id)
    source = np.zeros(S.numel(x.shape), dtype=np.int64)
    source[positions] = np.arange(positions.size)
    written = np.zeros(S.numel(x.shape), dtype=bool)
    written[positions] = True
    placed = prim(b, "gather", reshape(v, [-1]), lift(b, source.reshape(x.shape)), axis=0)
    return np.where(lift(b, written.reshape(x.shape)), placed, x)
