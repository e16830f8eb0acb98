"""Strided views: how a kernel reads a buffer through reshape/permute/expand/slice without copying.

An :data:`Access` is a stack of :class:`View` s, bottom (the buffer's memory) first. The top
view maps an index in the consumer's iteration space to a row-major position in the logical
shape of the view below it, and so on down to an element offset in the buffer. Most accesses
are one view (plain strides); a reshape that strides cannot express pushes a second one.

Dimensions and strides are ints, or C expressions over symbolic dimensions (``"S_batch"``).
"""

from __future__ import annotations

from dataclasses import dataclass

Expr = int | str


def _paren(x: Expr) -> str:
    return str(x) if isinstance(x, int) or x.isidentifier() else f"({x})"


def smul(a: Expr, b: Expr) -> Expr:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 0 or b == 0:
        return 0
    if a == 1:
        return b
    if b == 1:
        return a
    return f"{_paren(a)}*{_paren(b)}"


def sadd(a: Expr, b: Expr) -> Expr:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if a == 0:
        return b
    if b == 0:
        return a
    return f"{a}+{b}"


def sprod(dims) -> Expr:
    out: Expr = 1
    for d in dims:
        out = smul(out, d)
    return out


def contiguous_strides(shape) -> tuple[Expr, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(0 if d == 1 else acc)
        acc = smul(acc, d)
    return tuple(reversed(strides))


@dataclass(frozen=True)
class View:
    shape: tuple[Expr, ...]
    strides: tuple[Expr, ...]
    offset: Expr = 0


Access = tuple[View, ...]


def buffer_access(shape) -> Access:
    shape = tuple(shape)
    return (View(shape, contiguous_strides(shape)),)


def permute(acc: Access, axes) -> Access:
    top = acc[-1]
    return acc[:-1] + (View(tuple(top.shape[a] for a in axes), tuple(top.strides[a] for a in axes), top.offset),)


def expand(acc: Access, shape) -> Access:
    top = acc[-1]
    strides = tuple(0 if s == 1 else st for s, st in zip(top.shape, top.strides))
    return acc[:-1] + (View(tuple(shape), strides, top.offset),)


def slice_(acc: Access, slices) -> Access:
    top = acc[-1]
    shape, strides, offset = [], [], top.offset
    for d, st, (start, stop, step) in zip(top.shape, top.strides, slices):
        if isinstance(d, str):  # the op table allows only whole slices of symbolic dims
            shape.append(d)
            strides.append(st)
            continue
        start, stop, step = slice(start, stop, step).indices(d)
        shape.append(len(range(start, stop, step)))
        strides.append(smul(st, step))
        offset = sadd(offset, smul(start, st))
    return acc[:-1] + (View(tuple(shape), tuple(strides), offset),)


def reshape(acc: Access, shape) -> Access:
    top, shape = acc[-1], tuple(shape)
    strides = _reshape_strides(top.shape, top.strides, shape)
    if strides is not None:
        return acc[:-1] + (View(shape, strides, top.offset),)
    return acc + (View(shape, contiguous_strides(shape)),)


def _reshape_strides(old_shape, old_strides, new_shape):
    """Strides that give ``new_shape`` the same elements without a copy, or None (NumPy's rule)."""
    old = [(d, s) for d, s in zip(old_shape, old_strides) if d != 1]
    new_non1 = [d for d in new_shape if d != 1]
    if [d for d, _ in old] == new_non1:  # only size-1 dimensions come or go
        it = iter(s for _, s in old)
        return tuple(0 if d == 1 else next(it) for d in new_shape)
    if not all(isinstance(x, int) for x in (*old_shape, *old_strides, *new_shape)) or 0 in old_shape:
        return None
    od, os_ = [d for d, _ in old], [s for _, s in old]
    nd = list(new_shape)
    ns = [0] * len(nd)
    oi, oj, ni, nj = 0, 1, 0, 1
    while ni < len(nd) and oi < len(od):
        np_, op = nd[ni], od[oi]
        while np_ != op:
            if np_ < op:
                np_ *= nd[nj]
                nj += 1
            else:
                op *= od[oj]
                oj += 1
        for ok in range(oi, oj - 1):
            if os_[ok] != od[ok + 1] * os_[ok + 1]:
                return None
        ns[nj - 1] = os_[oj - 1]
        for nk in range(nj - 1, ni, -1):
            ns[nk - 1] = ns[nk] * nd[nk]
        ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
    return tuple(0 if d == 1 else s for d, s in zip(nd, ns))


def apply_view(acc: Access, op: str, attrs, out_shape) -> Access:
    """The access after one graph view op."""
    if op == "reshape":
        return reshape(acc, out_shape)
    if op == "permute":
        return permute(acc, attrs["axes"])
    if op == "expand":
        return expand(acc, out_shape)
    if op == "slice":
        return slice_(acc, attrs["slices"])
    raise ValueError(f"{op} is not a view")


def coalesce(dims: list, accesses: list[Access], sections: list[int]) -> tuple[list, list[Access], list[int]]:
    """Merge adjacent iteration dimensions that every access walks as one, and drop size-1 ones.

    ``sections[i]`` labels dimension i (outer or inner); dimensions of different sections never merge.
    Returns the new dims, the accesses with rewritten top views, and the new section labels.
    """
    keep = [i for i, d in enumerate(dims) if d != 1]
    dims = [dims[i] for i in keep]
    sections = [sections[i] for i in keep]
    tops = [[(a[-1].strides[i]) for i in keep] for a in accesses]
    i = len(dims) - 1
    while i > 0:
        if sections[i - 1] == sections[i] and all(t[i - 1] == smul(t[i], dims[i]) for t in tops):
            dims[i - 1 : i + 1] = [smul(dims[i - 1], dims[i])]
            sections[i - 1 : i + 1] = [sections[i]]
            for t in tops:
                t[i - 1 : i + 1] = [t[i]]
        i -= 1
    out = [a[:-1] + (View(tuple(dims), tuple(t), a[-1].offset),) for a, t in zip(accesses, tops)]
    return dims, out, sections
