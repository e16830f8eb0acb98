"""Batch independence proofs and the batcher gathering, running once and splitting back."""

from __future__ import annotations

import asyncio

import lumi
import numpy as np
import pytest
from lumi.runtime.execute import execute
from lumi.serving.batching import Batcher, batch_plan

B = lumi.spec(("batch", 8))
W = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) / 10


@pytest.mark.parametrize("fn", [
    lambda x: np.maximum(x @ W + 1, 0),
    lambda x: np.exp(x - x.max(axis=1, keepdims=True)) / np.exp(x).sum(axis=1, keepdims=True),
    lambda x: (x - x.mean(axis=1, keepdims=True)).T.T,
    lambda x: x.reshape(("batch", 2, 4)).sum(axis=2),
    lambda x: x[:, 2:5] * 2,
])
def test_row_independent_graphs_batch(fn):
    plan = batch_plan(lumi.trace(fn, B))
    assert plan.enabled, plan.reason
    assert plan.symbol == "batch" and plan.output_axes == (0,)


@pytest.mark.parametrize("fn, culprit", [
    (lambda x: x - x.mean(axis=0), "sum"),
    (lambda x: x.T @ x, "matmul"),
    (lambda x: x.sum(), "sum"),
    (lambda x: x.reshape((2, "batch", 4)), "reshape"),
])
def test_graphs_mixing_rows_do_not_batch(fn, culprit):
    plan = batch_plan(lumi.trace(fn, B))
    assert not plan.enabled
    assert culprit in plan.reason and "mixes rows along the batch dimension 'batch'" in plan.reason


def test_rows_may_move_to_another_axis():
    plan = batch_plan(lumi.trace(lambda x: x.reshape(("batch", 2, 4)).transpose(1, 0, 2), B))
    assert plan.enabled and plan.output_axes == (1,)


def test_gather_keeps_the_rows_of_its_index_or_its_data():
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    lookup = lumi.trace(lambda ids: table[ids] * 2, lumi.spec(("batch", 3), "int64"))  # rows come from the ids
    assert batch_plan(lookup).enabled and batch_plan(lookup).output_axes == (0,)
    columns = lumi.trace(lambda x: np.take(x, [2, 0], axis=1), lumi.spec(("batch", 4)))  # rows of the data stay
    assert batch_plan(columns).enabled and batch_plan(columns).output_axes == (0,)
    pairs = lumi.trace(lambda x, i: np.take(x, i, axis=1),  # every row's data at every row's indices: mixed
                       lumi.spec(("batch", 4)), lumi.spec(("batch", 2), "int64"))
    assert not batch_plan(pairs).enabled and "gather" in batch_plan(pairs).reason


def test_inputs_without_a_batch_dimension_do_not_batch():
    plan = batch_plan(lumi.trace(lambda x: x * 2, lumi.spec((4, 8))))
    assert not plan.enabled and "no symbolic first dimension" in plan.reason


def test_batcher_gathers_runs_once_and_splits_back():
    graph = lumi.trace(lambda x: np.tanh(x @ W), B)
    plan = batch_plan(graph)
    runs = []

    async def acquire():
        async def run(arrays):
            runs.append(arrays[0].shape[0])
            await asyncio.sleep(0.01)
            return execute(graph, arrays), 0.01, "CPU"
        return (lambda arrays: run(arrays)), (lambda: None)

    async def main():
        batcher = Batcher(plan, acquire, max_batch=16, max_wait_ms=20)
        xs = [np.full((i % 3 + 1, 8), i, np.float32) for i in range(12)]
        results = await asyncio.gather(*(batcher.submit([x]) for x in xs))
        return batcher, xs, results

    batcher, xs, results = asyncio.run(main())
    for x, r in zip(xs, results):
        np.testing.assert_allclose(r.outputs[0], np.tanh(x @ W), rtol=1e-6)
    assert sum(runs) == sum(x.shape[0] for x in xs) and max(runs) <= 16
    assert len(runs) < len(xs) and batcher.mean_batch_size > 1
    assert sum(n * k for n, k in batcher.batch_sizes.items()) == len(xs) and sum(batcher.batch_sizes.values()) == \
        len(runs)  # the histogram of requests per batch counts every request once
    # each request is billed its share of the batch's seconds
    assert abs(sum(r.seconds for r in results) - 0.01 * len(runs)) < 1e-9


def test_batcher_with_batching_off_runs_requests_alone():
    graph = lumi.trace(lambda x: x - x.mean(axis=0), B)
    plan = batch_plan(graph)
    sizes = []

    async def acquire():
        async def run(arrays):
            sizes.append(arrays[0].shape[0])
            return execute(graph, arrays), 0.0, "CPU"
        return run, (lambda: None)

    async def main():
        batcher = Batcher(plan, acquire, max_batch=16, max_wait_ms=5)
        xs = [np.random.default_rng(i).standard_normal((3, 8)).astype(np.float32) for i in range(4)]
        return xs, await asyncio.gather(*(batcher.submit([x]) for x in xs))

    xs, results = asyncio.run(main())
    assert sizes == [3, 3, 3, 3]
    for x, r in zip(xs, results):
        np.testing.assert_allclose(r.outputs[0], x - x.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_zero_row_requests_answer_zero_rows():
    """A batch of only zero-row requests used to divide by zero rows when sharing out the seconds."""
    graph = lumi.trace(lambda x: np.tanh(x @ W), B)

    async def acquire():
        async def run(arrays):
            return execute(graph, arrays), 0.02, "CPU"
        return run, (lambda: None)

    async def main():
        batcher = Batcher(batch_plan(graph), acquire, max_batch=16, max_wait_ms=20)
        return await asyncio.gather(*(batcher.submit([np.zeros((0, 8), np.float32)]) for _ in range(2)))

    results = asyncio.run(main())
    assert [r.outputs[0].shape for r in results] == [(0, 3), (0, 3)]
    assert sum(r.seconds for r in results) == pytest.approx(0.02)
