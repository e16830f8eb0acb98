"""Fusion grouping: how many kernels each workload compiles to, and what they cover."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from lumi import nn

from .conftest import assert_cuda_compiles, bias_gelu_graph, mlp_args, mlp_block

TARGETS = ("cpu", "cuda", "numpy")


def generated(plan):
    return [k for k in plan.kernels if k.kind in ("elementwise", "reduce")]


def check_cuda_source(plan, tmp_path):
    if plan.target == "cuda":
        assert_cuda_compiles([k.source for k in generated(plan)], tmp_path)


@pytest.mark.parametrize("target", TARGETS)
def test_bias_gelu_is_one_kernel(target, tmp_path):
    plan = lumi.compile(bias_gelu_graph(), target)
    assert [k.kind for k in plan.kernels] == ["elementwise"]
    assert "tanh" in plan.kernels[0].source
    check_cuda_source(plan, tmp_path)


@pytest.mark.parametrize("target", TARGETS)
def test_softmax_at_most_three_kernels(target, tmp_path):
    x = np.zeros((8, 16), np.float32)
    plan = lumi.compile(lumi.trace(nn.softmax, x), target)
    assert 1 <= len(plan.kernels) <= 3
    check_cuda_source(plan, tmp_path)


@pytest.mark.parametrize("target", TARGETS)
def test_mlp_block_besides_matmuls_at_most_four(target, tmp_path):
    plan = lumi.compile(lumi.trace(mlp_block, *mlp_args()), target)
    kinds = [k.kind for k in plan.kernels]
    assert kinds.count("matmul") == 2
    assert len(kinds) - 2 <= 4
    check_cuda_source(plan, tmp_path)


def test_kernels_cover_every_compute_node_once():
    plan = lumi.compile(lumi.trace(mlp_block, *mlp_args()), "cpu")
    covered = [n for k in plan.kernels for n in k.nodes]
    assert len(covered) == len(set(covered))
    compute = {n.id for n in plan.graph.nodes if n.op not in ("input", "const", "reshape", "permute", "expand",
                                                              "slice")}
    assert set(covered) == compute


def test_views_fuse_as_strided_reads():
    x = np.zeros((6, 5), np.float32)
    plan = lumi.compile(lumi.trace(lambda x, y: x.T * 2 + y[::2, 1:], x, np.zeros((10, 7), np.float32)), "cpu")
    assert [k.kind for k in plan.kernels] == ["elementwise"]


@pytest.mark.parametrize("target", ["cuda", "numpy"])
def test_attention_is_one_kernel_between_matmuls(target):
    q = np.zeros((16, 8), np.float32)
    plan = lumi.compile(lumi.trace(lambda q, k, v: nn.attention(q, k, v, causal=True), q, q, q), target)
    assert [k.kind for k in plan.kernels] == ["matmul", "reduce", "matmul"]


def test_cpu_matmuls_take_in_the_row_kernel_after_them():
    # On the CPU each thread multiplies its rows, then runs the consumer on them: attention's scale,
    # mask and softmax ride on the first matmul; the MLP block's bias+GELU and bias+residual on theirs.
    q = np.zeros((16, 8), np.float32)
    plan = lumi.compile(lumi.trace(lambda q, k, v: nn.attention(q, k, v, causal=True), q, q, q), "cpu")
    ops = [{plan.graph.nodes[i].op for i in k.nodes} for k in plan.kernels]
    assert [k.kind for k in plan.kernels] == ["matmul", "matmul"]
    assert {"matmul", "exp", "max", "sum", "where"} <= ops[0] and ops[1] == {"matmul"}
    plan = lumi.compile(lumi.trace(mlp_block, *mlp_args()), "cpu")
    ops = [{plan.graph.nodes[i].op for i in k.nodes} for k in plan.kernels]
    assert [k.kind for k in plan.kernels] == ["reduce", "matmul", "matmul"]
    assert {"matmul", "tanh"} <= ops[1] and {"matmul", "add"} <= ops[2]


def test_matmul_read_through_a_view_keeps_its_own_kernel():
    # A consumer that reads the product transposed needs rows other threads compute: not an epilogue.
    a = np.zeros((8, 8), np.float32)
    plan = lumi.compile(lumi.trace(lambda a, b: (a @ b).T + 1.0, a, a), "cpu")
    assert [k.kind for k in plan.kernels] == ["matmul", "elementwise"]


def test_intermediate_outputs_are_materialized():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    g = lumi.trace(lambda x: (np.exp(x / 12), np.exp(x / 12).sum(axis=1)), x)
    plan = lumi.compile(g, "cpu")
    assert len(generated(plan)) == 1
    for got, want in zip(plan(x), g.run(x)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_reduce_then_different_reduce_splits():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    plan = lumi.compile(lumi.trace(lambda x: np.sum(x, axis=1).max(), x), "cpu")
    assert len(plan.kernels) == 2


def test_compile_refuses_unknown_target():
    with pytest.raises(lumi.LumiError, match="target"):
        lumi.compile(bias_gelu_graph(), "tpu")


def test_lumi_debug_prints_each_kernel(monkeypatch, capsys):
    monkeypatch.setenv("LUMI_DEBUG", "1")
    x = np.zeros((3, 7), np.float32)
    plan = lumi.compile(lumi.trace(lambda x: np.tanh(x * 3.25) - 0.125, x), "cuda")
    err = capsys.readouterr().err
    assert plan.kernels[0].name in err and plan.kernels[0].source in err
