"""The first ten minutes in a notebook: help, warnings, trace-time print, short tracebacks, no secrets,
errors in Lumi's words, and one way to show numbers."""

from __future__ import annotations

import json
import socket
import time

import lumi
import numpy as np
import pytest
from lumi.errors import LumiError, TraceError
from lumi.serving.gateway import gateway_file

from lumi_magics import remote
from lumi_magics.numbers import duration, job_elapsed, money, percent
from lumi_magics.widgets import render


def run(shell, source: str, capsys) -> tuple[object, str, str]:
    result = shell.run_cell(source)
    out = capsys.readouterr()
    return result, out.out, out.err


@pytest.mark.parametrize("source", ["%%remote --help\n", "%%remote --help", "%remote --help", "%remote -h"])
def test_remote_help_on_an_empty_cell_and_as_a_line_magic(shell, capsys, source):
    result, out, err = run(shell, source, capsys)
    assert result.success, result.error_in_exec or result.error_before_exec
    assert out.startswith("usage: %%remote [--python]")
    assert "%%%" not in out and "::" not in out and "``" not in out
    assert "    %%remote --tier enterprise --gpu H100\n" in out and "--strict-gpu" in out


@pytest.mark.parametrize("source", ["%%deploy --help\n", "%deploy --help"])
def test_deploy_help_on_an_empty_cell_and_as_a_line_magic(shell, capsys, source):
    result, out, _ = run(shell, source, capsys)
    assert result.success
    assert out.startswith("usage: %%deploy") and "    %%deploy mlp --input x:float32[batch,784]" in out
    assert "%%%" not in out and "::" not in out


def test_a_cell_magic_used_as_a_line_magic_says_how_to_use_it(shell, capsys):
    result, _, err = run(shell, "%remote y = x", capsys)
    assert not result.success and "is a cell magic" in err


def test_lumi_help_lists_every_subcommand_on_one_line_each(shell, capsys):
    result, out, _ = run(shell, "%lumi --help", capsys)
    assert result.success
    listed = out.split("commands:\n", 1)[1].splitlines()
    names = [line.split()[0] for line in listed if line.strip()]
    # the order is the order the view modules were imported in (other tests may import one first)
    assert sorted(names) == sorted(["status", "connect", "stop", "deployments", "dicts", "queues", "volumes",
                                    "schedules", "jobs", "costs", "cluster"])
    assert all(len(line.split(maxsplit=1)) == 2 for line in listed if line.strip())


def test_print_of_a_traced_array_shows_shape_dtype_and_cell_line(shell, capsys):
    shell.user_ns["x"] = np.ones(16, np.float32)
    result, out, _ = run(shell, "%%remote\nh = x * 2\nprint('h is', h)\ny = h + 1\n", capsys)
    assert result.success, result.error_in_exec
    assert "h is lumi.Tensor float32[16] (traced at cell line 1; values are only available after the run" in out
    np.testing.assert_array_equal(shell.user_ns["y"], np.full(16, 3, np.float32))


def test_unavailable_gpu_warns_once_and_names_the_fallback(shell, capsys):
    remote._warned_gpus.clear()
    shell.user_ns["x"] = np.ones(4, np.float32)
    result, _, err = run(shell, "%%remote --gpu H100\ny = x + 1\n", capsys)
    assert result.success, result.error_in_exec
    assert "--gpu H100: this cluster has no H100 (it has no GPU)" in err and "CPU fallback" in err
    np.testing.assert_array_equal(shell.user_ns["y"], np.full(4, 2, np.float32))
    result, _, err = run(shell, "%%remote --gpu H100\ny = x + 2\n", capsys)
    assert result.success and "H100" not in err  # said once


def test_strict_gpu_refuses(shell, capsys):
    shell.user_ns["x"] = np.ones(4, np.float32)
    result, _, _ = run(shell, "%%remote --gpu H100 --strict-gpu\ny = x + 1\n", capsys)
    assert isinstance(result.error_in_exec, LumiError)
    assert "--strict-gpu" in str(result.error_in_exec) and "not submitted" in str(result.error_in_exec)


def test_tracing_errors_show_the_cell_line_and_no_lumi_internals(shell, capsys, monkeypatch):
    monkeypatch.delenv("LUMI_DEBUG", raising=False)
    shell.user_ns["x"] = np.ones(4, np.float32)
    result, _, _ = run(shell, "%%remote --graph\ny = x * 2\nif y.sum() > 0:\n    z = y\n", capsys)
    error = result.error_in_exec
    assert isinstance(error, TraceError)
    lines = error._render_traceback_()
    assert "  cell, line 2" in lines and "    if y.sum() > 0:" in lines
    assert lines[-1].startswith("TraceError: ") and "cell line 2" in lines[-1]
    assert not any("lumi" in line and ".py" in line for line in lines), lines
    assert len(lines) <= 5


def test_lumi_debug_keeps_the_full_traceback(shell, capsys, monkeypatch):
    monkeypatch.setenv("LUMI_DEBUG", "1")
    shell.user_ns["x"] = np.ones(4, np.float32)
    result, _, _ = run(shell, "%%remote --graph\nif x.sum() > 0:\n    z = x\n", capsys)
    assert isinstance(result.error_in_exec, TraceError)
    assert not hasattr(result.error_in_exec, "_render_traceback_")


def test_deploy_prints_no_key(shell, capsys):
    shell.user_ns["w"] = np.eye(3, dtype=np.float32)
    result, out, _ = run(shell, "%%deploy eye --input x:float32[batch,3]\ndef f(x):\n    return x @ w\n", capsys)
    assert result.success, result.error_in_exec
    key = json.loads(gateway_file().read_text())["key"]
    assert key not in out and "LUMI_KEY=" + key[:5] not in out
    assert 'Authorization: Bearer $LUMI_KEY' in out and "lumi keys show" in out
    handle = shell.user_ns["eye"]
    assert key not in repr(handle) and key not in str(handle)


def test_an_unreachable_gateway_is_a_lumi_error_saying_how_to_start_it():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handle = lumi.Endpoint("mlp", url=f"http://127.0.0.1:{port}", key="k", reconnect_s=1.0)
    start = time.monotonic()
    with pytest.raises(LumiError) as caught:
        handle(np.ones((1, 3), np.float32))
    assert 1.0 <= time.monotonic() - start < 10  # retried for reconnect_s, then told
    message = str(caught.value)
    assert f"127.0.0.1:{port} does not answer" in message and "lumi serve" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no httpx traceback under it


@pytest.mark.parametrize(("usd", "shown"), [
    (0, "$0"), (7.9e-9, "<$0.000001"), (0.0000012, "$0.0000012"), (0.0000079, "$0.0000079"),
    (0.0012, "$0.0012"), (0.5, "$0.50"), (3.951, "$3.95"), (None, "—"),
])
def test_money(usd, shown):
    assert money(usd) == shown


def test_duration_percent_and_elapsed_from_the_dispatcher_clock():
    assert [duration(s) for s in (0.08, 3.54, 42.4, 125, 3725)] == ["0.1 s", "3.5 s", "42 s", "2 min 05 s",
                                                                    "1 h 02 min"]
    assert percent(0.424) == "42%"
    job = {"submitted_at": 100.0, "started_at": 103.4, "finished_at": 103.5}
    assert job_elapsed(job) == pytest.approx(3.5)  # from submission, as the panel shows it


def test_the_widget_first_frame_is_a_complete_table():
    first = render(None, 0.0)
    assert first.startswith("<table>") and "submitting" in first and "cost so far" in first and "$0" in first
    worker = {"fallback": True, "device": "CPU", "utilization": 0.5, "utilization_source": "busy"}
    job = {"state": "running", "position": None, "tier_position": None, "tier": "api", "device": "CPU",
           "started_at": None, "cost": 0.0, "error": None, "submitted_at": 1.0, "finished_at": 4.5}
    shown = render({"job": job, "worker": worker, "price": 0.0}, 9.0)
    assert "utilization</td><td><span" in shown and "50% busy fraction" in shown and "3.5 s" in shown
