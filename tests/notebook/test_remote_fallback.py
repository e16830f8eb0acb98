"""A %%remote that just works: cells the tracer refuses run as Python with one line saying why; nested weights
and item assignment trace."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from cells import run


def test_a_cell_the_tracer_refuses_runs_as_python_and_says_why(shell, capsys):
    signal = np.sin(np.linspace(0, 20, 64)).astype(np.float32)
    shell.user_ns["signal"] = signal
    ns = run(shell, "%%remote\nscaled = signal * 2\nspectrum = np.abs(np.fft.rfft(scaled))\n")
    np.testing.assert_allclose(ns["spectrum"], np.abs(np.fft.rfft(signal * 2)), rtol=1e-5)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lumi: running this cell as Python")]
    assert len(lines) == 1 and "numpy.fft.rfft" in lines[0] and "cell line 2" in lines[0], err


def test_graph_insists_on_a_graph(shell):
    shell.user_ns["signal"] = np.ones(8, np.float32)
    with pytest.raises(lumi.UnsupportedOperation, match="numpy.fft.rfft"):
        run(shell, "%%remote --graph\nspectrum = np.fft.rfft(signal)\n")
    assert "spectrum" not in shell.user_ns


def test_nested_weights_and_item_assignment_trace(shell, capsys):
    rng = np.random.default_rng(0)
    params = {"layers": [{"w": rng.standard_normal((4, 4)).astype(np.float32)} for _ in range(2)]}
    x, y = rng.standard_normal((3, 4)).astype(np.float32), np.zeros((3, 4), np.float32)
    shell.user_ns.update(params=params, x=x, y=y)
    ns = run(shell, "%%remote --graph\nh = x\nfor layer in params['layers']:\n    h = np.tanh(h @ layer['w'])\n"
                    "y[:, :2] = h[:, :2]\ny[:, 2:] += 1\n")
    want = x
    for layer in params["layers"]:
        want = np.tanh(want @ layer["w"])
    np.testing.assert_allclose(ns["h"], want, rtol=1e-5)
    np.testing.assert_allclose(ns["y"][:, :2], want[:, :2], rtol=1e-5)
    np.testing.assert_array_equal(ns["y"][:, 2:], np.ones((3, 2)))
    assert "running this cell as Python" not in capsys.readouterr().err
