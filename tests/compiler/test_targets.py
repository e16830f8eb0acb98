"""Every target that runs here matches the NumPy reference interpreter, on workloads and random graphs."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lumi import nn

from .conftest import assert_cuda_compiles, mlp_args, mlp_block

RUNNABLE = ("cpu", "numpy")
TOL = {"float16": 2e-2, "float32": 2e-4, "float64": 1e-9}


def assert_close(got, want, dtype):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
        return
    tol = TOL.get(str(got.dtype), 1e-6)
    finite = np.isfinite(want)
    scale = float(np.max(np.abs(want[finite]), initial=1.0))
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol * scale,
                               equal_nan=True)


def check_all_targets(graph, *args, sources=None):
    want = graph.run(*args, backend="numpy")
    want = want if isinstance(want, tuple) else (want,)
    for target in RUNNABLE:
        got = lumi.compile(graph, target)(*args)
        got = got if isinstance(got, tuple) else (got,)
        for g, w in zip(got, want):
            assert_close(g, w, str(w.dtype))
    if sources is not None:
        sources += [k.source for k in lumi.compile(graph, "cuda").kernels if k.kind in ("elementwise", "reduce")]


WORKLOADS = {
    "bias_gelu": (lambda x, b: nn.gelu(x + b), lambda r: (r((33, 70)), r(70))),
    "gelu_erf": (lambda x: nn.gelu(x, approximate="none"), lambda r: (r((5, 9)),)),
    "softmax": (nn.softmax, lambda r: (r((7, 300)),)),
    "softmax_axis0": (lambda x: nn.softmax(x, axis=0), lambda r: (r((12, 5)),)),
    "log_softmax": (nn.log_softmax, lambda r: (r((4, 10)),)),
    "layernorm_affine": (lambda x, w, b: nn.layernorm(x, w, b), lambda r: (r((9, 64)), r(64), r(64))),
    "rmsnorm": (lambda x, w: nn.rmsnorm(x, w), lambda r: (r((3, 2, 16)), r(16))),
    "reductions": (lambda x: (x.sum(-1), x.mean(0), x.var(-1), x.var(0), x.max(0, keepdims=True), x.sum()),
                   lambda r: (r((17, 23)),)),
    "reduce_middle": (lambda x: (x.sum(1), x.max((0, 2)), x.mean(axis=(0, 2), keepdims=True)),
                      lambda r: (r((3, 4, 5)),)),
    "attention": (lambda q, k, v: nn.attention(q, k, v, causal=True), lambda r: (r((12, 8)), r((12, 8)), r((12, 8)))),
    "mlp": (mlp_block, None),
    "views": (lambda x: x.T[1:, ::2] * 2 + x.reshape(-1)[:4].reshape(2, 2)[0, 1], lambda r: (r((6, 7)),)),
    "argmax": (lambda x: (np.argmax(x, axis=1), np.argmin(x, axis=0)), lambda r: (r((5, 6)),)),
    "concat": (lambda x, y: np.concatenate([np.exp(x), y * 2], axis=1).sum(1), lambda r: (r((3, 4)), r((3, 2)))),
    "ints": (lambda a: (a * 3 + (a > 2), np.maximum(a, 4), a.sum(0), a**3),
             lambda r: (np.arange(24, dtype=np.int64).reshape(4, 6) - 7,)),
    "bools": (lambda x: ((x > 0) & (x < 1), np.any(x > 1, axis=1), np.where(x > 0, x, 0.0)),
              lambda r: (r((4, 5)),)),
}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_workloads_match_reference(name, dtype, tmp_path):
    fn, make = WORKLOADS[name]
    rng = np.random.default_rng(1)
    r = lambda shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    args = mlp_args(dtype=dtype) if make is None else make(r)
    sources = []
    check_all_targets(lumi.trace(fn, *args), *args, sources=sources)
    assert_cuda_compiles(sources, tmp_path)


def test_float16_workloads(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 40)).astype(np.float16)
    b = rng.standard_normal(40).astype(np.float16)
    sources = []
    for fn, args in [(lambda x, b: nn.gelu(x + b), (x, b)), (nn.softmax, (x,)), (lambda x: nn.layernorm(x), (x,)),
                     (lambda x: (x.max(1), x.astype(np.float32).sum(0)), (x,))]:
        check_all_targets(lumi.trace(fn, *args), *args, sources=sources)
    assert any("__half" in s for s in sources)
    assert_cuda_compiles(sources, tmp_path)


SPECIAL = np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e30, -1e30, 3.5, 88.0, -88.0, 1e-30, 2.0, 0.5]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_behave_like_numpy(dtype, tmp_path):
    x = np.concatenate([SPECIAL, SPECIAL[:, ::-1]]).astype(dtype)
    fns = [
        lambda x: (np.exp(x), np.log(x), np.sqrt(x), np.tanh(x), np.sin(np.where(np.abs(x) < 1e6, x, 0.0))),
        lambda x: (np.maximum(x, x[::-1, ::-1]), np.minimum(x, 1.0), x / x[::-1, ::-1], 1 / x),
        lambda x: (x.max(axis=1), x.max(axis=0), x.sum(axis=1), np.where(x < 1, x, -x), x == x),
        lambda x: nn.softmax(x, axis=-1),
        lambda x: nn.gelu(x),
    ]
    sources = []
    for fn in fns:
        check_all_targets(lumi.trace(fn, x), x, sources=sources)
    assert_cuda_compiles(sources, tmp_path)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp_across_the_underflow_range_matches_numpy(dtype):
    # The C target answers lanes whose exp is +0 without calling libmvec (its slow path); results on
    # both sides of that threshold, subnormal ones included, must stay NumPy's.
    lo, hi = (-110.0, -80.0) if dtype == "float32" else (-750.0, -700.0)
    x = np.concatenate([np.linspace(lo, hi, 4001), [-np.inf, np.nan, -1e30, 0.0, 1.0]]).astype(dtype)
    x = np.stack([x, x[::-1]])  # every vector of lanes mixes zero, subnormal and normal results
    for target in RUNNABLE:
        got, want = lumi.compile(lumi.trace(np.exp, x), target)(x), np.exp(x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got == 0, want == 0, err_msg=f"{target}: zero results moved")
        finite = ~np.isnan(want)
        np.testing.assert_array_max_ulp(got[finite], want[finite], maxulp=4)


MATMUL_CASES = {
    "bias_gelu_epilogue": (lambda a, b, c: nn.gelu(a @ b + c[0, :9]), (7, 5), (5, 9)),
    "flat_epilogue": (lambda a, b, c: np.tanh(a @ b) * 2.0, (3, 4), (4, 6)),
    "row_softmax_epilogue": (lambda a, b, c: nn.softmax(a @ b), (5, 8), (8, 33)),
    "transposed_operands": (lambda a, b, c: a.T @ b.T + 1.0, (6, 5), (4, 6)),
    "strided_operand": (lambda a, b, c: a[:, ::2] @ b - c[:1, :7], (5, 8), (4, 7)),
    "one_row": (lambda a, b, c: a @ b + c[0, :3], (1, 4), (4, 3)),
    "empty_inner": (lambda a, b, c: a @ b + 1.0, (4, 0), (0, 3)),
    "no_rows": (lambda a, b, c: nn.gelu(a @ b), (0, 4), (4, 3)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(MATMUL_CASES))
def test_matmul_with_epilogue_matches_reference(case, dtype):
    fn, sa, sb = MATMUL_CASES[case]
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    c = rng.standard_normal((3, 40)).astype(dtype)
    check_all_targets(lumi.trace(fn, a, b, c), a, b, c)


def test_matmul_epilogue_without_a_callable_blas(monkeypatch):
    # Where NumPy's BLAS does not expose a CBLAS gemm we can name, NumPy multiplies and the C kernel
    # still runs the epilogue on every row.
    from lumi.compiler.targets import cc

    monkeypatch.setattr(cc, "blas_gemm", lambda dtype: None)
    a = np.random.default_rng(2).standard_normal((9, 7)).astype(np.float32)
    g = lumi.trace(lambda a, b: nn.gelu(a @ b) * 3.0 - 0.25, a, a.T.copy())
    assert lumi.compile(g, "cpu").kernels[0].kind == "matmul"
    check_all_targets(g, a, a.T.copy())


def test_fused_matmul_holds_blas_at_one_thread_and_restores_it():
    from lumi.compiler.targets import cc
    from threadpoolctl import threadpool_info

    def threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = threads()
    with cc.one_blas_thread(), cc.one_blas_thread():
        assert set(threads()) == {1}
    assert threads() == before
    a = np.ones((64, 64), np.float32)
    lumi.compile(lumi.trace(lambda a: nn.gelu(a @ a), a), "cpu")(a)
    assert threads() == before


def test_matmul_rows_follow_a_symbolic_batch():
    g = lumi.trace(lambda x, w: nn.gelu(x @ w), lumi.spec(("batch", 16), "float32"), lumi.spec((16, 8), "float32"))
    w = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    for rows in (1, 3, 64):
        x = np.random.default_rng(rows).standard_normal((rows, 16)).astype(np.float32)
        check_all_targets(g, x, w)


def test_plan_frees_its_intermediates_when_the_call_returns():
    # The plan's environment must not sit in a reference cycle: with the cyclic collector off, an
    # output the caller drops is freed at once (otherwise every call touches fresh memory).
    import gc
    import weakref

    x = np.ones((64, 64), np.float32)
    plan = lumi.compile(lumi.trace(lambda x: nn.gelu(x @ x + 1.0), x), "cpu")
    plan(x)
    gc.disable()
    try:
        out = weakref.ref(plan(x))
        assert out() is None
    finally:
        gc.enable()


def test_fully_masked_softmax_rows_are_nan_like_numpy():
    x = np.full((2, 4), -np.inf, np.float32)
    x[1] = [0, 1, 2, 3]
    check_all_targets(lumi.trace(nn.softmax, x), x)


def test_symbolic_batch_dimension(tmp_path):
    g = lumi.trace(lambda x, b: (nn.gelu(x + b), nn.softmax(x).sum(0)),
                   lumi.spec(("batch", 16), "float32"), lumi.spec((16,), "float32"))
    rng = np.random.default_rng(3)
    b = rng.standard_normal(16).astype(np.float32)
    for n in (1, 5, 130):
        check_all_targets(g, rng.standard_normal((n, 16)).astype(np.float32), b)
    sources = [k.source for k in lumi.compile(g, "cuda").kernels]
    assert all("const long long S_batch" in s for s in sources)
    assert_cuda_compiles(sources, tmp_path)


def test_graph_call_uses_compiled_cpu_backend():
    from lumi.compiler.targets.cc import toolchain

    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    g = lumi.trace(nn.softmax, x)
    assert_close(g(x), g.run(x, backend="numpy"), "float32")
    assert_close(g.run(x, backend="cpu"), g.run(x, backend="numpy"), "float32")
    assert toolchain() is not None and lumi.compiler.best_target() == "cpu"


# -- random graphs ----------------------------------------------------------------------------

UNARY = [np.tanh, np.sin, lambda v: np.exp(-v * v), lambda v: np.sqrt(np.abs(v)), lambda v: np.log(np.abs(v) + 1),
         lambda v: v * 2.5, lambda v: v**2, lambda v: v**3, lambda v: -v, nn.relu, nn.sigmoid]
BINARY = [np.add, np.subtract, np.multiply, np.maximum, np.minimum, lambda a, b: a / (np.abs(b) + 1),
          lambda a, b: np.where(a > b, a, b * 0.5)]


@st.composite
def programs(draw):
    dtype = draw(st.sampled_from(["float32", "float64", "float16"]))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    other = tuple(d if draw(st.booleans()) else 1 for d in shape)[draw(st.integers(0, len(shape) - 1)):]
    steps = draw(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 10**6), st.integers(0, 10**6)),
                          min_size=1, max_size=7))
    return dtype, shape, other, steps


def run_program(steps, x, y):
    """Apply a drawn program with NumPy semantics (on arrays or on lazy tensors)."""
    pool = [x, y]
    for kind, a, b in steps:
        v = pool[a % len(pool)]
        w = pool[b % len(pool)]
        nd = np.ndim(v)
        if kind <= 2:
            out = UNARY[(a + b) % len(UNARY)](v)
        elif kind <= 5:
            try:
                np.broadcast_shapes(np.shape(v), np.shape(w))
            except ValueError:
                w = 0.75
            out = BINARY[b % len(BINARY)](v, w)
        elif kind == 6 and nd:
            axis = b % nd
            red = [np.sum, np.max, np.mean, np.var][a % 4]
            out = red(np.tanh(v), axis=axis, keepdims=bool(a & 4))
        elif kind == 7 and nd >= 2:
            out = np.swapaxes(v, 0, nd - 1)[::-1] if a % 2 else v.reshape(-1)[::2]
        elif kind == 8 and nd:
            w8 = np.linspace(-1, 1, np.shape(v)[-1] * 3).reshape(np.shape(v)[-1], 3).astype(v.dtype)
            out = nn.gelu(v @ w8 + np.asarray([0.5, -0.25, 0.125], dtype=v.dtype))
        else:
            out = nn.softmax(v, axis=-1) if nd else v + 1
        pool.append(out)
    return pool[-1], pool[len(pool) // 2]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def _random_graph_case(sources, case):
    dtype, shape, other, steps = case
    rng = np.random.default_rng(len(steps))
    x = rng.uniform(-2, 2, shape).astype(dtype)
    y = rng.uniform(-2, 2, other).astype(dtype)
    g = lumi.trace(lambda x, y: run_program(steps, x, y), x, y)
    check_all_targets(g, x, y, sources=sources)


def test_random_graphs_match_reference(tmp_path):
    sources: list[str] = []
    _random_graph_case(sources)
    assert_cuda_compiles(sources, tmp_path)
