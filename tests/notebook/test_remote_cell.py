"""``%%remote`` in a real IPython shell against a real local Ray."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from cells import run


@pytest.fixture
def arrays(shell):
    rng = np.random.default_rng(1)
    shell.user_ns.update(
        x=rng.standard_normal((16, 8)).astype(np.float32),
        w=rng.standard_normal((8, 4)).astype(np.float32),
        b=rng.standard_normal(4).astype(np.float32),
    )
    return shell.user_ns


def test_remote_cell_returns_numpy_results(shell, arrays):
    ns = run(shell, "%%remote\ny = np.tanh(x @ w + b).sum(axis=1)\n")
    assert isinstance(ns["y"], np.ndarray)
    np.testing.assert_allclose(ns["y"], np.tanh(ns["x"] @ ns["w"] + ns["b"]).sum(axis=1), rtol=1e-5)


def test_remote_cell_keeps_imports_functions_and_plain_values(shell, arrays):
    src = "%%remote\nimport math\ndef act(v):\n    return np.maximum(v, 0)\nh = act(x @ w)\nk = math.pi\n"
    ns = run(shell, src)
    np.testing.assert_allclose(ns["h"], np.maximum(ns["x"] @ ns["w"], 0), rtol=1e-6)
    assert ns["k"] == pytest.approx(np.pi)
    np.testing.assert_array_equal(ns["act"](np.array([-1.0, 2.0])), [0.0, 2.0])  # defined in the user namespace


def test_python_mode_runs_untraceable_code_on_a_worker(shell, arrays):
    src = "import os\ny = np.tanh(x @ w + b).sum(axis=1)\nspectrum = np.abs(np.fft.fft(b))\npid = os.getpid()\n"
    ns = run(shell, "%%remote --python\n" + src)
    np.testing.assert_allclose(ns["y"], np.tanh(ns["x"] @ ns["w"] + ns["b"]).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(ns["spectrum"], np.abs(np.fft.fft(ns["b"])), rtol=1e-6)
    import os

    assert ns["pid"] != os.getpid()  # it really ran elsewhere


def test_python_mode_error_names_the_cell_line(shell, arrays):
    with pytest.raises(lumi.ExecutionError, match="ZeroDivisionError at cell line 2"):
        run(shell, "%%remote --python\na = 1\nb2 = a / 0\n")


def test_unsupported_call_with_graph_says_to_use_python_mode(shell, arrays):
    with pytest.raises(lumi.UnsupportedOperation, match=r"numpy\.fft\.fft.*%%remote --python"):
        run(shell, "%%remote --graph\nf = np.fft.fft(x)\n")


def test_value_dependent_branch_names_the_cell_line(shell, arrays, capsys):
    with pytest.raises(lumi.TraceError, match="at cell line 2"):
        run(shell, "%%remote --graph\ns = x.sum()\nif s > 0:\n    y = x\n")
    ns = run(shell, "%%remote\ns = x.sum()\nif s > 0:\n    y = x * 2\nelse:\n    y = x\n")  # runs as Python
    np.testing.assert_allclose(ns["y"], ns["x"] * 2 if ns["x"].sum() > 0 else ns["x"])
    assert "cell line 2" in capsys.readouterr().err


def test_remote_failure_names_the_op_and_cell_line(shell, arrays):
    shell.user_ns["big"] = np.ones(2_000_000, np.float32)
    with pytest.raises(lumi.ExecutionError, match=r"mul .*created at cell line 2.*failed"):
        run(shell, "%%remote\nn = big.sum()\nouter = big[:, None] * big[None, :]\n")


def test_help_documents_the_magic(shell, capsys):
    shell.run_cell("%%remote --help\npass\n")
    out = capsys.readouterr().out
    assert "%%remote [--python]" in out and "--timeout" in out and "bring its variables back" in out
