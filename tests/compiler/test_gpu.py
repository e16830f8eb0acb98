"""CUDA plans run through CuPy and match the reference (needs a GPU; skipped without one)."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from lumi import nn

from .conftest import mlp_args, mlp_block
from .test_targets import WORKLOADS, assert_close, programs, run_program

pytestmark = pytest.mark.gpu


def check_cuda(graph, *args):
    want = graph.run(*args, backend="numpy")
    got = lumi.compile(graph, "cuda")(*args)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert_close(g, w, str(w.dtype))


@pytest.mark.parametrize("name", sorted(WORKLOADS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_workloads(name, dtype):
    fn, make = WORKLOADS[name]
    rng = np.random.default_rng(1)
    args = mlp_args(dtype=dtype) if make is None else make(lambda s: rng.standard_normal(s).astype(dtype))
    check_cuda(lumi.trace(fn, *args), *args)


def test_cuda_float16_and_large_rows():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 5000)).astype(np.float16)
    b = rng.standard_normal(5000).astype(np.float16)
    check_cuda(lumi.trace(lambda x, b: nn.gelu(x + b), x, b), x, b)
    check_cuda(lumi.trace(nn.softmax, x), x)
    x32 = x.astype(np.float32)
    check_cuda(lumi.trace(lambda x: (x.sum(0), x.var(-1), nn.layernorm(x)), x32), x32)


def test_cuda_mlp_block_and_symbolic_batch():
    args = mlp_args(tokens=64, d=32)
    check_cuda(lumi.trace(mlp_block, *args), *args)
    g = lumi.trace(nn.softmax, lumi.spec(("batch", 33), "float32"))
    for n in (1, 7, 1000):
        x = np.random.default_rng(n).standard_normal((n, 33)).astype(np.float32)
        check_cuda(g, x)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_cuda_random_graphs(case):
    dtype, shape, other, steps = case
    rng = np.random.default_rng(len(steps))
    x = rng.uniform(-2, 2, shape).astype(dtype)
    y = rng.uniform(-2, 2, other).astype(dtype)
    check_cuda(lumi.trace(lambda x, y: run_program(steps, x, y), x, y), x, y)
