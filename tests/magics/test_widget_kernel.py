"""A real Jupyter kernel runs a ``%%remote`` cell and streams widget updates while the cell blocks."""

from __future__ import annotations

import os

import pytest


@pytest.mark.slow
def test_remote_cell_streams_widget_updates_before_it_finishes(ray_cluster, lumi_home, kernels):
    address = ray_cluster.get_runtime_context().gcs_address
    client = kernels.start({**os.environ, "LUMI_HOME": lumi_home, "LUMI_RAY_ADDRESS": address})
    kernels.execute(client, "%load_ext lumi_magics\nimport numpy as np\nx = np.ones(3, np.float32)")
    messages = kernels.execute(client, "%%remote --python --tier api\nimport time\ntime.sleep(1.5)\nz = float(x.sum())")
    opened = [m for m in messages if m["msg_type"] == "comm_open"
              and m["content"]["data"]["state"].get("_model_name") == "HTMLModel"]
    comms = [m["content"]["data"] for m in messages if m["msg_type"] == "comm_msg"]
    updates = [data for data in comms if data.get("method") == "update"]
    assert opened, "the cell displayed no widget"
    first = str(opened[0]["content"]["data"]["state"])
    assert "submitting" in first and "cost so far" in first, "the widget's first frame is incomplete: " + first
    assert len(updates) >= 2, [m["msg_type"] for m in messages]
    states = [str(data["state"]) for data in updates]
    assert any("running" in s for s in states) and any("done" in s for s in states)
    assert any("CPU fallback" in s or "GPU" in s for s in states)
    out = kernels.execute(client, "print(z)")
    assert any(m["msg_type"] == "stream" and m["content"]["text"].strip() == "3.0" for m in out)


@pytest.mark.slow
def test_a_python_cells_first_print_shows_before_the_cell_finishes(ray_cluster, lumi_home, kernels):
    address = ray_cluster.get_runtime_context().gcs_address
    client = kernels.start({**os.environ, "LUMI_HOME": lumi_home, "LUMI_RAY_ADDRESS": address})
    kernels.execute(client, "%load_ext lumi_magics")
    messages = kernels.execute(client, "%%remote --python\nimport time, warnings\nprint('first line', flush=True)\n"
                                       "time.sleep(4)\nwarnings.warn('late warning')\nprint('second line')\nz = 1")
    streams = [(i, m["content"]["name"], m["content"]["text"]) for i, m in enumerate(messages)
               if m["msg_type"] == "stream"]
    first = next(i for i, _, text in streams if "first line" in text)
    running_after = [i for i, m in enumerate(messages) if m["msg_type"] == "comm_msg" and i > first
                     and "running" in str(m["content"]["data"].get("state"))]
    assert running_after, "the first print came only after the job had stopped running"
    assert any(name == "stdout" and "second line" in text for _, name, text in streams)
    assert any(name == "stderr" and "late warning" in text for _, name, text in streams)
