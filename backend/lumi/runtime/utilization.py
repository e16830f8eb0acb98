"""Device utilization: NVML where a GPU exists, else the worker's busy fraction (CPU fallback)."""

from __future__ import annotations

import os
import threading
import time
from collections import deque

NVML = "nvml"
BUSY_FRACTION = "busy fraction (CPU fallback)"
WINDOW_S = 2.0


class BusyMeter:
    """Fraction of the last ``window`` seconds spent executing jobs (thread safe)."""

    def __init__(self, window: float = WINDOW_S):
        self.window = window
        self._spans: deque[tuple[float, float]] = deque()
        self._since: float | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._since = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            if self._since is not None:
                self._spans.append((self._since, time.monotonic()))
                self._since = None

    def fraction(self) -> float:
        now = time.monotonic()
        edge = now - self.window
        with self._lock:
            while self._spans and self._spans[0][1] < edge:
                self._spans.popleft()
            spans = [*self._spans, *([(self._since, now)] if self._since is not None else [])]
        busy = sum(end - max(start, edge) for start, end in spans)
        return min(1.0, busy / self.window)


def _nvml_handle():
    import pynvml

    pynvml.nvmlInit()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
    return pynvml, pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)


def device_name() -> str:
    """This process's device: the GPU's name via NVML, else ``"CPU"`` (the CPU fallback)."""
    try:
        pynvml, handle = _nvml_handle()
        name = pynvml.nvmlDeviceGetName(handle)
        return name.decode() if isinstance(name, bytes) else name
    except Exception:
        return "CPU"


def sample(meter: BusyMeter, device: str) -> dict:
    """Utilization (0..1), where it came from, and device memory in bytes when known."""
    if device != "CPU":
        try:
            pynvml, handle = _nvml_handle()
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            return {"utilization": rates.gpu / 100, "utilization_source": NVML,
                    "memory_used": int(memory.used), "memory_total": int(memory.total)}
        except Exception:
            pass
    return {"utilization": meter.fraction(), "utilization_source": BUSY_FRACTION,
            "memory_used": None, "memory_total": None}
