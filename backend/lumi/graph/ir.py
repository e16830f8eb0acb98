"""The graph IR: nodes in topological order, named inputs and outputs, constants, a content hash."""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import LumiError, ShapeError
from . import shapes as S
from .dtypes import DTYPES, dtype_name
from .ops import OPS, infer


@dataclass(frozen=True, eq=False)
class Node:
    """One primitive op applied to earlier nodes. ``loc`` names the source line that made it."""

    id: int
    op: str
    src: tuple[int, ...]
    shape: S.Shape
    dtype: str
    attrs: Mapping = field(default_factory=dict)
    loc: str | None = None

    def __repr__(self) -> str:
        src = ", ".join(f"%{s}" for s in self.src)
        attrs = "".join(f" {k}={v}" for k, v in self.attrs.items())
        return f"%{self.id} = {self.op}({src}){attrs} : {self.dtype}{S.fmt(self.shape)}"


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def array_digest(a: np.ndarray) -> str:
    a = np.asarray(a, order="C")
    return hashlib.sha256(a.dtype.str.encode() + repr(a.shape).encode() + a.tobytes()).hexdigest()


def node_key(op: str, src_keys: Sequence[str], shape, dtype: str, attrs: Mapping, data: str | None = None) -> str:
    """Structural key of a node: equal keys compute equal values (hash-consing uses it)."""
    return _digest(op, list(src_keys), list(shape), dtype, dict(attrs), data)


CompiledRunner = Callable[["Graph", str, Sequence[np.ndarray], Mapping[str, int]], list]
_compiled_runner: CompiledRunner | None = None


def register_compiled_runner(run: CompiledRunner) -> None:
    """How graphs run on compiled backends: ``run(graph, backend, values, bindings)``. The compiler
    registers itself when imported, so the graph layer never imports the layer above it."""
    global _compiled_runner
    _compiled_runner = run


class Graph:
    """A traced computation. Call it like a function; export it to a ``.lumi`` file."""

    def __init__(
        self,
        nodes: Sequence[Node],
        inputs: Mapping[str, int],
        outputs: Mapping[str, int],
        constants: Mapping[int, np.ndarray],
    ):
        self.nodes = tuple(nodes)
        self.inputs = dict(inputs)
        self.outputs = dict(outputs)
        self.constants = dict(constants)
        self._validate()
        self._keys: list[str] | None = None
        self._pickled: bytes | None = None

    # -- identity -------------------------------------------------------------------------
    def node_keys(self) -> list[str]:
        """Per-node structural keys (content hashes), in node order."""
        if self._keys is None:
            keys: list[str] = []
            for n in self.nodes:
                data = array_digest(self.constants[n.id]) if n.op == "const" else None
                keys.append(node_key(n.op, [keys[s] for s in n.src], n.shape, n.dtype, n.attrs, data))
            self._keys = keys
        return self._keys

    @property
    def hash(self) -> str:
        """Content hash: the same computation traced twice hashes equal."""
        keys = self.node_keys()
        return _digest(
            [[k, keys[i]] for k, i in self.inputs.items()], [[k, keys[i]] for k, i in self.outputs.items()]
        )

    def __reduce__(self):
        """Pickled once per graph object, and unpickled once per process for small graphs (see
        :func:`_unpickled`): a job's graph crosses the client, the dispatcher, its journal and a worker."""
        if self.__dict__.get("_pickled") is None:  # (a graph journaled by an older Lumi has no such attribute)
            state = (self.nodes, self.inputs, self.outputs, self.constants, self.node_keys())
            self._pickled = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        return _unpickled, (self._pickled,)

    # -- signature ------------------------------------------------------------------------
    def input_specs(self) -> list[tuple[str, S.Shape, str]]:
        return [(name, self.nodes[i].shape, self.nodes[i].dtype) for name, i in self.inputs.items()]

    def output_specs(self) -> list[tuple[str, S.Shape, str]]:
        return [(name, self.nodes[i].shape, self.nodes[i].dtype) for name, i in self.outputs.items()]

    def bind_inputs(self, arrays: Sequence, named: Mapping | None = None) -> tuple[list[np.ndarray], dict[str, int]]:
        """Check arrays against the declared inputs; return them in order with symbol values."""
        specs = self.input_specs()
        named = dict(named or {})
        if len(arrays) > len(specs):
            raise ShapeError(f"graph takes {len(specs)} inputs ({', '.join(n for n, *_ in specs)}), got {len(arrays)}")
        values = list(arrays) + [named.pop(n) for n, *_ in specs[len(arrays) :] if n in named]
        if named:
            raise ShapeError(f"unknown input names {sorted(named)}; inputs are {[n for n, *_ in specs]}")
        if len(values) != len(specs):
            missing = [n for n, *_ in specs[len(values) :]]
            raise ShapeError(f"missing inputs {missing}")
        bindings: dict[str, int] = {}
        out = []
        for (name, shape, dtype), v in zip(specs, values):
            a = np.asarray(v)
            if not a.dtype.isnative:  # same values in this machine's byte order: nothing is reinterpreted
                a = a.astype(a.dtype.newbyteorder("="))
            if a.dtype.name != dtype:
                raise ShapeError(
                    f"input {name!r} expects {dtype}{S.fmt(shape)}, got {a.dtype.name}{S.fmt(a.shape)}; "
                    f"convert with .astype(np.{dtype})"
                )
            S.bind(shape, a.shape, bindings, f"input {name!r}")
            out.append(a)
        return out, bindings

    # -- running and saving ----------------------------------------------------------------
    def __call__(self, *arrays, **named):
        """Run on the best local backend."""
        return self.run(*arrays, backend="auto", **named)

    def run(self, *arrays, backend: str = "numpy", **named):
        """Run on ``backend``: "numpy" (the reference interpreter), "cpu", "cuda", or "auto" (the best
        compiled target here: cuda with a GPU, else cpu with a C compiler, else blocked NumPy)."""
        from .interpret import interpret

        values, bindings = self.bind_inputs(arrays, named)
        if backend == "numpy":
            results = interpret(self, values, bindings)
        elif _compiled_runner is None:
            raise LumiError(f"backend {backend!r} needs Lumi's compiler: import lumi (or lumi.compiler) first")
        else:
            results = _compiled_runner(self, backend, values, bindings)
        return results[0] if len(results) == 1 else tuple(results)

    def export(self, path) -> None:
        """Write this graph as one ``.lumi`` file (safetensors with the graph in its metadata)."""
        from .fileformat import save

        save(self, path)

    def __repr__(self) -> str:
        sig = ", ".join(f"{n}: {d}{S.fmt(s)}" for n, s, d in self.input_specs())
        outs = ", ".join(f"{n}: {d}{S.fmt(s)}" for n, s, d in self.output_specs())
        return f"<lumi.Graph ({sig}) -> ({outs}), {len(self.nodes)} nodes, {self.hash[:12]}>"

    def listing(self) -> str:
        """The nodes, one per line."""
        return "\n".join(map(repr, self.nodes))

    # -- checks ---------------------------------------------------------------------------
    def _validate(self) -> None:
        for i, n in enumerate(self.nodes):
            where = f"node {i} ({n.op})"
            if n.id != i:
                raise ShapeError(f"{where}: id {n.id} out of order; nodes must be numbered 0..n-1")
            if n.op not in OPS:
                raise ShapeError(f"{where}: unknown op")
            if any(not isinstance(s, int) or not 0 <= s < i for s in n.src):
                raise ShapeError(f"{where}: operands {list(n.src)} must refer to earlier nodes")
            if n.dtype not in DTYPES:
                raise ShapeError(f"{where}: unknown dtype {n.dtype}")
            S.check_shape(n.shape)
            if n.op == "const":
                c = self.constants.get(i)
                if c is None or tuple(c.shape) != tuple(n.shape) or c.dtype.name != n.dtype:
                    raise ShapeError(f"{where}: constant data missing or not {n.dtype}{S.fmt(n.shape)}")
            elif n.op == "input":
                if self.inputs.get(n.attrs.get("name")) != i:
                    raise ShapeError(f"{where}: input node is not registered under its name")
            else:
                shape, dtype = infer(
                    n.op, [self.nodes[s].shape for s in n.src], [self.nodes[s].dtype for s in n.src], n.attrs
                )
                if tuple(shape) != tuple(n.shape) or dtype != n.dtype:
                    raise ShapeError(
                        f"{where}: declared {n.dtype}{S.fmt(n.shape)} but operands give {dtype}{S.fmt(shape)}"
                    )
        for name, i in {**self.inputs, **self.outputs}.items():
            if not isinstance(i, int) or not 0 <= i < len(self.nodes):
                raise ShapeError(f"input or output {name!r} refers to missing node {i}")
        for name, i in self.inputs.items():
            if self.nodes[i].op != "input":
                raise ShapeError(f"input {name!r} refers to a {self.nodes[i].op} node")
        if not self.outputs:
            raise ShapeError("a graph needs at least one output")


_SHARED_PICKLE_BYTES = 64 << 10  # graphs pickled this small are unpickled once per process and shared


def _unpickled(data: bytes) -> Graph:
    """The graph ``data`` holds (see ``Graph.__reduce__``); a small one is the same object each time, since
    graphs do not change once built."""
    return _shared_graph(data) if len(data) <= _SHARED_PICKLE_BYTES else _graph_from(data)


def _graph_from(data: bytes) -> Graph:
    nodes, inputs, outputs, constants, keys = pickle.loads(data)
    graph = Graph(nodes, inputs, outputs, constants)
    graph._keys, graph._pickled = keys, data
    return graph


_shared_graph = functools.lru_cache(maxsize=256)(_graph_from)


class GraphBuilder:
    """Appends nodes with shape and dtype inference, sharing structurally equal ones."""

    def __init__(self):
        self.nodes: list[Node] = []
        self.inputs: dict[str, int] = {}
        self.constants: dict[int, np.ndarray] = {}
        self._keys: list[str] = []
        self._by_key: dict[str, int] = {}

    def _append(self, op, src, shape, dtype, attrs, loc, data=None) -> int:
        key = node_key(op, [self._keys[s] for s in src], shape, dtype, attrs, data)
        if key in self._by_key:
            return self._by_key[key]
        i = len(self.nodes)
        self.nodes.append(Node(i, op, tuple(src), tuple(shape), dtype, dict(attrs), loc))
        self._keys.append(key)
        self._by_key[key] = i
        return i

    def input(self, name: str, shape, dtype: str) -> int:
        if name in self.inputs:
            raise ShapeError(f"two inputs named {name!r}")
        i = self._append("input", (), S.check_shape(shape), dtype_name(dtype), {"name": name}, None)
        self.inputs[name] = i
        return i

    def const(self, value, loc: str | None = None) -> int:
        a = np.asarray(value)
        a = np.asarray(a.astype(dtype_name(a.dtype), copy=False), order="C")
        i = self._append("const", (), a.shape, a.dtype.name, {}, loc, array_digest(a))
        self.constants.setdefault(i, a)
        return i

    def add(self, op: str, src: Sequence[int], attrs: Mapping | None = None, loc: str | None = None) -> int:
        attrs = dict(attrs or {})
        shape, dtype = infer(op, [self.nodes[s].shape for s in src], [self.nodes[s].dtype for s in src], attrs)
        return self._append(op, src, shape, dtype, attrs, loc)

    def shape(self, i: int) -> S.Shape:
        return self.nodes[i].shape

    def dtype(self, i: int) -> str:
        return self.nodes[i].dtype

    def build(self, outputs: Mapping[str, int]) -> Graph:
        """The graph of everything the outputs and inputs need, renumbered densely."""
        live = set(self.inputs.values())
        stack = list(outputs.values())
        while stack:
            i = stack.pop()
            if i not in live:
                live.add(i)
                stack.extend(self.nodes[i].src)
        renum: dict[int, int] = {}
        nodes = []
        for n in self.nodes:
            if n.id in live:
                renum[n.id] = len(nodes)
                nodes.append(Node(len(nodes), n.op, tuple(renum[s] for s in n.src), n.shape, n.dtype, n.attrs, n.loc))
        return Graph(
            nodes,
            {k: renum[v] for k, v in self.inputs.items()},
            {k: renum[v] for k, v in outputs.items()},
            {renum[k]: v for k, v in self.constants.items() if k in live},
        )
