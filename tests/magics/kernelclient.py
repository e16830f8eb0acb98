"""Driving real Jupyter kernels (jupyter_client) from the tests."""

from __future__ import annotations

import queue
import re
import sys

from jupyter_client import KernelManager


class Kernels:
    """Start kernels with a given environment, run code in them, shut them down."""

    def __init__(self):
        self.managers: list[KernelManager] = []

    def start(self, env: dict):
        manager = KernelManager(kernel_cmd=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
        manager.start_kernel(env=env)
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=120)
        self.managers.append(manager)
        client.manager = manager
        return client

    @staticmethod
    def execute(client, code: str, timeout: float = 300, ok: bool = True) -> list[dict]:
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
        if ok:
            assert reply["content"]["status"] == "ok", text(messages) + str(reply["content"])
        return messages

    def shutdown(self, client) -> None:
        client.stop_channels()
        client.manager.shutdown_kernel(now=False)
        self.managers.remove(client.manager)


def text(messages: list[dict]) -> str:
    """Everything a cell showed: streams, results, displays and error tracebacks (ANSI codes removed)."""
    parts = []
    for m in messages:
        c = m["content"]
        if m["msg_type"] == "stream":
            parts.append(c["text"])
        elif m["msg_type"] in ("execute_result", "display_data"):
            parts.append(c["data"].get("text/plain", ""))
        elif m["msg_type"] == "error":
            parts.append("\n".join(c["traceback"]))
    return re.sub(r"\x1b\[[0-9;]*m", "", "".join(parts))
