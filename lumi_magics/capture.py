"""Cell capture: which names a cell reads and binds, and its computation as a graph.

Inputs are the names a cell reads before assigning them that exist in the user namespace;
outputs are the names it binds by assignment (plain, augmented, annotated, tuple, and item
assignment ``y[i] = v``, which a traced cell records as a new value of ``y``); dicts, lists and
tuples of arrays among the inputs (nested weights) become one graph input per array. Imports,
functions and classes the cell defines are replayed in the user namespace afterwards.
"""

from __future__ import annotations

import ast
import builtins
import linecache
from dataclasses import dataclass, field

import numpy as np
from lumi.graph import shapes as S
from lumi.graph.ir import Graph
from lumi.graph.tensor import CELL_FILENAME, Tensor
from lumi.graph.trace import Tracer, flatten

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


def _updated(target: ast.AST) -> list[str]:
    """The name an item assignment updates (``y`` in ``y[0, :2] = v`` or ``y[1:] += v``)."""
    while isinstance(target, ast.Subscript):
        target = target.value
    return [target.id] if isinstance(target, ast.Name) else []


def _binds(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Assign):
        return [n for t in stmt.targets for n in _target_names(t) + _updated(t)]
    if isinstance(stmt, ast.AugAssign | ast.AnnAssign) and (not isinstance(stmt, ast.AnnAssign) or stmt.value):
        return _target_names(stmt.target) + _updated(stmt.target)
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
    containers: dict[str, object]  # output name -> its dicts/lists/tuples, with graph output keys for the arrays


@dataclass(frozen=True)
class _Output:
    key: str  # the graph output holding this array


def _split(key: str, value, outputs: dict):
    """``value`` with every traced array in it (through dicts, lists and tuples) moved to ``outputs`` under a
    key named by its path, and replaced by that key."""
    if isinstance(value, Tensor):
        outputs[key] = value
        return _Output(key)
    if isinstance(value, dict):
        return {k: _split(f"{key}.{k}", v, outputs) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_split(f"{key}[{i}]", v, outputs) for i, v in enumerate(value))
    return value


def _join(template, results: dict):
    """The inverse of :func:`_split`, with NumPy results in place of the traced arrays."""
    if isinstance(template, _Output):
        return results[template.key]
    if isinstance(template, dict):
        return {k: _join(v, results) for k, v in template.items()}
    if type(template) in (list, tuple):
        return type(template)(_join(v, results) for v in template)
    return template


def _traceable(value) -> bool:
    """An array the graph can take, or a dict, list or tuple of such arrays (nested weights)."""
    if isinstance(value, np.ndarray):
        return value.dtype.name in ("float16", "float32", "float64", "int32", "int64", "bool")
    leaves = flatten("", value)
    return bool(leaves) and all(_traceable(a) for a in leaves.values())


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
        if _traceable(namespace[name]):  # one graph input per array, named by its path (params.blocks.0.w)
            scope[name] = tracer.input_tree(name, namespace[name])
            arrays.extend(flatten(name, namespace[name]).values())
    linecache.cache[CELL_FILENAME] = (len(source), None, source.splitlines(True), CELL_FILENAME)
    exec(compile(source, CELL_FILENAME, "exec"), scope)
    outputs, local, containers = {}, {}, {}
    for name in info.outputs:
        if name not in scope:
            continue
        value = scope[name]
        if isinstance(value, Tensor):
            outputs[name] = value
            continue
        traced = len(outputs)
        template = _split(name, value, outputs)
        if len(outputs) > traced:  # a dict, list or tuple holding traced arrays
            containers[name] = template
        else:
            local[name] = value
    graph = tracer.graph(outputs) if outputs else None
    return TracedCell(info, graph, arrays, local, containers)


def results_to_namespace(cell: TracedCell, results: list[np.ndarray]) -> dict:
    """Map graph results back to the cell's output names (and into the containers that held them)."""
    by_key = dict(zip(cell.graph.outputs, results)) if cell.graph else {}
    values = dict(cell.local_values)
    for name in cell.info.outputs:
        if name in cell.containers:
            values[name] = _join(cell.containers[name], by_key)
        elif name in by_key:
            values[name] = by_key[name]
    return values
