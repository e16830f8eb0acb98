"""Graph-to-graph optimisation passes, each a small pure function, run together to a fixpoint.

Rebuilding through :class:`GraphBuilder` gives dead-code elimination (``build`` keeps only what
outputs need) and CSE (the builder hash-conses structurally equal nodes) on every pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..graph import shapes as S
from ..graph.dtypes import is_float
from ..graph.ir import Graph, GraphBuilder, Node
from ..graph.ops import OPS

Rule = Callable[[GraphBuilder, Node, list[int]], "int | None"]

FOLD_LIMIT = 1 << 14  # constant folding never makes a constant bigger than this many elements
_VIEWS = ("reshape", "permute", "expand", "slice")


def rewrite(graph: Graph, rule: Rule) -> Graph:
    """Rebuild ``graph`` node by node; ``rule(builder, node, new_src)`` may return a replacement id."""
    b = GraphBuilder()
    new: dict[int, int] = {}
    for name, i in graph.inputs.items():
        n = graph.nodes[i]
        new[i] = b.input(name, n.shape, n.dtype)
    for n in graph.nodes:
        if n.op == "input":
            continue
        if n.op == "const":
            new[n.id] = b.const(graph.constants[n.id], n.loc)
            continue
        src = [new[s] for s in n.src]
        r = rule(b, n, src)
        if r is None:
            r = b.add(n.op, src, n.attrs, n.loc)
        assert tuple(b.shape(r)) == tuple(n.shape) and b.dtype(r) == n.dtype, (n, b.nodes[r])
        new[n.id] = r
    return b.build({k: new[v] for k, v in graph.outputs.items()})


def splat(b: GraphBuilder, i: int):
    """The single value of a constant (or a view of one) whose elements are all equal, else None."""
    while b.nodes[i].op in ("reshape", "expand", "permute", "slice"):
        i = b.nodes[i].src[0]
    return uniform_value(b.constants[i]) if b.nodes[i].op == "const" else None


def uniform_value(a: np.ndarray):
    """The value of every element of ``a`` if they are all equal (and not NaN), else None."""
    if a.size == 0:
        return None
    v = a.flat[0]
    return v if a.size == 1 or bool(np.all(a == v)) else None


def make_splat(b: GraphBuilder, value, shape, dtype: str) -> int:
    """A node holding ``value`` everywhere in ``shape`` (a scalar constant, reshaped and expanded)."""
    i = b.const(np.asarray(value, dtype=dtype))
    if shape:
        i = b.add("reshape", [i], {"shape": [1] * len(shape)})
        if any(d != 1 for d in shape):
            i = b.add("expand", [i], {"shape": list(shape)})
    return i


def _is(b: GraphBuilder, i: int, value) -> bool:
    v = splat(b, i)
    return v is not None and v == value


def fold_constants(b: GraphBuilder, n: Node, src: list[int]) -> int | None:
    """Evaluate ops whose operands are all (small) constants."""
    if not src or any(b.nodes[s].op != "const" for s in src) or not S.is_concrete(n.shape):
        return None
    if n.op == "expand":
        return None  # a broadcast constant stays a view: kernels read it as a literal or with stride 0
    if S.numel(n.shape) > FOLD_LIMIT:
        return None
    try:
        with np.errstate(all="ignore"):
            value = OPS[n.op].ref([b.constants[s] for s in src], n.attrs, n.shape)
    except (ValueError, ArithmeticError):
        return None  # e.g. max over an empty axis: left for run time, where every target refuses it clearly
    return b.const(np.asarray(value, dtype=n.dtype).reshape(n.shape), n.loc)


def simplify(b: GraphBuilder, n: Node, src: list[int]) -> int | None:
    """Algebraic identities that hold for every input, NaN and inf included."""
    op = n.op
    if op in ("add", "sub") and _is(b, src[1], 0) and n.dtype != "bool":
        return src[0]
    if op == "add" and _is(b, src[0], 0) and n.dtype != "bool":
        return src[1]
    if op in ("mul", "div") and _is(b, src[1], 1):
        return src[0]
    if op == "mul" and _is(b, src[0], 1):
        return src[1]
    if op == "mul" and not is_float(n.dtype) and (_is(b, src[0], 0) or _is(b, src[1], 0)):
        return make_splat(b, 0, n.shape, n.dtype)  # for floats x*0 is NaN when x is inf or NaN
    if op == "mul" and _is(b, src[1], -1):
        inner = b.nodes[src[0]]
        if inner.op == "mul" and _is(b, inner.src[1], -1):
            return inner.src[0]  # double negation
    if op == "pow":
        return _lower_pow(b, n, src)
    if op == "cast":
        inner = b.nodes[src[0]]
        if inner.op == "cast" and b.dtype(inner.src[0]) == n.dtype and _widens(n.dtype, inner.dtype):
            return inner.src[0]
    if op == "where" and src[1] == src[2]:
        return src[1]
    if op == "maximum" and src[0] == src[1]:
        return src[0]
    if op in ("sum", "max") and all(b.shape(src[0])[a] == 1 for a in n.attrs["axes"]):
        return src[0] if tuple(b.shape(src[0])) == tuple(n.shape) else b.add("reshape", src, {"shape": list(n.shape)})
    return None


def _widens(narrow: str, wide: str) -> bool:
    order = ["float16", "float32", "float64"]
    return narrow in order and wide in order and order.index(wide) > order.index(narrow)


def _lower_pow(b: GraphBuilder, n: Node, src: list[int]) -> int | None:
    """x**k for a constant integer k as multiplies (NumPy's pow is ~300x slower than x*x*x)."""
    k = splat(b, src[1])
    if k is None or not float(k).is_integer() or abs(k) > 16 or (k < 0 and not is_float(n.dtype)):
        if k is not None and float(k) == 0.5 and is_float(n.dtype):
            return b.add("sqrt", [src[0]])
        return None
    k = int(k)
    if k == 0:
        return make_splat(b, 1, n.shape, n.dtype)
    result, base, e = None, src[0], abs(k)
    while e:
        if e & 1:
            result = base if result is None else b.add("mul", [result, base])
        e >>= 1
        if e:
            base = b.add("mul", [base, base])
    return b.add("recip", [result]) if k < 0 else result


def fold_views(b: GraphBuilder, n: Node, src: list[int]) -> int | None:
    """Drop identity views and merge chains of the same view."""
    op = n.op
    if op not in _VIEWS:
        return None
    x = src[0]
    inner = b.nodes[x]
    if op in ("reshape", "expand") and tuple(inner.shape) == tuple(n.shape):
        return x
    if op == "permute" and list(n.attrs["axes"]) == sorted(n.attrs["axes"]):
        return x
    if op == "slice" and all(tuple(s) == (0, None, 1) or (s[0] == 0 and s[1] == d and s[2] == 1)
                             for s, d in zip(n.attrs["slices"], inner.shape)):
        return x
    if op == "reshape" and inner.op == "reshape":
        return b.add("reshape", [inner.src[0]], {"shape": list(n.shape)})
    if op == "expand" and inner.op == "expand":
        return b.add("expand", [inner.src[0]], {"shape": list(n.shape)})
    if op == "permute" and inner.op == "permute":
        axes = [inner.attrs["axes"][a] for a in n.attrs["axes"]]
        return b.add("permute", [inner.src[0]], {"axes": axes})
    return None


PASSES: tuple[Rule, ...] = (fold_constants, simplify, fold_views)


def _combined(b: GraphBuilder, n: Node, src: list[int]) -> int | None:
    for rule in PASSES:
        r = rule(b, n, src)
        if r is not None:
            return r
    return None


def optimize(graph: Graph, max_rounds: int = 8) -> Graph:
    """Run every pass until the graph stops changing (its content hash is stable)."""
    for _ in range(max_rounds):
        new = rewrite(graph, _combined)
        if new.hash == graph.hash and len(new.nodes) == len(graph.nodes):
            return new
        graph = new
    return graph
