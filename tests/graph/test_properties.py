"""Property tests: trace -> export -> load -> execute equals eager NumPy."""

from __future__ import annotations

import lumi
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

UNARY = {
    "exp": lambda x: np.exp(np.clip(x, -20, 20)),
    "tanh": np.tanh,
    "sin": np.sin,
    "cos": np.cos,
    "abs": np.abs,
    "neg": np.negative,
    "sqrt_abs": lambda x: np.sqrt(np.abs(x)),
    "log1": lambda x: np.log(np.abs(x) + 1),
    "relu": lumi.nn.relu,
    "sigmoid": lumi.nn.sigmoid,
    "gelu": lumi.nn.gelu,
    "square": lambda x: x**2,
    "cube": lambda x: x**3,
}
BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": lambda a, b: a / (np.abs(b) + 1),
    "max": np.maximum,
    "min": np.minimum,
    "where": lambda a, b: np.where(a > b, a, b * 2),
    "lt": lambda a, b: (a < b) * a,
}
REDUCE = {
    "sum": np.sum,
    "mean": np.mean,
    "max": np.max,
    "min": np.min,
    "var": np.var,
    "std": np.std,
}


@st.composite
def expressions(draw):
    """A random program over two inputs whose shapes broadcast, as a list of steps."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    # the second operand drops leading dims and sets some dims to 1, so it broadcasts
    cut = draw(st.integers(0, ndim - 1))
    other = tuple(1 if draw(st.booleans()) else d for d in shape[cut:])
    steps = draw(st.lists(
        st.one_of(
            st.tuples(st.just("unary"), st.sampled_from(sorted(UNARY))),
            st.tuples(st.just("binary"), st.sampled_from(sorted(BINARY))),
            st.tuples(st.just("scalar"), st.sampled_from(["add", "mul", "div"]), st.floats(-3, 3)),
        ),
        min_size=1, max_size=6,
    ))
    reduce = draw(st.one_of(st.none(), st.tuples(st.sampled_from(sorted(REDUCE)),
                                                 st.integers(-ndim, ndim - 1), st.booleans())))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return shape, other, steps, reduce, dtype


def program(steps, reduce):
    def fn(x, y):
        acc = x
        for step in steps:
            if step[0] == "unary":
                acc = UNARY[step[1]](acc)
            elif step[0] == "binary":
                acc = BINARY[step[1]](acc, y)
            else:
                _, op, c = step
                acc = acc + c if op == "add" else acc * c if op == "mul" else acc / (abs(c) + 1)
        if reduce is not None:
            name, axis, keepdims = reduce
            acc = REDUCE[name](acc, axis=axis, keepdims=keepdims)
        return acc

    return fn


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), st.integers(0, 2**31 - 1))
def test_trace_export_load_execute_matches_numpy(tmp_path_factory, expr, seed):
    shape, other, steps, reduce, dtype = expr
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(other).astype(dtype)
    fn = program(steps, reduce)
    expected = fn(x, y)

    graph = lumi.trace(fn, x, y)
    path = tmp_path_factory.mktemp("g") / "g.lumi"
    graph.export(path)
    loaded = lumi.load(path)
    assert loaded.hash == graph.hash
    got = loaded.run(x, y, backend="numpy")

    assert got.shape == np.shape(expected)
    assert got.dtype == np.asarray(expected).dtype
    tol = 1e-4 if dtype == "float32" else 1e-9
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.sampled_from(["float32", "float64", "int32", "int64"]))
def test_matmul_and_promotion_match_numpy(m, k, dtype):
    rng = np.random.default_rng(m * 31 + k)
    a = (rng.standard_normal((m, k)) * 3).astype(dtype)
    b = (rng.standard_normal((k,)) * 3).astype(dtype)

    def fn(a, b):
        return (a @ b) + 1, a.sum(axis=0) * 2.5, np.argmax(a, axis=1), np.concatenate([a, a], axis=1)[:, ::2]

    for got, want in zip(lumi.trace(fn, a, b)(a, b), fn(a, b)):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6)
