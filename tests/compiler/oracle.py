"""The fuzzer's oracle: the reference interpreter's values plus, per element, a bound on how far a
correct compiled result may be from them.

Each node's bound is propagated from its operands' bounds by first-order error analysis (interval
end points for unary functions) plus the op's own rounding: half an ulp for IEEE arithmetic, a few
ulps for transcendental functions (libmvec, CUDA's libdevice and NumPy's SIMD loops all differ in
the last bits), ``n`` ulps of ``sum |x|`` for a reduction of length ``n`` (any summation order), and
so on. A bound is 0 where the result is exact (integers, booleans, most views and selections), and
infinite where no answer is certain: a comparison whose operands' intervals overlap, a cast of a
value near an integer boundary, a division by an interval containing 0. Those elements are not
compared; everything else must match, NaN and infinities in exactly the same places.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from lumi.graph import shapes as S
from lumi.graph.interpret import run_node
from lumi.graph.ir import Graph, Node
from lumi.graph.ops import OPS
from scipy.special import erf

F64 = np.float64
INF = np.inf
TRANSCENDENTAL_ULPS = 4
_F64 = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "recip": lambda x: 1.0 / x, "tanh": np.tanh, "sin": np.sin,
        "erf": erf}


def unit(dtype: str) -> float:
    """Unit roundoff of a float dtype (0 for integers and bools: they are exact)."""
    return float(np.finfo(dtype).eps) / 2 if dtype.startswith("float") else 0.0


def ulp(x: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` at each element of ``x`` (0 at NaN and infinities)."""
    if not dtype.startswith("float"):
        return np.zeros(np.shape(x))
    with np.errstate(all="ignore"):
        a = np.abs(np.asarray(x, dtype=dtype))
        return np.where(np.isfinite(a), np.spacing(a).astype(F64), 0.0)


def _scaled(m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``|m| * e`` where ``e`` is 0 exactly: an exact operand adds nothing, even against inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(e == 0, 0.0, np.abs(m) * e)


def _clean(e: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(e), INF, e)


def bounds(graph: Graph, inputs: Sequence[np.ndarray], bindings: Mapping[str, int]) -> list[tuple]:
    """``(value, bound)`` for every output; raises what the reference raises."""
    by_name = dict(zip(graph.inputs, inputs))
    vals: list = [None] * len(graph.nodes)
    errs: list = [None] * len(graph.nodes)
    for n in graph.nodes:
        if n.op in ("input", "const"):
            vals[n.id] = by_name[n.attrs["name"]] if n.op == "input" else graph.constants[n.id]
            errs[n.id] = np.zeros(np.shape(vals[n.id]))
            continue
        xs = [vals[s] for s in n.src]
        vals[n.id] = out = run_node(n, xs, bindings)
        with np.errstate(all="ignore"):
            errs[n.id] = _clean(np.asarray(_node_bound(n, xs, [errs[s] for s in n.src], out, bindings), F64)
                                * np.ones(out.shape))
    return [(vals[i], errs[i]) for i in graph.outputs.values()]


def _node_bound(n: Node, xs: list, es: list, out: np.ndarray, bindings: Mapping[str, int]):
    kind, dt = OPS[n.op].kind, n.dtype
    x64 = [np.asarray(x, F64) for x in xs]
    if kind in ("view", "concat"):
        return OPS[n.op].ref(es, n.attrs, S.resolve(n.shape, bindings))
    if kind == "unary":
        return _unary(n.op, x64[0], es[0], out, dt)
    if n.op in ("add", "sub"):
        return _rounded(es[0] + es[1], out, dt, 1)
    if n.op == "mul":
        return _rounded(_scaled(x64[0], es[1]) + _scaled(x64[1], es[0]) + es[0] * es[1], out, dt, 1)
    if n.op == "div":
        a, b = x64
        e = (_scaled(a, es[1]) + _scaled(b, es[0])) / (np.abs(b) * (np.abs(b) - es[1]))
        e = np.where((es[0] == 0) & (es[1] == 0), 0.0, np.where(np.abs(b) > es[1], e, INF))
        return _rounded(e, out, dt, 1)
    if n.op == "maximum":
        return np.maximum(es[0], es[1])
    if n.op == "pow":
        return _pow(x64[0], x64[1], es[0], es[1], out, dt)
    if n.op in ("cmplt", "cmpeq"):
        return _compare(n.op, x64[0], x64[1], es[0] + es[1])
    if n.op == "where":
        return np.where(es[0] > 0, INF, np.where(xs[0], es[1], es[2]))
    if kind == "cast":
        return _cast(x64[0], es[0], xs[0].dtype.name, out, dt)
    if n.op == "sum":
        return _sum(x64[0], es[0], n, out)
    if n.op == "max":
        return np.max(es[0], axis=tuple(n.attrs["axes"]), keepdims=n.attrs["keepdims"])
    if n.op == "matmul":
        a, b = x64
        e = np.abs(a) @ es[1] + es[0] @ np.abs(b) + es[0] @ es[1]
        k = a.shape[-1]
        e = e + (k + 2) * unit(dt) * (np.abs(a) @ np.abs(b))
        return np.where(np.isfinite(np.abs(a) @ np.abs(b)), _rounded(e, out, dt, 1), INF)
    if n.op == "gather":  # the data's bound where it was read; any doubt about an index is doubt about its row
        axis = n.attrs["axis"]
        e = np.take(es[0], xs[1], axis=axis)
        doubt = np.reshape(es[1], (1,) * axis + np.shape(xs[1]) + (1,) * (np.ndim(xs[0]) - axis - 1))
        return np.where(doubt > 0, INF, e)
    raise AssertionError(f"no error rule for {n.op}")


def _rounded(e: np.ndarray, out: np.ndarray, dtype: str, ulps: float) -> np.ndarray:
    """``e`` plus the op's own rounding; a non-finite result from exact operands is exact, except in
    float16, which fused kernels compute in float: there NumPy's intermediate overflow may not happen."""
    out64 = np.asarray(out, F64)
    special = 0.0 if dtype != "float16" else INF
    return np.where(np.isfinite(out64), e + ulps * ulp(out, dtype), np.where(e == 0, special, INF))


def _unary(op: str, x: np.ndarray, e: np.ndarray, out: np.ndarray, dtype: str) -> np.ndarray:
    f = _F64[op]
    fx = f(x)
    if op == "sin":
        prop = np.minimum(e, 2.0)
    else:
        prop = np.maximum(np.abs(f(x - e) - fx), np.abs(f(x + e) - fx))
        if op == "recip":
            prop = np.where((x - e <= 0) & (x + e >= 0) & (e > 0), INF, prop)
    prop = np.where(e == 0, 0.0, prop)
    ulps = 1 if op in ("sqrt", "recip") else TRANSCENDENTAL_ULPS
    big = float(np.finfo(dtype).max) * (1 + 2 * ulps * unit(dtype))
    out64 = np.asarray(out, F64)
    # A result that overflows only near the threshold may be inf on one side and finite on the other.
    edge = ~np.isfinite(out64) & np.isfinite(x) & (np.abs(fx) < big)
    return np.where(edge, INF, _rounded(prop, out, dtype, ulps))


def _pow(a, b, ea, eb, out, dtype):
    if not dtype.startswith("float"):
        return ea + eb
    p = np.power(a, b)
    lo, hi = np.power(a - ea, b), np.power(a + ea, b)
    prop = np.maximum(np.abs(lo - p), np.abs(hi - p))
    crosses = (a - ea <= 0) & (a + ea >= 0) & (ea > 0)
    prop = np.where(crosses & (b < 0), INF, np.where(crosses, np.maximum(prop, np.abs(p)), prop))
    prop = np.where(ea == 0, 0.0, prop) + _scaled(np.log(np.abs(a)) * p, eb)
    integral = np.abs(b) == np.round(np.abs(b))
    ulps = np.where(integral & (np.abs(b) <= 16), 2 + np.abs(b), TRANSCENDENTAL_ULPS)
    return _rounded(prop, out, dtype, ulps)


def _compare(op: str, a, b, e):
    if op == "cmplt":
        certain = (a + e < b - e) | (a - e >= b + e)
    else:
        certain = np.abs(a - b) > 2 * e
    return np.where((e == 0) | certain, 0.0, INF)


def _cast(x, e, src: str, out, dtype: str):
    if dtype.startswith("float"):
        return _rounded(e, out, dtype, 0.5)
    if dtype == "bool":
        return np.where((e > 0) & (np.abs(x) <= e), INF, 0.0)
    if not src.startswith("float"):
        return e
    lim = float(np.iinfo(dtype).max)
    same = np.trunc(x - e) == np.trunc(x + e)
    return np.where(np.isfinite(x) & (np.abs(x) + e < lim) & same & np.isfinite(e), 0.0, INF)


def _sum(x, e, n: Node, out):
    axes = tuple(n.attrs["axes"])
    keep = n.attrs["keepdims"]
    count = int(np.prod([x.shape[a] for a in axes]))
    finite = np.isfinite(x)
    esum = np.sum(e, axis=axes, keepdims=keep)
    grow = count * unit(n.dtype) * np.sum(np.where(finite, np.abs(x), 0.0), axis=axes, keepdims=keep)
    special = ~np.all(finite, axis=axes, keepdims=keep)
    if n.dtype == "bool":
        return np.where(esum > 0, INF, 0.0)
    return np.where(special, np.where(esum == 0, 0.0, INF), _rounded(esum + grow, out, n.dtype, 1))


def assert_matches(got, want: np.ndarray, bound: np.ndarray, what: str = "") -> None:
    """``got`` equals ``want`` within ``bound`` (twice it: both sides round), NaN and inf in place."""
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}shape {got.shape}, expected {want.shape}"
    assert got.dtype.name == want.dtype.name, f"{what}dtype {got.dtype.name}, expected {want.dtype.name}"
    checked = np.isfinite(bound)
    if want.dtype.kind in "biu":
        bad = checked & (got != want)
    else:
        g, w = got.astype(F64), want.astype(F64)
        with np.errstate(invalid="ignore"):
            close = np.abs(g - w) <= 2 * bound + ulp(w, want.dtype.name)
            same_special = (np.isnan(g) & np.isnan(w)) | (g == w)
        bad = checked & ~np.where(np.isfinite(w), close & np.isfinite(g), same_special)
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}{int(bad.sum())} of {bad.size} elements differ; first at {list(idx)}: got {got[idx]!r}, "
            f"expected {want[idx]!r} (bound {bound[idx]:.3g})\n got: {np.array2string(got, threshold=60)}\n"
            f"want: {np.array2string(want, threshold=60)}")
