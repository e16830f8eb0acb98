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

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from ..graph.ir import Graph
from ..graph.ops import OPS
from . import views as V
from .passes import uniform_value

COMPUTE = ("unary", "binary", "ternary", "cast", "reduce", "gather")
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
    indexed: bool = False  # a gather's data: ``access`` gives the base offset, the index adds the rest


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


MAX_GROUP_NODES = 256  # past this a fused chain starts a new kernel: compile time and code size stay bounded


@dataclass
class _Members:
    """A group being formed: its nodes (ascending), domain ``(X, reduced axes or None)`` and roles."""

    nodes: list[int]
    domain: tuple
    roles: dict[int, str]


class _Fusion:
    """Greedy fusion in topological order. Each candidate join is checked incrementally: the new node's
    role and the paths from its own operands, so fusing a long chain costs time linear in its length."""

    def __init__(self, graph: Graph, fuse_gathers: bool):
        self.g = graph
        self.group_of: dict[int, int] = {}
        self.groups: dict[int, _Members] = {}
        self._resolved: dict[int, tuple[int, list[int]]] = {}
        # a gather fuses as an indexed load where its data is one strided view of a buffer; else NumPy runs it
        self.library_gathers = {n.id for n in graph.nodes if n.op == "gather" and not (
            fuse_gathers and len(operand_access(graph, n.src[0])) == 1)}

    def kind(self, i: int) -> str:
        return "library" if i in self.library_gathers else OPS[self.g.nodes[i].op].kind

    def resolve(self, i: int) -> tuple[int, list[int]]:
        if i not in self._resolved:
            self._resolved[i] = resolve(self.g, i)
        return self._resolved[i]

    def _reduce_key(self, r: int) -> tuple:
        nodes = self.g.nodes
        return tuple(nodes[nodes[r].src[0]].shape), tuple(nodes[r].attrs["axes"])

    def domain(self, members) -> tuple | None:
        nodes = self.g.nodes
        reduces = [m for m in members if self.kind(m) == "reduce"]
        if reduces:
            keys = {self._reduce_key(r) for r in reduces}
            return keys.pop() if len(keys) == 1 else None
        shapes = {tuple(nodes[m].shape) for m in members}
        return (shapes.pop(), None) if len(shapes) == 1 else None

    def roles(self, members, dom) -> dict[int, str] | None:
        """Each member's level in a group of these members, or None if they cannot share a kernel."""
        roles: dict[int, str] = {}
        mset = set(members)
        for m in sorted(members):
            role = self._role(m, mset, roles, dom)
            if role is None:
                return None
            roles[m] = role
        return roles

    def _role(self, m: int, mset, roles: Mapping[int, str], dom: tuple) -> str | None:
        """Member ``m``'s level, given the levels of the members it reads, or None if it cannot join."""
        X, A = dom
        nodes = self.g.nodes
        n = nodes[m]
        if n.op == "gather" and self.resolve(n.src[0])[0] in mset:
            return None  # the gathered data is read at any index: it must be a buffer when the kernel starts
        keep = None if A is None else tuple(1 if i in A else d for i, d in enumerate(X))
        want = set()
        for s in n.src:
            base, chain = self.resolve(s)
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
            return None if want - {"full"} else "full"
        if self.kind(m) == "reduce":
            return None if want - {"full"} else "row"
        if want & {"full", "bcast"} or (not want and tuple(n.shape) == X):
            return None if tuple(n.shape) != X or "rowview" in want else "full"
        return "row" if _strip1(n.shape) == _strip1(keep) else None

    def _is_bcast(self, chain, X, keep) -> bool:
        nodes = self.g.nodes
        last = nodes[chain[-1]]
        return (
            last.op == "expand"
            and tuple(last.shape) == X
            and tuple(nodes[last.src[0]].shape) == keep
            and all(nodes[c].op == "reshape" for c in chain[:-1])
        )

    def _reaches(self, starts: list[int], mset, lo: int) -> bool:
        """Whether a path from one of ``starts`` (outside the set) leads back into ``mset``, whose first
        member is ``lo``. Operands come before their users, so no node numbered below ``lo`` is searched."""
        stack, seen = [i for i in starts if i >= lo], set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for s in self.g.nodes[i].src:
                if s in mset:
                    return True
                if s >= lo:
                    stack.append(s)
        return False

    def _outside_operands(self, members, mset) -> list[int]:
        return [b for m in members for b in (self.resolve(s)[0] for s in self.g.nodes[m].src) if b not in mset]

    def join(self, grp: _Members, n: int) -> bool:
        """Add node ``n`` (numbered after all of ``grp``'s members) to ``grp`` if it can join."""
        if len(grp.nodes) >= MAX_GROUP_NODES:
            return False
        X, A = grp.domain
        if self.kind(n) == "reduce" and A is None:  # the group becomes a reduction: every level changes
            nodes = [*grp.nodes, n]
            dom = self.domain(nodes)
            roles = None if dom is None else self.roles(nodes, dom)
            if roles is None or self._reaches(self._outside_operands([n], roles), roles, nodes[0]):
                return False
            grp.nodes, grp.domain, grp.roles = nodes, dom, roles
            return True
        if (self.kind(n) == "reduce" and self._reduce_key(n) != grp.domain) or (
                A is None and tuple(self.g.nodes[n].shape) != X):
            return False
        # n's operands come before it and it reads none of its own outputs, so the members without n
        # decide both its role and whether a path from its operands leads back into the group
        role = self._role(n, grp.roles, grp.roles, grp.domain)
        if role is None or self._reaches(self._outside_operands([n], grp.roles), grp.roles, grp.nodes[0]):
            return False
        grp.nodes.append(n)
        grp.roles[n] = role
        return True

    def merged(self, a: _Members, b: _Members) -> _Members | None:
        """Two groups as one, or None if they cannot share a kernel."""
        if len(a.nodes) + len(b.nodes) > MAX_GROUP_NODES:
            return None
        nodes = sorted(a.nodes + b.nodes)
        mset = set(nodes)
        dom = self.domain(nodes)
        roles = None if dom is None else self.roles(nodes, dom)
        if roles is None or self._reaches(self._outside_operands(nodes, mset), mset, nodes[0]):
            return None
        return _Members(nodes, dom, roles)

    def run(self) -> None:
        for n in self.g.nodes:
            if self.kind(n.id) not in COMPUTE:
                continue
            cands = []
            for s in n.src:
                gid = self.group_of.get(self.resolve(s)[0])
                if gid is not None and gid not in cands:
                    cands.append(gid)
            target = next((c for c in cands if self.join(self.groups[c], n.id)), None)
            if target is None:
                target, dom = n.id, self.domain([n.id])
                self.groups[target] = _Members([n.id], dom, self.roles([n.id], dom))
            self.group_of[n.id] = target
            for h in cands:
                if h != target and h in self.groups:
                    both = self.merged(self.groups[target], self.groups[h])
                    if both is not None:
                        for m in self.groups.pop(h).nodes:
                            self.group_of[m] = target
                        self.groups[target] = both


def operand_access(graph: Graph, s: int) -> V.Access:
    """How a kernel reads operand ``s``: the buffer under it, through the views on top."""
    base, chain = resolve(graph, s)
    acc = V.buffer_access(sym(graph.nodes[base].shape))
    for c in chain:
        acc = V.apply_view(acc, graph.nodes[c].op, graph.nodes[c].attrs, sym(graph.nodes[c].shape))
    return acc


def _gather_reads(graph: Graph, m: int) -> tuple[V.Access, V.Access, dict]:
    """For gather ``m`` (fused as an indexed load): its data's base offset and its indices, both as reads
    over ``m``'s shape ``pre + index + post``, and the memory stride and size of the gathered axis."""
    n = graph.nodes[m]
    data, index, axis = n.src[0], n.src[1], n.attrs["axis"]
    top = operand_access(graph, data)[-1]
    k, post = len(graph.nodes[index].shape), len(graph.nodes[data].shape) - axis - 1
    data_read = (V.View(sym(n.shape), top.strides[:axis] + (0,) * k + top.strides[axis + 1:], top.offset),)
    index_shape = (1,) * axis + sym(graph.nodes[index].shape) + (1,) * post
    index_read = V.expand(V.reshape(operand_access(graph, index), index_shape), sym(n.shape))
    return data_read, index_read, {"stride": top.strides[axis], "size": graph.nodes[data].shape[axis]}


def fuse(graph: Graph, fuse_gathers: bool = True) -> list[Step]:
    """The kernels (and library steps) that compute ``graph``, in an order that respects dependencies.
    ``fuse_gathers=False`` leaves every gather to the library (the NumPy target)."""
    f = _Fusion(graph, fuse_gathers)
    f.run()
    consumers: dict[int, set[int]] = {}
    for n in graph.nodes:
        if n.op in VIEW_OPS:
            continue
        for s in n.src:
            consumers.setdefault(resolve(graph, s)[0], set()).add(n.id)
    outputs = {resolve(graph, i)[0] for i in graph.outputs.values()}
    steps: list[Step] = []
    for members in (list(grp.nodes) for grp in f.groups.values()):
        stored = [m for m in members if m in outputs or any(f.group_of.get(u) != f.group_of[m]
                                                             for u in consumers.get(m, ()))]
        steps.append(_lower(f, sorted(members), stored))
    for n in graph.nodes:
        if OPS[n.op].kind in ("matmul", "concat") or n.id in f.library_gathers:
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
    if g.domain != tuple(n.shape) or not reads or any(ld.operand != mm or ld.level != "full" or ld.indexed
                                                      for ld in reads):
        return False  # the product read through a view (transposed, sliced) could need other threads' rows
    rows = sym(n.shape)[0]
    if g.kind == "elementwise":
        return g.outer in ((), (rows,))
    return g.n_reduced == 1 and g.perm == (0, 1) and g.outer == (rows,)


def _lower(f: _Fusion, members: list[int], stored: list[int]) -> Group:
    g, nodes = f.g, f.g.nodes
    grp = f.groups[f.group_of[members[0]]]
    roles, (X, A) = grp.roles, grp.domain
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

    def leaf(s: int, level: str, access: V.Access | None = None, indexed: bool = False) -> tuple[str, int]:
        """The argument reading operand ``s`` (through ``access`` where given, mapped onto the statement)."""
        base, _ = resolve(g, s)
        if base in mset:
            return "stmt", base
        value = uniform_value(g.constants[base]) if nodes[base].op == "const" else None
        if value is not None and not indexed:
            load = Load(None, None, nodes[s].dtype, level, s, value)
        else:
            symbols.update(d for d in nodes[base].shape if isinstance(d, str))
            load = Load(base, place(access or operand_access(g, s), level), nodes[s].dtype, level, s,
                        indexed=indexed)
        key = (load.buf, load.access, load.dtype, load.level, repr(load.value), load.indexed)
        if key not in load_index:
            load_index[key] = len(loads)
            loads.append(load)
        return "load", load_index[key]

    for m in members:
        n = nodes[m]
        level = "full" if f.kind(m) == "reduce" else roles[m]
        attrs = n.attrs
        if n.op == "gather":
            data_read, index_read, axis_attrs = _gather_reads(g, m)
            args = [leaf(n.src[0], level, data_read, indexed=True), leaf(n.src[1], level, index_read)]
            attrs = {**n.attrs, **axis_attrs}
        else:
            args = [leaf(s, level) for s in n.src]
        stmts.append(Stmt(m, n.op, tuple(args), n.dtype, attrs, roles[m]))
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
    loads = [ld if ld.access is None else Load(ld.buf, next(it), ld.dtype, ld.level, ld.operand, indexed=ld.indexed)
             for ld in loads]
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
    """Topological order of steps (each after the producers of what it reads), the earliest-numbered
    ready step first."""
    producer = {}
    for k, st in enumerate(steps):
        for node in (st.node,) if isinstance(st, LibraryStep) else st.nodes:
            producer[node] = k
    waiting = [0] * len(steps)
    users: list[list[int]] = [[] for _ in steps]
    for k, st in enumerate(steps):
        reads = [ld.buf for ld in st.loads if ld.buf is not None] if isinstance(st, Group) else [
            resolve(graph, s)[0] for s in graph.nodes[st.node].src]
        for p in {producer[b] for b in reads if b in producer}:
            waiting[k] += 1
            users[p].append(k)
    first = [min(st.nodes) if isinstance(st, Group) else st.node for st in steps]
    ready = [(first[k], k) for k in range(len(steps)) if waiting[k] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, k = heapq.heappop(ready)
        order.append(steps[k])
        for u in users[k]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (first[u], u))
    return order


def has_gather(group: Group) -> bool:
    """Whether the kernel gathers (and so takes an error slot for an index out of range)."""
    return any(s.op == "gather" for s in group.stmts)


def buffers(group: Group) -> tuple[list[int], list[int]]:
    """The buffers a kernel takes, in argument order: those it reads, then those it writes."""
    reads = list(dict.fromkeys(ld.buf for ld in group.loads if ld.buf is not None))
    return reads, [st.node for st in group.stores]
