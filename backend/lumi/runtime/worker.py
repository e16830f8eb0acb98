"""A GPU worker actor: runs graphs (and plain Python cells) on its device."""

from __future__ import annotations

import os
import socket

import ray

from .execute import default_target, execute
from .python_cell import run_cell


def device_name() -> str:
    """This process's device: the GPU's name via NVML, else ``"CPU"`` (the CPU fallback)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)
        name = pynvml.nvmlDeviceGetName(handle)
        return name.decode() if isinstance(name, bytes) else name
    except Exception:
        return "CPU"


@ray.remote(num_gpus=1, num_cpus=0, max_restarts=0)
class Worker:
    def __init__(self):
        self.device = device_name()
        self.host = socket.gethostname()

    def info(self) -> dict:
        return {"device": self.device, "host": self.host, "pid": os.getpid(), "target": default_target()}

    def run_graph(self, graph, *arrays):
        return execute(graph, arrays)

    def run_python(self, source: str, inputs: dict, outputs: list[str]) -> dict:
        return run_cell(source, inputs, outputs)
