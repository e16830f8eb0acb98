"""A real Jupyter kernel runs a ``%%remote`` cell and streams widget updates while the cell blocks."""

from __future__ import annotations

import os
import queue
import sys

import pytest
from jupyter_client import KernelManager


def execute(client, code: str, timeout: float = 120) -> list[dict]:
    """Run ``code``; return the IOPub messages of that request up to its execute_reply."""
    msg_id = client.execute(code)
    messages = []
    while True:
        try:
            msg = client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no reply to {code!r}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=timeout)
    assert reply["content"]["status"] == "ok", reply["content"]
    return messages


@pytest.mark.slow
def test_remote_cell_streams_widget_updates_before_it_finishes(ray_cluster, lumi_home):
    address = ray_cluster.get_runtime_context().gcs_address
    env = {**os.environ, "LUMI_HOME": lumi_home, "LUMI_RAY_ADDRESS": address}
    manager = KernelManager(kernel_cmd=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        execute(client, "%load_ext lumi_magics\nimport numpy as np\nx = np.ones(3, np.float32)")
        messages = execute(client, "%%remote --python --tier api\nimport time\ntime.sleep(1.5)\nz = float(x.sum())")
        opened = [m for m in messages if m["msg_type"] == "comm_open"]
        comms = [m["content"]["data"] for m in messages if m["msg_type"] == "comm_msg"]
        updates = [data for data in comms if data.get("method") == "update"]
        assert opened, "the cell displayed no widget"
        assert len(updates) >= 2, [m["msg_type"] for m in messages]
        states = [str(data["state"]) for data in updates]
        assert any("running" in s for s in states) and any("done" in s for s in states)
        assert any("CPU fallback" in s or "GPU" in s for s in states)
        out = execute(client, "print(z)")
        assert any(m["msg_type"] == "stream" and m["content"]["text"].strip() == "3.0" for m in out)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
