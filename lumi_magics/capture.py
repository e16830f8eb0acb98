"""Cell capture: which names a cell reads and binds, and its computation as a graph.

Inputs are the names a cell reads before assigning them that exist in the user namespace;
outputs are the names it binds by assignment (plain, augmented, annotated, tuple). Imports,
functions and classes the cell defines are replayed in the user namespace afterwards.
"""

from __future__ import annotations

import ast
import builtins
import linecache
from dataclasses import dataclass, field

import numpy as np
from lumi.errors import TraceError
from lumi.graph import shapes as S
from lumi.graph.ir import Graph
from lumi.graph.tensor import CELL_FILENAME, Tensor
from lumi.graph.trace import Tracer

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)
_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _reads(node: ast.AST) -> list[str]:
    """Names read by ``node``, leaving out those a nested scope binds for itself."""
    if isinstance(node, ast.Name):
        return [node.id] if isinstance(node.ctx, ast.Load) else []
    loads = [name for child in ast.iter_child_nodes(node) for name in _reads(child)]
    if isinstance(node, _SCOPES):
        own = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            own |= {arg.arg for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if arg}
        loads = [name for name in loads if name not in own]
    return loads


def _binds(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Assign):
        return [n for t in stmt.targets for n in _target_names(t)]
    if isinstance(stmt, ast.AugAssign | ast.AnnAssign) and (not isinstance(stmt, ast.AnnAssign) or stmt.value):
        return _target_names(stmt.target)
    if isinstance(stmt, ast.For | ast.AsyncFor):
        return _target_names(stmt.target) + [n for s in stmt.body + stmt.orelse for n in _binds(s)]
    if isinstance(stmt, ast.If | ast.While | ast.With | ast.Try):
        bodies = [stmt.body, getattr(stmt, "orelse", []), getattr(stmt, "finalbody", [])]
        return [n for body in bodies for s in body for n in _binds(s)]
    return []


def _defines(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in stmt.names]
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    return []


@dataclass
class CellInfo:
    """What a cell reads from and writes to the user namespace."""

    source: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    definitions: list[str] = field(default_factory=list)
    definition_source: str = ""


def analyze(source: str, namespace: dict) -> CellInfo:
    """Find a cell's inputs and outputs (raises ``SyntaxError`` as Python would)."""
    tree = ast.parse(source, CELL_FILENAME)
    bound: set[str] = set()
    info = CellInfo(source)
    defs = []
    for stmt in tree.body:
        for name in ([stmt.target.id] if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name)
                     else []) + _reads(stmt):
            if name not in bound and name not in info.inputs and name in namespace:
                info.inputs.append(name)
        for name in _binds(stmt):
            bound.add(name)
            if name not in info.outputs:
                info.outputs.append(name)
        if isinstance(stmt, _DEFINITIONS):
            defs.append(stmt)
            for name in _defines(stmt):
                bound.add(name)
                info.definitions.append(name)
    info.inputs = [n for n in info.inputs if not (hasattr(builtins, n) and n not in namespace)]
    info.definition_source = ast.unparse(ast.Module(body=defs, type_ignores=[])) if defs else ""
    return info


@dataclass
class TracedCell:
    """A cell as a graph: its array inputs, graph outputs, and values computed while tracing."""

    info: CellInfo
    graph: Graph | None
    arrays: list[np.ndarray]
    local_values: dict
    groups: dict[str, tuple[str, list[str]]]  # output name -> (tuple|list, graph output names)


def _traceable(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.name in (
        "float16", "float32", "float64", "int32", "int64", "bool")


def describe(tensor: Tensor) -> str:
    """What ``print`` shows for a traced array: its dtype and shape, where it was traced, and when values exist."""
    loc = tensor.builder.nodes[tensor.id].loc
    where = f"traced at {loc}" if loc else "an input of the cell"
    return (f"lumi.Tensor {tensor.dtype.name}{S.fmt(tensor.shape)} ({where}; values are only available after the "
            "run, when the cell's variables come back as NumPy arrays)")


def _trace_print(*values, **kwargs) -> None:
    builtins.print(*(describe(v) if isinstance(v, Tensor) else v for v in values), **kwargs)


def trace_cell(source: str, namespace: dict) -> TracedCell:
    """Run the cell on lazy tensors; NumPy arrays it reads become graph inputs. ``print`` of a traced
    array shows what it is (its values do not exist yet)."""
    info = analyze(source, namespace)
    tracer = Tracer()
    scope = dict(namespace)
    scope.setdefault("print", _trace_print)
    arrays = []
    for name in info.inputs:
        if _traceable(namespace[name]):
            scope[name] = tracer.input(name, namespace[name])
            arrays.append(namespace[name])
    linecache.cache[CELL_FILENAME] = (len(source), None, source.splitlines(True), CELL_FILENAME)
    exec(compile(source, CELL_FILENAME, "exec"), scope)
    outputs, local, groups = {}, {}, {}
    for name in info.outputs:
        value = scope.get(name)
        if isinstance(value, Tensor):
            outputs[name] = value
        elif isinstance(value, tuple | list) and any(isinstance(v, Tensor) for v in value):
            keys = [f"{name}[{i}]" for i in range(len(value))]
            outputs.update(zip(keys, value))
            groups[name] = (type(value).__name__, keys)
        elif name in scope:
            local[name] = value
    for name, value in local.items():
        if isinstance(value, dict) and any(isinstance(v, Tensor) for v in value.values()):
            raise TraceError(f"output {name!r} holds traced arrays inside a dict; bind each array to its own name")
    graph = tracer.graph(outputs) if outputs else None
    return TracedCell(info, graph, arrays, local, groups)


def results_to_namespace(cell: TracedCell, results: list[np.ndarray]) -> dict:
    """Map graph results back to the cell's output names."""
    by_key = dict(zip(cell.graph.outputs, results)) if cell.graph else {}
    values = dict(cell.local_values)
    for name in cell.info.outputs:
        if name in cell.groups:
            kind, keys = cell.groups[name]
            seq = [by_key[k] for k in keys]
            values[name] = tuple(seq) if kind == "tuple" else seq
        elif name in by_key:
            values[name] = by_key[name]
    return values
