"""Weights a traced function reads from its globals or closure stay NumPy arrays, and can be indexed by traced ids."""

from __future__ import annotations

import lumi
import numpy as np

TABLE = np.arange(24, dtype=np.float32).reshape(6, 4)
WEIGHTS = {"emb": TABLE, "scale": [np.float32(2.0), np.full(4, 0.5, np.float32)]}


def embed(ids):
    return TABLE[ids] * WEIGHTS["scale"][1] + np.linalg.inv(np.eye(4, dtype=np.float32) * 2)[0]


def test_a_global_table_indexed_by_traced_ids_records_a_gather():
    g = lumi.trace(embed, np.zeros(3, np.int64))
    assert [n.op for n in g.nodes].count("gather") == 1 and list(g.inputs) == ["ids"]
    ids = np.array([5, 0, -1])
    for backend in ("numpy", "cpu"):
        np.testing.assert_array_equal(g.run(ids, backend=backend), embed(ids))


def test_a_closure_over_nested_weights_is_traced_the_same_way():
    params = {"layers": [{"emb": TABLE}]}
    g = lumi.trace(lambda ids: params["layers"][0]["emb"][ids].sum(axis=-1), lumi.spec(("batch",), "int64"))
    np.testing.assert_array_equal(g(np.array([1, 2])), TABLE[[1, 2]].sum(axis=-1))


def test_the_callers_namespace_is_untouched():
    before = (type(TABLE), WEIGHTS["emb"] is TABLE, type(WEIGHTS["scale"][1]))
    lumi.trace(embed, np.zeros(2, np.int64))
    assert (type(TABLE), WEIGHTS["emb"] is TABLE, type(WEIGHTS["scale"][1])) == before == (np.ndarray, True,
                                                                                           np.ndarray)
    assert embed.__globals__["TABLE"] is TABLE
