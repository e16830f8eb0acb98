"""The corpus's real model code runs through %%remote as a graph, nested weights and all."""

from __future__ import annotations

import numpy as np
from cells import run
from corpus import gpt2, gpt2_params, llama_block, llama_params, randn


def test_gpt2_and_a_llama_block_run_remotely_as_graphs(shell, capsys):
    params, p = gpt2_params(), llama_params()
    ids = np.array([5, 17, 3, 63, 0, 9], dtype=np.int64)
    x, cache = randn(1, 2, 32, scale=1.0), randn(1, 4, 2, 8, scale=1.0)
    shell.user_ns.update(gpt2=gpt2, params=params, ids=ids, llama_block=llama_block, p=p, x=x, cache=cache)
    ns = run(shell, "%%remote --graph\nlogits = gpt2(ids, **params, n_head=2)\nnext_id = np.argmax(logits[-1])\n"
                    "h, keys, values = llama_block(x, cache, cache * 0.5, p, 4)\n")
    want = gpt2(ids, **params, n_head=2)
    np.testing.assert_allclose(ns["logits"], want, rtol=1e-4, atol=1e-5)
    assert ns["next_id"] == np.argmax(want[-1])
    h, keys, values = llama_block(x, cache, cache * 0.5, p, 4)
    np.testing.assert_allclose(ns["h"], h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ns["keys"], keys, rtol=1e-5, atol=1e-6)
    assert "running this cell as Python" not in capsys.readouterr().err
