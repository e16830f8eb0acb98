"""A GPU worker actor: runs graphs (and plain Python cells) on its device and meters each run."""

from __future__ import annotations

import os
import socket
import time

import ray

from ..errors import ExecutionError, LumiError
from .execute import default_target, execute
from .python_cell import run_cell
from .utilization import BusyMeter, device_name, sample

__all__ = ["Worker", "device_name"]


@ray.remote(num_gpus=1, num_cpus=0, max_restarts=0, concurrency_groups={"control": 1})
class Worker:
    """Runs one job at a time; ``info`` and ``stats`` answer from a separate thread meanwhile."""

    def __init__(self):
        self.device = device_name()
        self.host = socket.gethostname()
        self.meter = BusyMeter()

    @ray.method(concurrency_group="control")
    def info(self) -> dict:
        return {"device": self.device, "host": self.host, "pid": os.getpid(), "target": default_target(),
                "fallback": self.device == "CPU"}

    @ray.method(concurrency_group="control")
    def stats(self) -> dict:
        return sample(self.meter, self.device)

    @ray.method(num_returns=2)
    def run_job(self, kind: str, program, *args):
        """Run a job; return ``(meter reading, result)`` so the scheduler sees only the small part.

        ``kind`` "graph": ``program`` is a Graph and ``args`` its input arrays; the result is the
        list of outputs. ``kind`` "python": ``program`` is ``(source, output names)`` and ``args``
        holds the inputs dict; the result is the dict of outputs. A failure comes back as the
        exception in place of the result (and its message in the reading), so the run is still metered.
        """
        self.meter.start()
        start = time.perf_counter()
        error = None
        try:
            result = execute(program, args) if kind == "graph" else run_cell(program[0], args[0], program[1])
        except LumiError as e:
            result = error = e
        except Exception as e:
            result = error = ExecutionError(f"the job raised {type(e).__name__} on the worker: {e}")
        seconds = time.perf_counter() - start
        self.meter.stop()
        reading = {"seconds": seconds, "device": self.device, "target": default_target(),
                   "error": None if error is None else str(error)}
        return reading, result
