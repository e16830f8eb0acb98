"""Real model code deployed: the corpus's GPT-2 and a batched k-means step answer over HTTP; bad token ids get 400."""

from __future__ import annotations

import lumi
import numpy as np
from corpus import gpt2, gpt2_params, randn
from lumi.serving.batching import batch_plan
from lumi.serving.endpoint import deploy

PARAMS = gpt2_params()
TOKENS = 8


def next_token_logits(ids):
    """What %%deploy traces: a function of its input, its weights read from the enclosing namespace."""
    return gpt2(ids, **PARAMS, n_head=2)[-1]


def test_gpt2_deploys_and_answers_and_refuses_a_bad_token_id(gateway, client):
    graph = lumi.trace(next_token_logits, np.zeros(TOKENS, np.int64))
    assert [n.op for n in graph.nodes].count("gather") == 1 and list(graph.inputs) == ["ids"]
    deploy(graph, "gpt2-small", gateway["url"], gateway["key"])
    ids = np.array([5, 17, 3, 63, 0, 9, 9, 41])
    got = lumi.Endpoint("gpt2-small", url=gateway["url"], key=gateway["key"])(ids)
    np.testing.assert_allclose(got, next_token_logits(ids), rtol=1e-4, atol=1e-5)

    r = client.post("/v1/endpoints/gpt2-small/infer", json={"inputs": {"ids": [5, 17, 3, 64, 0, 9, 9, 41]}})
    assert r.status_code == 400, r.text
    assert "index 64 is out of range for axis 0 of size 64" in r.json()["detail"] and "'ids'" in r.json()["detail"]
    assert client.post("/v1/endpoints/gpt2-small/infer", json={"inputs": {"ids": ids.tolist()}}).status_code == 200


CENTROIDS = randn(4, 3, scale=2.0)


def assign(points):
    """A k-means assignment step over a batch of points: the nearest centroid and its distance."""
    distances = ((points[:, None, :] - CENTROIDS[None, :, :]) ** 2).sum(axis=-1)
    nearest = np.argmin(distances, axis=1)
    return nearest, np.sqrt(np.take_along_axis(distances, nearest[:, None], axis=1))[:, 0]


def test_a_batched_kmeans_step_deploys_with_batching_on(gateway):
    graph = lumi.trace(assign, lumi.spec(("batch", 3)))
    assert batch_plan(graph).enabled, batch_plan(graph).reason
    result = deploy(graph, "kmeans-assign", gateway["url"], gateway["key"], max_batch=16)
    assert result["batching"]
    points = randn(5, 3, scale=2.0)
    nearest, distance = lumi.Endpoint("kmeans-assign", url=gateway["url"], key=gateway["key"])(points)
    want_nearest, want_distance = assign(points)
    np.testing.assert_array_equal(nearest, want_nearest)
    np.testing.assert_allclose(distance, want_distance, rtol=1e-5)
