"""Fusion: partition an optimised graph into kernels and lower each to a small group IR.

The rules (design.md): an elementwise chain over one iteration space is one kernel; elementwise
producers fuse into a reduction's map step and elementwise consumers of the reduced shape into
its post step; a reduced value broadcast back over the reduced axes stays in the same *row
kernel* (softmax and layernorm are one kernel: each output row is reduced, then written);
matmul and concat run in libraries (BLAS, cuBLAS) and their inputs are materialized; graph
outputs are always materialized. Views never compute: they become strided reads.

Every group iterates over one domain ``X`` (a graph shape) split into *outer* (kept) and
*inner* (reduced) dimensions. Statements are ``full`` (one value per domain element) or
``row`` (one value per outer index). Both renderers and the NumPy executor read this IR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..graph.ir import Graph
from ..graph.ops import OPS
from . import views as V
from .passes import uniform_value

COMPUTE = ("unary", "binary", "ternary", "cast", "reduce")
VIEW_OPS = ("reshape", "permute", "expand", "slice")


@dataclass(frozen=True)
class Load:
    """A leaf: buffer ``buf`` (the node whose value it holds) read through ``access``, or a literal."""

    buf: int | None
    access: V.Access | None
    dtype: str
    level: str
    operand: int  # the graph node this leaf stands for (the top of the view chain)
    value: object = None


@dataclass(frozen=True)
class Stmt:
    node: int
    op: str
    args: tuple[tuple[str, int], ...]  # ("load", index into loads) or ("stmt", node id)
    dtype: str
    attrs: Mapping
    level: str


@dataclass(frozen=True)
class Store:
    node: int
    level: str
    access: V.Access
    dtype: str


@dataclass(frozen=True)
class Group:
    """One fused kernel: loops over ``outer`` x ``inner`` computing ``stmts`` from ``loads``."""

    name: str
    kind: str  # "elementwise" | "reduce"
    nodes: tuple[int, ...]
    outer: tuple[V.Expr, ...]
    inner: tuple[V.Expr, ...]
    loads: tuple[Load, ...]
    stmts: tuple[Stmt, ...]
    stores: tuple[Store, ...]
    symbols: tuple[str, ...]  # symbolic dimension names, in kernel-argument order
    domain: tuple  # the graph shape X the group iterates over
    perm: tuple[int, ...]  # domain axes in loop order: kept axes, then reduced ones
    n_reduced: int


@dataclass(frozen=True)
class LibraryStep:
    """A node run by a library (BLAS/cuBLAS matmul, concat) on materialized operands."""

    name: str
    kind: str
    node: int


@dataclass(frozen=True)
class MatmulStep:
    """A 2-D BLAS matmul run with its rows split over the CPU's threads, each thread calling BLAS on its
    own block; ``epilogue``, the kernel that consumes the product row by row (bias + GELU, a residual
    add, a row softmax), then runs on the same rows while they are still in that thread's cache."""

    name: str
    node: int
    epilogue: Group | None

    @property
    def nodes(self) -> tuple[int, ...]:
        return (self.node, *(self.epilogue.nodes if self.epilogue else ()))


Step = Group | LibraryStep | MatmulStep


def sym(shape) -> tuple:
    """A graph shape with symbolic names as the C identifiers kernels receive them under."""
    return tuple(f"S_{d}" if isinstance(d, str) else d for d in shape)


def resolve(graph: Graph, i: int) -> tuple[int, list[int]]:
    """Follow views down from node ``i``: the computing node underneath and the views, bottom first."""
    chain = []
    while graph.nodes[i].op in VIEW_OPS:
        chain.append(i)
        i = graph.nodes[i].src[0]
    return i, chain[::-1]


def _strip1(shape) -> list:
    return [d for d in shape if d != 1]


class _Fusion:
    def __init__(self, graph: Graph):
        self.g = graph
        self.group_of: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}

    def kind(self, i: int) -> str:
        return OPS[self.g.nodes[i].op].kind

    def domain(self, members) -> tuple | None:
        nodes = self.g.nodes
        reduces = [m for m in members if self.kind(m) == "reduce"]
        if reduces:
            keys = {(tuple(nodes[nodes[r].src[0]].shape), tuple(nodes[r].attrs["axes"])) for r in reduces}
            return keys.pop() if len(keys) == 1 else None
        shapes = {tuple(nodes[m].shape) for m in members}
        return (shapes.pop(), None) if len(shapes) == 1 else None

    def roles(self, members) -> dict[int, str] | None:
        """Each member's level in a group of these members, or None if they cannot share a kernel."""
        dom = self.domain(members)
        if dom is None:
            return None
        X, A = dom
        nodes, mset = self.g.nodes, set(members)
        keep = None if A is None else tuple(1 if i in A else d for i, d in enumerate(X))
        roles: dict[int, str] = {}
        for m in sorted(members):
            n = nodes[m]
            want = set()
            for s in n.src:
                base, chain = resolve(self.g, s)
                if base not in mset:
                    continue
                if not chain:
                    want.add(roles[base])
                elif roles[base] == "row" and self._is_bcast(chain, X, keep):
                    want.add("bcast")
                elif roles[base] == "row" and all(nodes[c].op == "reshape" for c in chain):
                    want.add("rowview")
                else:
                    return None  # a view other than a broadcast-back: the operand must be materialized
            if A is None:
                if want - {"full"}:
                    return None
                roles[m] = "full"
            elif self.kind(m) == "reduce":
                if want - {"full"}:
                    return None
                roles[m] = "row"
            elif want & {"full", "bcast"} or (not want and tuple(n.shape) == X):
                if tuple(n.shape) != X or "rowview" in want:
                    return None
                roles[m] = "full"
            elif _strip1(n.shape) == _strip1(keep):
                roles[m] = "row"
            else:
                return None
        return roles

    def _is_bcast(self, chain, X, keep) -> bool:
        nodes = self.g.nodes
        last = nodes[chain[-1]]
        return (
            last.op == "expand"
            and tuple(last.shape) == X
            and tuple(nodes[last.src[0]].shape) == keep
            and all(nodes[c].op == "reshape" for c in chain[:-1])
        )

    def acyclic(self, mset: set[int]) -> bool:
        """No path leaves the member set and comes back into it."""
        nodes = self.g.nodes
        stack = []
        for m in mset:
            for s in nodes[m].src:
                base, _ = resolve(self.g, s)
                if base not in mset:
                    stack.append(base)
        seen = set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for s in nodes[i].src:
                if s in mset:
                    return False
                stack.append(s)
        return True

    def fits(self, members) -> bool:
        return self.roles(members) is not None and self.acyclic(set(members))

    def run(self) -> None:
        for n in self.g.nodes:
            if self.kind(n.id) not in COMPUTE:
                continue
            cands = []
            for s in n.src:
                base, _ = resolve(self.g, s)
                gid = self.group_of.get(base)
                if gid is not None and gid not in cands:
                    cands.append(gid)
            target = next((c for c in cands if self.fits(self.members[c] + [n.id])), None)
            if target is None:
                target = n.id
                self.members[target] = []
            self.members[target].append(n.id)
            self.group_of[n.id] = target
            for h in cands:
                if h != target and h in self.members and self.fits(self.members[target] + self.members[h]):
                    moved = self.members.pop(h)
                    for m in moved:
                        self.group_of[m] = target
                    self.members[target] = sorted(self.members[target] + moved)


def fuse(graph: Graph) -> list[Step]:
    """The kernels (and library steps) that compute ``graph``, in an order that respects dependencies."""
    f = _Fusion(graph)
    f.run()
    consumers: dict[int, set[int]] = {}
    for n in graph.nodes:
        if n.op in VIEW_OPS:
            continue
        for s in n.src:
            consumers.setdefault(resolve(graph, s)[0], set()).add(n.id)
    outputs = {resolve(graph, i)[0] for i in graph.outputs.values()}
    steps: list[Step] = []
    for members in f.members.values():
        stored = [m for m in members if m in outputs or any(f.group_of.get(u) != f.group_of[m]
                                                             for u in consumers.get(m, ()))]
        steps.append(_lower(f, sorted(members), stored))
    for n in graph.nodes:
        if OPS[n.op].kind in ("matmul", "concat"):
            steps.append(LibraryStep(f"{n.op}_{n.id}", n.op, n.id))
    return _order(graph, steps)


def attach_epilogues(graph: Graph, steps: list[Step]) -> list[Step]:
    """Turn each 2-D float matmul into a :class:`MatmulStep`, taking in the kernel right after it
    when that kernel works row by row on the product."""
    out: list[Step] = []
    k = 0
    while k < len(steps):
        st, nxt = steps[k], steps[k + 1] if k + 1 < len(steps) else None
        k += 1
        if not (isinstance(st, LibraryStep) and _plain_matmul(graph, st.node)):
            out.append(st)
        elif isinstance(nxt, Group) and _row_epilogue(graph, st.node, nxt):
            out.append(MatmulStep(f"{st.name}_{nxt.name}", st.node, nxt))
            k += 1
        else:
            out.append(MatmulStep(st.name, st.node, None))
    return out


def _plain_matmul(graph: Graph, mm: int) -> bool:
    n = graph.nodes[mm]
    return (n.op == "matmul" and len(n.shape) == 2 and n.dtype in ("float32", "float64")
            and all(len(graph.nodes[s].shape) == 2 and graph.nodes[s].dtype == n.dtype for s in n.src))


def _row_epilogue(graph: Graph, mm: int, g: Group) -> bool:
    """Whether group ``g`` can run on any block of rows of plain matmul ``mm`` as soon as those rows exist."""
    n = graph.nodes[mm]
    reads = [ld for ld in g.loads if ld.buf == mm]
    if g.domain != tuple(n.shape) or not reads or any(ld.operand != mm or ld.level != "full" for ld in reads):
        return False  # the product read through a view (transposed, sliced) could need other threads' rows
    rows = sym(n.shape)[0]
    if g.kind == "elementwise":
        return g.outer in ((), (rows,))
    return g.n_reduced == 1 and g.perm == (0, 1) and g.outer == (rows,)


def _lower(f: _Fusion, members: list[int], stored: list[int]) -> Group:
    g, nodes = f.g, f.g.nodes
    roles = f.roles(members)
    X, A = f.domain(members)
    mset = set(members)
    if A is None:
        perm, keep, n_red = tuple(range(len(X))), X, 0
    else:
        perm = tuple(i for i in range(len(X)) if i not in A) + tuple(A)
        keep, n_red = tuple(1 if i in A else d for i, d in enumerate(X)), len(A)
    sX, skeep = sym(X), sym(keep)
    symbols = set()

    def place(acc: V.Access, level: str) -> V.Access:
        if level == "row":
            acc = V.expand(V.reshape(acc, skeep), sX)
        return V.permute(acc, perm)

    loads: list[Load] = []
    load_index: dict[tuple, int] = {}
    stmts = []
    for m in members:
        n = nodes[m]
        args = []
        for s in n.src:
            base, chain = resolve(g, s)
            if base in mset:
                args.append(("stmt", base))
                continue
            value = uniform_value(g.constants[base]) if nodes[base].op == "const" else None
            level = "full" if f.kind(m) == "reduce" else roles[m]
            if value is not None:
                load = Load(None, None, nodes[s].dtype, level, s, value)
            else:
                acc = V.buffer_access(sym(nodes[base].shape))
                symbols.update(d for d in nodes[base].shape if isinstance(d, str))
                for c in chain:
                    acc = V.apply_view(acc, nodes[c].op, nodes[c].attrs, sym(nodes[c].shape))
                load = Load(base, place(acc, level), nodes[s].dtype, level, s)
            key = (load.buf, load.access, load.dtype, load.level, repr(load.value))
            if key not in load_index:
                load_index[key] = len(loads)
                loads.append(load)
            args.append(("load", load_index[key]))
        stmts.append(Stmt(m, n.op, tuple(args), n.dtype, n.attrs, roles[m]))
        symbols.update(d for d in n.shape if isinstance(d, str))
    symbols.update(d for d in X if isinstance(d, str))
    stores = tuple(
        Store(m, roles[m], place(V.buffer_access(sym(nodes[m].shape)), roles[m]), nodes[m].dtype)
        for m in stored
    )
    dims = [sX[p] for p in perm]
    sections = [0] * (len(X) - n_red) + [1] * n_red
    accesses = [ld.access for ld in loads if ld.access is not None] + [st.access for st in stores]
    dims, accesses, sections = V.coalesce(dims, accesses, sections)
    it = iter(accesses)
    loads = [ld if ld.access is None else Load(ld.buf, next(it), ld.dtype, ld.level, ld.operand) for ld in loads]
    stores = tuple(Store(st.node, st.level, next(it), st.dtype) for st in stores)
    if A is None:
        outer, inner = tuple(dims[:-1]), tuple(dims[-1:])
    else:
        outer = tuple(d for d, s in zip(dims, sections) if s == 0)
        inner = tuple(d for d, s in zip(dims, sections) if s == 1)
    kind = "elementwise" if A is None else "reduce"
    return Group(f"{kind}_{members[-1]}", kind, tuple(members), outer, inner, tuple(loads), tuple(stmts),
                 stores, tuple(sorted(symbols)), tuple(X), perm, n_red)


def _order(graph: Graph, steps: list[Step]) -> list[Step]:
    """Topological order of steps (each after the producers of what it reads)."""
    producer = {}
    for k, st in enumerate(steps):
        for node in (st.node,) if isinstance(st, LibraryStep) else st.nodes:
            producer[node] = k
    deps = []
    for st in steps:
        reads = [ld.buf for ld in st.loads if ld.buf is not None] if isinstance(st, Group) else [
            resolve(graph, s)[0] for s in graph.nodes[st.node].src]
        deps.append({producer[b] for b in reads if b in producer})
    done, order = set(), []
    while len(order) < len(steps):
        ready = [k for k in range(len(steps)) if k not in done and deps[k] <= done]
        k = min(ready, key=lambda k: min(steps[k].nodes) if isinstance(steps[k], Group) else steps[k].node)
        done.add(k)
        order.append(steps[k])
    return order


def buffers(group: Group) -> tuple[list[int], list[int]]:
    """The buffers a kernel takes, in argument order: those it reads, then those it writes."""
    reads = list(dict.fromkeys(ld.buf for ld in group.loads if ld.buf is not None))
    return reads, [st.node for st in group.stores]
