"""What C and CUDA C++ share: types, literals, op expressions and index arithmetic for the group IR.

A :class:`Dialect` holds the few spellings that differ; :class:`Body` writes the statements
of one group (loads, computed values, reduction phases) for either loop structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedOperation
from . import views as V
from .groups import Group, Load, Stmt, buffers

_FLOAT_SUFFIX = {"float16": "f", "float32": "f", "float64": ""}


@dataclass(frozen=True)
class Dialect:
    storage: dict
    compute: dict
    index: str  # the 64-bit integer type
    inf: dict  # float dtype -> +inf literal
    nan: dict
    load_half: str  # format strings over {x}
    store_half: str
    round_half: str
    exp_prefix: str = ""  # the C target calls its own lumi_exp (see render_c.PRELUDE)

    def load(self, ptr: str, index: str, dtype: str) -> str:
        x = f"{ptr}[{index}]"
        return self.load_half.format(x=x) if dtype == "float16" else x

    def store(self, value: str, dtype: str) -> str:
        return self.store_half.format(x=value) if dtype == "float16" else f"({self.storage[dtype]})({value})"


def literal(value, dtype: str, d: Dialect) -> str:
    if dtype in _FLOAT_SUFFIX:
        v = float(value)
        if math.isnan(v):
            return d.nan[dtype]
        if math.isinf(v):
            return d.inf[dtype] if v > 0 else f"(-{d.inf[dtype]})"
        if dtype != "float64":
            v = float(np.float32(v))
            return f"{v!r}f"
        return repr(v)
    if dtype == "bool":
        return "1" if bool(value) else "0"
    return f"(({d.compute[dtype]}){int(value)}LL)"


def op_expr(s: Stmt, a: list[str], in_dtype: str, d: Dialect) -> str:
    """The C expression of one primitive over operand expressions ``a`` (already in compute types)."""
    op, fsfx = s.op, _FLOAT_SUFFIX.get(s.dtype, "")
    if op == "exp" and d.exp_prefix:
        return f"{d.exp_prefix}exp{fsfx}({a[0]})"
    if op in ("exp", "log", "sqrt", "tanh", "erf", "sin"):
        return f"{op}{fsfx}({a[0]})"
    if op == "recip":
        return f"({literal(1, s.dtype, d)}/{a[0]})"
    if op in ("add", "sub", "mul", "div"):
        sign = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[op]
        if s.dtype == "bool":
            sign = {"add": "|", "mul": "&"}.get(op, sign)
        return f"({a[0]}{sign}{a[1]})"
    if op == "maximum":
        nan = f"||{a[0]}!={a[0]}" if in_dtype in _FLOAT_SUFFIX else ""
        return f"(({a[0]}>{a[1]}{nan})?{a[0]}:{a[1]})"
    if op == "pow":
        return f"pow{fsfx}({a[0]},{a[1]})" if s.dtype in _FLOAT_SUFFIX else f"lumi_ipow({a[0]},{a[1]})"
    if op == "cmplt":
        return f"({a[0]}<{a[1]})"
    if op == "cmpeq":
        return f"({a[0]}=={a[1]})"
    if op == "where":
        return f"({a[0]}?{a[1]}:{a[2]})"
    if op == "cast":
        if s.dtype == "bool":
            return f"({a[0]}!=0)"
        if s.dtype == "float16":
            return d.round_half.format(x=f"(float)({a[0]})")
        return f"(({d.compute[s.dtype]})({a[0]}))"
    raise UnsupportedOperation(f"the C/CUDA renderers have no expression for op {op!r}; every elementwise "
                               "primitive in graph/ops.py needs one here")


def reduce_init(op: str, dtype: str, d: Dialect) -> str:
    if op == "sum":
        return literal(0, dtype, d)
    if dtype in _FLOAT_SUFFIX:
        return f"(-{d.inf[dtype]})"
    if dtype == "bool":
        return "0"
    return {"int32": "(-2147483647-1)", "int64": "(-9223372036854775807LL-1)"}[dtype]


def unravel(flat: str, dims, names: list[str], itype: str) -> list[str]:
    """Lines that split a flat index over ``dims`` (row-major) into the variables ``names``."""
    if not dims:
        return []
    if len(dims) == 1:
        return [f"const {itype} {names[0]} = {flat};"]
    lines = [f"{itype} {flat}_t = {flat};"]
    for name, dim in zip(reversed(names[1:]), reversed(dims[1:])):
        lines.append(f"const {itype} {name} = {flat}_t % {_c(dim)}; {flat}_t /= {_c(dim)};")
    lines.append(f"const {itype} {names[0]} = {flat}_t;")
    return lines


def _c(x: V.Expr) -> str:
    return str(x) if isinstance(x, int) else f"({x})"


def _affine(view: V.View, idx: list[str]) -> str:
    terms = [] if view.offset == 0 else [_c(view.offset)]
    for i, st in zip(idx, view.strides):
        if st != 0 and i != "0":
            terms.append(i if st == 1 else f"{i}*{_c(st)}")
    return "+".join(terms) or "0"


def index_expr(acc: V.Access, idx: list[str]) -> str:
    """The element offset an access reads at loop indices ``idx`` (one name per domain dim)."""
    x = _affine(acc[-1], idx)
    for view in reversed(acc[:-1]):
        parts, rest = [], f"({x})"
        for k in range(len(view.shape) - 1, -1, -1):
            parts.append(f"({rest}%{_c(view.shape[k])})" if k else rest)
            rest = f"({rest}/{_c(view.shape[k])})"
        x = _affine(view, parts[::-1])
    return x


def inner_is_zero(acc: V.Access, n_outer: int) -> bool:
    return len(acc) == 1 and all(s == 0 for s in acc[-1].strides[n_outer:])


def split_index(acc: V.Access, n_outer: int, idx: list[str]) -> tuple[str, str] | None:
    """(row base, inner part) of a one-view access, so the base is computed once per row."""
    if len(acc) != 1:
        return None
    top = acc[0]
    base = V.View(top.shape[:n_outer], top.strides[:n_outer], top.offset)
    inner = V.View(top.shape[n_outer:], top.strides[n_outer:], 0)
    return _affine(base, idx[:n_outer]), _affine(inner, idx[n_outer:])


class Body:
    """Writes the statements of one group; the renderers supply the loops around them."""

    def __init__(self, group: Group, d: Dialect, ptrs: dict[int, str]):
        self.g, self.d, self.ptrs = group, d, ptrs
        self.by_node = {s.node: s for s in group.stmts}
        # values are named by their place in the group, not their graph node id: a repeated layer's
        # kernels then have one source, and are compiled once
        self._local = {s.node: k for k, s in enumerate(group.stmts)}
        n_out = len(group.outer)
        self.outer_idx = [f"o{k}" for k in range(n_out)]
        self.inner_idx = [f"r{k}" for k in range(len(group.inner))]
        self.row_suffix = ""  # "[j]" where row values are arrays over a block of columns

    def n(self, node: int) -> int:
        """The local number of the value statement ``node`` computes (``v<n>``, ``acc<n>``)."""
        return self._local[node]

    def ctype(self, dtype: str) -> str:
        return self.d.compute[dtype]

    def arg(self, ref: tuple[str, int]) -> str:
        kind, i = ref
        if kind == "load":
            return f"b{i}" if self.g.loads[i].indexed else f"l{i}"
        return f"v{self.n(i)}{self.row_suffix}" if self.by_node[i].level == "row" else f"v{self.n(i)}"

    def arg_dtype(self, ref: tuple[str, int]) -> str:
        kind, i = ref
        return self.by_node[i].dtype if kind == "stmt" else self.g.loads[i].dtype

    def load_line(self, k: int, ld: Load, row_context: bool) -> str:
        if ld.buf is None:
            return f"const {self.ctype(ld.dtype)} l{k} = {literal(ld.value, ld.dtype, self.d)};"
        idx = self.outer_idx + (["0"] * len(self.inner_idx) if row_context else self.inner_idx)
        if ld.indexed:  # a gather's data: only the offset of its row; the gather adds the index
            return f"const {self.d.index} b{k} = {index_expr(ld.access, idx)};"
        value = self.d.load(self.ptrs[ld.buf], index_expr(ld.access, idx), ld.dtype)
        return f"const {self.ctype(ld.dtype)} l{k} = {value};"

    def stmt_line(self, s: Stmt) -> str:
        a = [self.arg(r) for r in s.args]
        if s.op == "gather":
            value = self._gather(s, a)
        else:
            value = op_expr(s, a, self.arg_dtype(s.args[0]), self.d)
        if self._float_int_float(s):
            # compilers turn float -> int -> float into trunc(), which keeps a negative sign on zero; an int is
            # never -0.0 (NumPy gives +0.0), so a zero int gives +0.0
            value = f"({a[0]} == 0 ? ({self.ctype(s.dtype)})0 : {value})"
        if s.level == "row" and self.row_suffix:
            return f"v{self.n(s.node)}{self.row_suffix} = {value};"
        return f"const {self.ctype(s.dtype)} v{self.n(s.node)} = {value};"

    def _float_int_float(self, s: Stmt) -> bool:
        """Whether ``s`` casts to float an int this kernel itself cast from a float."""
        kind, i = s.args[0]
        inner = self.by_node.get(i) if kind == "stmt" else None
        return (s.op == "cast" and s.dtype in _FLOAT_SUFFIX and inner is not None and inner.op == "cast"
                and inner.dtype not in _FLOAT_SUFFIX and inner.dtype != "bool" and self.arg_dtype(inner.args[0])
                in _FLOAT_SUFFIX)

    def _gather(self, s: Stmt, a: list[str]) -> str:
        # lumi_index wraps negative indices and turns one out of range into 0, recording it in lumi_err,
        # so nothing outside the data is ever read; the runner raises after the kernel
        data = self.g.loads[s.args[0][1]]
        index = f"lumi_index(({self.d.index})({a[1]}), {s.attrs['size']}, lumi_err, {self.n(s.node)})"
        at = f"{a[0]} + {index} * {dim(s.attrs['stride'])}"
        return self.d.load(self.ptrs[data.buf], at, data.dtype)

    def cone(self, targets: list[tuple[str, int]], have: set) -> list[str]:
        """Lines computing the full-level values ``targets`` need, given values already in ``have``.

        A depth-first walk with an explicit stack: a fused chain can be thousands of statements deep.
        """
        lines, seen = [], set(have)
        for target in targets:
            stack = [(target, False)]
            while stack:
                ref, operands_done = stack.pop()
                kind, i = ref
                if operands_done:
                    lines.append(self.stmt_line(self.by_node[i]))
                    continue
                if ref in seen:
                    continue
                seen.add(ref)
                if kind == "load":
                    lines.append(self.load_line(i, self.g.loads[i], row_context=False))
                elif self.by_node[i].level != "row":  # row values are computed once per row, before the loop
                    stack.append((ref, True))
                    stack.extend((r, False) for r in reversed(self.by_node[i].args))
        return lines

    def row_ready(self, have: set) -> list[str]:
        """Row-level statements whose operands are all computed, in order; adds them to ``have``."""
        lines = []
        loaded = set() if self.row_suffix else have  # row values in arrays: each block is its own C scope
        for s in self.g.stmts:
            if s.level != "row" or s.op in ("sum", "max") or ("stmt", s.node) in have:
                continue
            if all(r in have or r[0] == "load" for r in s.args):
                for r in s.args:
                    if r[0] == "load" and r not in loaded:
                        lines.append(self.load_line(r[1], self.g.loads[r[1]], row_context=True))
                        loaded.add(r)
                lines.append(self.stmt_line(s))
                have.add(("stmt", s.node))
        return lines

    def reduces(self) -> list[Stmt]:
        return [s for s in self.g.stmts if s.op in ("sum", "max")]

    def acc_type(self, dtype: str) -> str:
        return "int" if dtype == "bool" else self.ctype(dtype)

    def reduced(self, s: Stmt, acc: str) -> str:
        """A reduction's result from its accumulator: a bool sum counts, and is true where the count is not 0."""
        return f"({acc} != 0)" if s.dtype == "bool" else acc


def dim(x) -> str:
    """A dimension in generated code: an int literal, or a symbolic expression in parentheses."""
    return str(x) if isinstance(x, int) else f"({x})"


def kernel_body(group: Group, dialect: Dialect) -> tuple[list, list, Body]:
    """A group's input and output buffers (named ``in<k>``, ``out<k>``) and the Body rendering it."""
    reads, writes = buffers(group)
    names = {b: f"in{k}" for k, b in enumerate(reads)} | {n: f"out{k}" for k, n in enumerate(writes)}
    return reads, writes, Body(group, dialect, names)
