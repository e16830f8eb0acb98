"""Hypothesis strategies for the differential fuzzer: random well-typed programs over every primitive
of the op table, built with :class:`GraphBuilder`, and their inputs laid out in every way NumPy allows.

A drawn :class:`Program` carries the graph, the logical input values (C-contiguous, native byte
order: what the reference interpreter gets) and the same values in the drawn memory layouts (what
the compiled targets get). Its ``repr`` is a readable listing; the fuzzer notes it, so a shrunk
failure prints as a small program.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lumi
import numpy as np
from hypothesis import strategies as st
from lumi import nn
from lumi.errors import LumiError
from lumi.graph import shapes as S
from lumi.graph.interpret import run_node
from lumi.graph.ir import Graph, GraphBuilder
from lumi.graph.ops import OPS as OP_TABLE

SYM = "batch"
BATCHES = (2, 1, 0, 3, 5)  # what the symbolic dimension is bound to; Hypothesis shrinks toward the first
DIMS = (2, 3, 1, 4, 5, 2, 3, 0, 1, 4)  # sizes of input dimensions, 0 one time in ten
DTYPES = ("float32", "float64", "float16", "int32", "int64", "bool")
FLOATS = ("float32", "float64", "float16")
MAX_ELEMENTS = 400
LISTED = 40  # a program's listing shows this many nodes at each end
INT_LIMIT = 2**30  # integer results stay far from overflow (C's signed overflow is undefined)

ELEMENTWISE = ("add", "sub", "mul", "div", "maximum", "pow", "cmplt", "cmpeq", "where", "cast",
               "exp", "log", "sqrt", "recip", "tanh", "erf", "sin")
OPS = (*ELEMENTWISE, "sum", "max", "reshape", "permute", "expand", "slice", "concat", "matmul", "gather")
UNARY = ("exp", "log", "sqrt", "recip", "tanh", "erf", "sin")
CHAIN_OPS = ("add", "mul", "sub", "maximum", "tanh", "sin")

# ``LUMI_FUZZ_SKIP`` (comma-separated) steers the generator around a known, still open bug while
# looking for others: "byteorder", "unaligned", "concat", "empty_max" (max over zero elements),
# "bool_sum" (sum of a bool array, which NumPy's reference makes a logical or), "refusals" (programs
# the reference interpreter refuses at run time are not checked).
SKIP = frozenset(s.strip() for s in os.environ.get("LUMI_FUZZ_SKIP", "").split(",") if s.strip())


# -- input layouts ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Where an input's elements live: axis order in memory (outermost first), a step per axis,
    reversed axes, zero-stride (broadcast) axes, byte order and byte offset."""

    perm: tuple[int, ...]
    steps: tuple[int, ...]
    flips: tuple[bool, ...]
    broadcast: tuple[bool, ...]
    swapped: bool = False
    offset: int = 0

    def __repr__(self) -> str:
        n = len(self.perm)
        parts = []
        if self.perm != tuple(range(n)):
            parts.append("F-order" if n > 1 and self.perm == tuple(reversed(range(n))) else f"axes {self.perm}")
        if any(s != 1 for s in self.steps):
            parts.append(f"steps {self.steps}")
        if any(self.flips):
            parts.append(f"reversed {tuple(i for i, f in enumerate(self.flips) if f)}")
        if any(self.broadcast):
            parts.append(f"broadcast {tuple(i for i, b in enumerate(self.broadcast) if b)}")
        if self.swapped:
            parts.append("byte-swapped")
        if self.offset:
            parts.append(f"unaligned (offset {self.offset})")
        return ", ".join(parts) or "C-contiguous"


def _allocate(shape: Sequence[int], dtype: np.dtype, offset: int) -> np.ndarray:
    if not offset:
        return np.empty(shape, dtype)
    buf = bytearray(math.prod(shape) * dtype.itemsize + offset)
    return np.ndarray(tuple(shape), dtype, buffer=buf, offset=offset)


def place(base: np.ndarray, layout: Layout, shape: Sequence[int]) -> np.ndarray:
    """``base`` (size 1 along broadcast axes) laid out as ``layout`` says, broadcast to ``shape``."""
    dtype = base.dtype.newbyteorder() if layout.swapped else base.dtype
    perm = layout.perm
    buf = _allocate([base.shape[a] * layout.steps[a] for a in perm], dtype, layout.offset)
    if not perm:  # indexing a 0-d array with () gives a scalar
        buf[...] = base
        return buf
    view = buf[tuple(slice(None, None, layout.steps[a]) for a in perm)].transpose(np.argsort(perm))
    view = view[tuple(slice(None, None, -1) if f else slice(None) for f in layout.flips)]
    view[...] = base
    return np.broadcast_to(view, tuple(shape)) if any(layout.broadcast) else view


@st.composite
def layouts(draw: Callable, shape: Sequence[int], dtype: str) -> Layout:
    """C order, F order, any axis order, steps, reversed axes, broadcast, byte-swapped, unaligned, or a mix."""
    n = len(shape)
    kind = draw(st.sampled_from(("C", "F", "perm", "steps", "flip", "broadcast", "swap", "unaligned", "mixed")))
    mixed = kind == "mixed"
    perm = tuple(range(n))
    if kind == "F":
        perm = perm[::-1]
    elif kind == "perm" or (mixed and draw(st.booleans())):
        perm = tuple(draw(st.permutations(range(n))))
    steps = tuple(draw(st.sampled_from((1, 2, 3))) if kind == "steps" or mixed else 1 for _ in shape)
    flips = tuple(draw(st.booleans()) if kind == "flip" or mixed else False for _ in shape)
    bcast = tuple(d > 1 and draw(st.booleans()) if kind == "broadcast" or mixed else False for d in shape)
    swapped = "byteorder" not in SKIP and dtype != "bool" and (kind == "swap" or (mixed and draw(st.booleans())))
    offset = int("unaligned" not in SKIP and (kind == "unaligned" or (mixed and draw(st.booleans()))))
    return Layout(perm, steps, flips, bcast, swapped, offset)


# -- values -------------------------------------------------------------------------------------

SPECIAL = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e-30, 88.5, -104.0, 65504.0, 1e-7)


def make_values(shape: Sequence[int], dtype: str, kind: str, seed: int) -> np.ndarray:
    """Values of one input: ``normal`` (floats around 1), ``dyadic`` (quarters, exact in every float
    dtype), ``special`` (normal with NaN, infinities, zeros, huge and tiny numbers sprinkled in)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.startswith("int"):
        return np.asarray(rng.integers(-4, 5, shape), dtype)
    if kind == "dyadic":
        return np.asarray(rng.integers(-12, 13, shape) / 4, dtype)
    with np.errstate(over="ignore"):
        a = np.asarray(rng.standard_normal(shape) * 1.5, dtype)
        if kind == "special" and a.size:
            hits = rng.random(shape) < 0.3
            a[hits] = rng.choice(np.array(SPECIAL), int(hits.sum())).astype(dtype)
    return a


@dataclass
class Input:
    """One graph input: its logical values and the same values in ``layout``."""

    name: str
    logical: np.ndarray
    array: np.ndarray
    layout: Layout

    def __repr__(self) -> str:
        body = np.array2string(self.logical, precision=4, threshold=40, separator=", ")
        return f"{self.name} = {body}  # {self.logical.dtype}{list(self.logical.shape)}, {self.layout!r}"


class Program:
    """A random graph with its inputs; ``repr`` lists nodes (with constant values) and inputs."""

    def __init__(self, graph: Graph, inputs: list[Input], bindings: dict[str, int]):
        self.graph = graph
        self.inputs = inputs
        self.bindings = bindings

    @property
    def arrays(self) -> list[np.ndarray]:
        return [i.array for i in self.inputs]

    @property
    def logical(self) -> list[np.ndarray]:
        return [i.logical for i in self.inputs]

    def __repr__(self) -> str:
        g = self.graph
        lines = [f"Program({', '.join(f'{k}={v}' for k, v in self.bindings.items()) or 'no symbols'}):"]
        for k, n in enumerate(g.nodes):
            if LISTED < k < len(g.nodes) - LISTED:  # long chains: the ends tell the story
                if k == LISTED + 1:
                    lines.append(f"  ... {len(g.nodes) - 2 * LISTED - 1} more nodes ...")
                continue
            line = f"  {n!r}"
            if n.op == "const":
                line += "  = " + np.array2string(g.constants[n.id], precision=4, threshold=20, separator=", ")
            lines.append(line)
        lines.append("  outputs: " + ", ".join(f"{k}=%{i}" for k, i in g.outputs.items()))
        lines += [f"  {i!r}" for i in self.inputs]
        return "\n".join(lines)


@st.composite
def inputs(draw: Callable, name: str, shape: S.Shape, dtype: str, bindings: dict[str, int]) -> Input:
    """An input of ``shape`` (symbols bound by ``bindings``): drawn values in a drawn layout."""
    full = S.resolve(shape, bindings)
    layout = draw(layouts(full, dtype))
    base_shape = tuple(1 if b else d for d, b in zip(full, layout.broadcast))
    base = make_values(base_shape, dtype, draw(st.sampled_from(("normal", "dyadic", "special"))),
                       draw(st.integers(0, 2**16)))
    logical = np.array(np.broadcast_to(base, full), order="C")  # ascontiguousarray would make 0-d 1-d
    return Input(name, logical, place(base, layout, full), layout)


# -- programs -----------------------------------------------------------------------------------

class _Gen:
    """Grows one program: a pool of values, each new op drawing its operands from the pool (recent
    ones first, so shrinking keeps chains) and inserting the casts and broadcasts its rule needs."""

    def __init__(self, draw: Callable, bindings: dict[str, int]):
        self.draw = draw
        self.bindings = bindings
        self.b = GraphBuilder()
        self.pool: list[int] = []
        self.values: dict[int, np.ndarray | None] = {}
        self.inputs: list[Input] = []
        self.bad: set[int] = set()  # nodes too big to use
        self.chain = False  # every value used once: second operands are fresh constants

    # facts about values
    def shape(self, i: int) -> S.Shape:
        return self.b.shape(i)

    def dtype(self, i: int) -> str:
        return self.b.dtype(i)

    def concrete(self, shape: Sequence) -> tuple[int, ...]:
        return S.resolve(shape, self.bindings)

    # building
    def node(self, op: str, src: Sequence[int], attrs: dict | None = None) -> int | None:
        """Add a node (None where its result is too big or, for integers, could overflow)."""
        i = self.b.add(op, list(src), attrs or {})
        if i not in self.values:
            n = self.b.nodes[i]
            ops = [self.values[s] for s in src]
            try:
                with np.errstate(all="ignore"):
                    self.values[i] = None if any(v is None for v in ops) else run_node(n, ops, self.bindings)
            except LumiError:
                self.values[i] = None
            if self._too_big(i, ops):
                self.bad.add(i)
        return None if i in self.bad else i

    def _too_big(self, i: int, operands: list) -> bool:
        n = self.b.nodes[i]
        if math.prod(self.concrete(n.shape)) > MAX_ELEMENTS:
            return True
        if not n.dtype.startswith("int") or n.op not in ("add", "sub", "mul", "pow", "sum", "matmul"):
            return False
        if any(v is None for v in operands):
            return True
        with np.errstate(all="ignore"):
            wide = OP_TABLE[n.op].ref([v.astype(np.float64) for v in operands], n.attrs, None)
        return not float(np.max(np.abs(wide), initial=0.0)) < INT_LIMIT

    def keep(self, i: int | None) -> int | None:
        if i is not None and i not in self.pool:
            self.pool.append(i)
        return i

    def pick(self, ok: Callable[[int], bool] = lambda i: True) -> int | None:
        cands = [i for i in reversed(self.pool) if ok(i)]
        return cands[self.draw(st.integers(0, len(cands) - 1))] if cands else None

    def new_input(self, name: str, use_sym: bool) -> int:
        draw = self.draw
        dims = (*DIMS, SYM) if use_sym else DIMS
        shape = tuple(draw(st.sampled_from(dims)) for _ in range(draw(st.sampled_from((2, 1, 3, 0, 2, 3)))))
        inp = draw(inputs(name, shape, draw(st.sampled_from(DTYPES)), self.bindings))
        i = self.b.input(name, shape, inp.logical.dtype.name)
        self.values[i] = inp.logical
        self.inputs.append(inp)
        return self.keep(i)

    def scalar(self, value, shape: S.Shape, dtype: str) -> int | None:
        i = self.b.const(np.array(value, dtype))
        self.values[i] = self.b.constants[i]
        return self.conform(i, shape, dtype)

    def const(self, shape: S.Shape, dtype: str) -> int | None:
        """A constant of ``shape`` (1 along symbolic dimensions, then expanded): a scalar or an array."""
        draw = self.draw
        if draw(st.booleans()):
            if dtype == "bool":
                return self.scalar(draw(st.booleans()), shape, dtype)
            choices = (2, 1, -1, 0, 3) if dtype.startswith("int") else (2.0, 0.5, -1.0, 0.0, 1.5, -0.25, 3.0)
            return self.scalar(draw(st.sampled_from(choices)), shape, dtype)
        dims = tuple(1 if isinstance(d, str) else d for d in shape)
        return self.scalar(make_values(dims, dtype, draw(st.sampled_from(("dyadic", "normal"))),
                                       draw(st.integers(0, 99))), shape, dtype)

    def cast(self, i: int, dtype: str) -> int | None:
        return i if self.dtype(i) == dtype else self.node("cast", [i], {"dtype": dtype})

    def floaty(self, i: int) -> int | None:
        """``i`` as a float (cast to a drawn float dtype where it is not one)."""
        return i if self.dtype(i) in FLOATS else self.cast(i, self.draw(st.sampled_from(FLOATS)))

    def reshape(self, i: int, shape: Sequence) -> int | None:
        return i if tuple(self.shape(i)) == tuple(shape) else self.node("reshape", [i], {"shape": list(shape)})

    def conform(self, i: int, shape: S.Shape, dtype: str) -> int | None:
        """``i`` cast to ``dtype`` and broadcast (reshape + expand) to ``shape``."""
        i = self.cast(i, dtype)
        if i is None:
            return None
        src = self.shape(i)
        if tuple(src) == tuple(shape):
            return i
        i = self.reshape(i, (1,) * (len(shape) - len(src)) + tuple(src))
        return None if i is None else self.node("expand", [i], {"shape": list(shape)})

    def operand_like(self, a: int, dtype: str | None = None) -> int | None:
        """A second operand for ``a``: a pool value that broadcasts to its shape, or a constant."""
        shape, dtype = self.shape(a), dtype or self.dtype(a)
        fits = lambda i: _broadcasts(self.shape(i), shape)  # noqa: E731
        cands = [] if self.chain else [i for i in reversed(self.pool) if fits(i)]
        k = self.draw(st.integers(0, len(cands)))
        return self.keep(self.const(shape, dtype) if k == len(cands) else self.conform(cands[k], shape, dtype))

    # one op of each kind
    def step(self, op: str) -> int | None:
        a = self.pool[-1] if self.chain else self.pick()
        return self.keep(getattr(self, f"op_{op}", self.op_binary)(op, a))

    def op_binary(self, op: str, a: int) -> int | None:
        if op == "div":
            a = self.floaty(a)
        elif self.dtype(a) == "bool" and op in ("sub", "pow"):  # NumPy refuses these on bools
            a = self.cast(a, "int32")
        if a is None:
            return None
        if op == "pow" and self.dtype(a).startswith("int"):  # integers to negative powers raise
            b = self.scalar(self.draw(st.sampled_from((2, 0, 1, 3))), self.shape(a), self.dtype(a))
        else:
            b = self.operand_like(a)
        return None if b is None else self.node(op, [a, b])

    def op_unary(self, op: str, a: int) -> int | None:
        a = self.floaty(a)
        return None if a is None else self.node(op, [a])

    op_exp = op_log = op_sqrt = op_recip = op_tanh = op_erf = op_sin = op_unary

    def op_where(self, op: str, x: int) -> int | None:
        c = self.operand_like(x, "bool")
        y = self.operand_like(x)
        return None if c is None or y is None else self.node("where", [c, x, y])

    def op_cast(self, op: str, a: int) -> int | None:
        return self.cast(a, self.draw(st.sampled_from([d for d in DTYPES if d != self.dtype(a)])))

    def op_sum(self, op: str, a: int) -> int | None:
        shape = self.concrete(self.shape(a))
        axes = [k for k in range(len(shape)) if self.draw(st.booleans())]
        if op == "max" and "empty_max" in SKIP and math.prod(shape[k] for k in axes) == 0:
            return None
        if op == "sum" and "bool_sum" in SKIP and self.dtype(a) == "bool":
            return None
        return self.node(op, [a], {"axes": axes, "keepdims": self.draw(st.booleans())})

    op_max = op_sum

    def op_reshape(self, op: str, a: int) -> int | None:
        draw, shape = self.draw, self.shape(a)
        ints = [d for d in shape if isinstance(d, int)]
        n = math.prod(ints)
        factors = [0] if n == 0 else _prime_factors(n)
        parts = draw(st.integers(1, 3))
        dims = [1] * parts
        for f in factors:
            dims[draw(st.integers(0, parts - 1))] *= f
        if n == 0:
            dims = [d if d else draw(st.sampled_from((2, 1, 3))) for d in dims]
            dims[draw(st.integers(0, parts - 1))] = 0
        for s in (d for d in shape if isinstance(d, str)):
            dims.insert(draw(st.integers(0, len(dims))), s)
        if len(dims) > 4:
            return None
        known = [k for k, d in enumerate(dims) if isinstance(d, int)]
        if known and draw(st.booleans()):
            k = draw(st.sampled_from(known))
            if math.prod(d for j, d in enumerate(dims) if isinstance(d, int) and j != k):
                dims[k] = -1
        return self.node("reshape", [a], {"shape": dims})

    def op_permute(self, op: str, a: int) -> int | None:
        return self.node("permute", [a], {"axes": list(self.draw(st.permutations(range(len(self.shape(a))))))})

    def op_expand(self, op: str, a: int) -> int | None:
        draw, shape = self.draw, list(self.shape(a))
        if 1 not in shape:
            k = draw(st.integers(0, len(shape)))
            shape.insert(k, 1)
            a = self.reshape(a, shape)
        sizes = (2, 3, 1, 4, SYM) if self.bindings else (2, 3, 1, 4)
        new = [draw(st.sampled_from(sizes)) if d == 1 else d for d in shape]
        return None if a is None else self.node("expand", [a], {"shape": new})

    def op_slice(self, op: str, a: int) -> int | None:
        return self.node("slice", [a], {"slices": [self._slice(d) for d in self.shape(a)]})

    def _slice(self, d) -> list:
        draw = self.draw
        if isinstance(d, str) or draw(st.booleans()):
            return [0, None, 1]
        ends = (None, 0, 1, -1, 2, -2, d, d + 2, -d - 1)
        return [draw(st.sampled_from(ends)), draw(st.sampled_from(ends)), draw(st.sampled_from((1, 2, -1, -2, 3)))]

    def op_concat(self, op: str, a: int) -> int | None:
        if "concat" in SKIP:
            return None
        draw = self.draw
        if not self.shape(a):
            a = self.reshape(a, (1,))
        if a is not None and len(self.shape(a)) > 1 and draw(st.booleans()):  # operands that are views
            a = self.node("permute", [a], {"axes": list(range(len(self.shape(a))))[::-1]})
        if a is None:
            return None
        shape = self.shape(a)
        axes = [k for k, d in enumerate(shape) if isinstance(d, int)]
        if not axes:
            return None
        axis = draw(st.sampled_from(axes))
        parts = [a]
        for _ in range(draw(st.integers(1, 2))):
            parts.append(self._concat_part(a, axis))
        return None if None in parts else self.node("concat", parts, {"axis": axis})

    def _concat_part(self, a: int, axis: int) -> int | None:
        """Another operand for concatenating onto ``a``: itself, a strided or reversed slice of it, a
        transposed pool value of a matching shape, or a constant of another length along ``axis``."""
        draw, shape, dtype = self.draw, self.shape(a), self.dtype(a)
        kind = draw(st.sampled_from(("same", "slice", "transposed", "const")))
        if kind == "slice":
            slices = [[0, None, 1]] * len(shape)
            slices[axis] = [draw(st.sampled_from((None, 1, -1))), None, draw(st.sampled_from((-1, 2, -2, 1)))]
            return self.node("slice", [a], {"slices": slices})
        if kind == "transposed":
            for i in reversed(self.pool):
                s = self.shape(i)
                perm = _matching_perm(s, shape, axis)
                if perm is not None and self.dtype(i) == dtype:
                    return self.node("permute", [i], {"axes": perm})
        if kind in ("const", "transposed"):
            other = list(shape)
            other[axis] = draw(st.sampled_from((1, 2, 0, 3)))
            return self.const(tuple(other), dtype)
        return a

    def op_matmul(self, op: str, a: int) -> int | None:
        draw = self.draw
        if self.dtype(a) == "bool":
            a = self.cast(a, draw(st.sampled_from(("float32", "int32"))))
        shape = self.shape(a)
        if len(shape) < 2:
            a = self.reshape(a, (1, *shape) if shape else (1, 1))
            shape = self.shape(a)
        k, batch = shape[-1], shape[:-2]
        if draw(st.booleans()):  # a @ a^T (batched where a has batch dimensions)
            axes = [*range(len(shape) - 2), len(shape) - 1, len(shape) - 2]
            b = self.node("permute", [a], {"axes": axes})
        else:
            fits = lambda i: self.shape(i)[:-2] == batch and len(self.shape(i)) == len(shape) \
                and self.shape(i)[-2] == k and self.dtype(i) == self.dtype(a)  # noqa: E731
            b = self.pick(fits) if draw(st.booleans()) else None
            if b is None:
                b = self.const((*batch, k, draw(st.sampled_from((3, 1, 2, 4)))), self.dtype(a))
        return None if b is None else self.node("matmul", [a, b])


    def op_gather(self, op: str, a: int) -> int | None:
        """``a`` gathered along a concrete axis by constant indices (negative ones too, now and then one out of
        range, which every target must refuse) or by an integer pool value clamped into the axis."""
        draw, shape = self.draw, self.shape(a)
        axes = [k for k, d in enumerate(shape) if isinstance(d, int) and d > 0]
        if not axes:
            return None
        axis = draw(st.sampled_from(axes))
        n = shape[axis]
        ints = self.pick(lambda i: self.dtype(i) in ("int32", "int64") and len(self.shape(i)) <= 2)
        if ints is not None and draw(st.booleans()):
            index = self._clamped(ints, n)
        else:
            count = draw(st.sampled_from((1, 3, 0, 2)))
            values = draw(st.lists(st.integers(-n, n - 1), min_size=count, max_size=count))
            if values and draw(st.integers(0, 9)) == 0:
                values[0] = draw(st.sampled_from((n, -n - 1)))
            index = self.b.const(np.array(values, draw(st.sampled_from((np.int64, np.int32)))))
            self.values[index] = self.b.constants[index]
        return None if index is None else self.node("gather", [a, index], {"axis": axis})

    def _clamped(self, v: int, n: int) -> int | None:
        """Integers ``v`` clamped into ``[-n, n - 1]`` with primitives: ``-max(-max(v, -n), 1 - n)``."""
        shape, dtype = self.shape(v), self.dtype(v)
        zero = self.scalar(0, shape, dtype)
        low = self.node("maximum", [v, self.scalar(-n, shape, dtype)])
        flipped = None if low is None else self.node("sub", [zero, low])
        high = None if flipped is None else self.node("maximum", [flipped, self.scalar(1 - n, shape, dtype)])
        return None if high is None else self.node("sub", [zero, high])


def _broadcasts(src: Sequence, dst: Sequence) -> bool:
    return len(src) <= len(dst) and all(s == d or s == 1 for s, d in zip(reversed(src), reversed(dst)))


def _matching_perm(src: Sequence, dst: Sequence, axis: int) -> list[int] | None:
    """A non-identity permutation taking ``src`` to ``dst`` except along ``axis``, or None."""
    if len(src) != len(dst) or len(src) < 2:
        return None
    for perm in ([*range(len(src))][::-1], [1, 0, *range(2, len(src))]):
        out = [src[p] for p in perm]
        if all(o == d for k, (o, d) in enumerate(zip(out, dst)) if k != axis) and isinstance(out[axis], int):
            return perm
    return None


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


@st.composite
def programs(draw: Callable, ops: Sequence[str] = OPS, max_ops: int = 12) -> Program:
    """A random program: 1-3 inputs (0-3 dimensions, sizes 0-5, maybe the symbolic ``batch``), up to
    ``max_ops`` ops drawn from ``ops``, and 1-4 outputs (the last value, then unused results or a pick)."""
    use_sym = draw(st.booleans())
    gen = _Gen(draw, {SYM: draw(st.sampled_from(BATCHES))} if use_sym else {})
    for k in range(draw(st.integers(1, 3))):
        gen.new_input(f"x{k}", use_sym)
    for _ in range(draw(st.integers(3, max_ops))):
        gen.step(draw(st.sampled_from(ops)))
    used = {s for n in gen.b.nodes for s in n.src}
    sinks = [i for i in gen.pool if i not in used and gen.b.nodes[i].op not in ("input", "const")]
    outputs = {"out0": gen.pool[-1]}
    for k, i in enumerate(sinks[-3:] if draw(st.booleans()) else [gen.pick()]):  # leave few ops dead
        outputs[f"out{k + 1}"] = i
    return Program(gen.b.build(outputs), gen.inputs, gen.bindings)


@st.composite
def chains(draw: Callable, min_ops: int = 1000, max_ops: int = 2000) -> Program:
    """One long elementwise chain over one float input: a single fused kernel of hundreds of ops."""
    gen = _Gen(draw, {})
    gen.chain = True
    x = gen.new_input("x0", False)
    gen.keep(gen.floaty(x))
    for _ in range(draw(st.integers(min_ops, max_ops))):
        gen.step(draw(st.sampled_from(CHAIN_OPS)))
    return Program(gen.b.build({"out0": gen.pool[-1]}), gen.inputs, gen.bindings)


# -- programs through the NumPy tracer ----------------------------------------------------------

def _axis(draw: Callable, x) -> int:
    return draw(st.integers(-x.ndim, x.ndim - 1))


def _keep(draw: Callable) -> bool:
    return draw(st.booleans())


# Each composite takes (draw, current value, every value so far) and returns a traced value; one that
# the tracer refuses (a LumiError) is skipped. Names are what the shrunk program's listing records.
COMPOSITES: dict[str, Callable] = {
    "mean": lambda d, x, vs: np.mean(x, axis=_axis(d, x), keepdims=_keep(d)),
    "var": lambda d, x, vs: np.var(x, axis=_axis(d, x), keepdims=_keep(d)),
    "std": lambda d, x, vs: np.std(x, axis=_axis(d, x)),
    "softmax": lambda d, x, vs: nn.softmax(x, axis=_axis(d, x)),
    "log_softmax": lambda d, x, vs: nn.log_softmax(x, axis=_axis(d, x)),
    "layernorm": lambda d, x, vs: nn.layernorm(x),
    "rmsnorm": lambda d, x, vs: nn.rmsnorm(x),
    "gelu": lambda d, x, vs: nn.gelu(x, approximate=d(st.sampled_from(("tanh", "none")))),
    "silu": lambda d, x, vs: nn.silu(x),
    "relu": lambda d, x, vs: nn.relu(x),
    "abs_minimum": lambda d, x, vs: np.minimum(np.abs(x), 0.5),
    "clip": lambda d, x, vs: np.clip(x, -1.0, 1.0),
    "cos_square": lambda d, x, vs: np.cos(x) + np.square(x),
    "argmax": lambda d, x, vs: np.argmax(x, axis=_axis(d, x)),
    "argmin": lambda d, x, vs: np.argmin(x, axis=_axis(d, x)),
    "any": lambda d, x, vs: np.any(x > 0, axis=_axis(d, x)),
    "all_cast": lambda d, x, vs: np.all(x < 1, axis=_axis(d, x)).astype(np.float32),
    "sum_max": lambda d, x, vs: x.sum(axis=_axis(d, x), keepdims=True) - x.max(axis=_axis(d, x), keepdims=True),
    "centre": lambda d, x, vs: x - x.mean(axis=-1, keepdims=True),
    "broadcast_add": lambda d, x, vs: x + d(st.sampled_from(vs)),
    "leaky": lambda d, x, vs: np.where(x > 0, x, 0.1 * x),
    "powers": lambda d, x, vs: np.abs(x) ** d(st.sampled_from((2, 3, 0.5, -1, 1.5))),
    "transpose": lambda d, x, vs: x.T,
    "expand_dims": lambda d, x, vs: np.expand_dims(x, d(st.integers(0, x.ndim))),
    "squeeze": lambda d, x, vs: np.squeeze(x),
    "split": lambda d, x, vs: x[..., : x.shape[-1] // 2] * x[..., x.shape[-1] - x.shape[-1] // 2:],
    "reverse": lambda d, x, vs: x[::-1] + 1.0,
    "concat": lambda d, x, vs: np.concatenate([x, x[..., ::-1]], axis=-1),
    "stack": lambda d, x, vs: np.stack([x, -x], axis=d(st.integers(0, x.ndim))),
    "matmul_t": lambda d, x, vs: x @ np.swapaxes(x, -1, -2),
    "flatten": lambda d, x, vs: x.reshape(-1),
    "mixed_dtype": lambda d, x, vs: x.astype(d(st.sampled_from(("float64", "int32", "float16")))) * 2,
}


@st.composite
def traced_programs(draw: Callable, max_steps: int = 6) -> Program:
    """A program traced from NumPy code: composites (mean, var, softmax, argmax, squeeze, split by
    slicing, broadcasting...) over one float input, maybe with a symbolic batch dimension first."""
    use_sym = draw(st.booleans())
    bindings = {SYM: draw(st.sampled_from(BATCHES))} if use_sym else {}
    rest = tuple(draw(st.sampled_from(DIMS)) for _ in range(draw(st.sampled_from((1, 2, 0)))))
    shape = ((SYM,) if use_sym else (draw(st.sampled_from(DIMS)),)) + rest
    dtype = draw(st.sampled_from(FLOATS))
    inp = draw(inputs("x", shape, dtype, bindings))

    def fn(x):
        values = [x]
        for _ in range(draw(st.integers(1, max_steps))):
            step = COMPOSITES[draw(st.sampled_from(sorted(COMPOSITES)))]
            with contextlib.suppress(LumiError, IndexError, TypeError, ValueError):  # it does not apply here
                values.append(step(draw, values[-1], values))
        return values[-1], draw(st.sampled_from(values))

    return Program(lumi.trace(fn, lumi.spec(shape, dtype)), [inp], bindings)
