"""A worker's memory limit: a job that takes its worker past ``LUMI_WORKER_MEMORY_BYTES`` of resident memory is
stopped with :class:`PastMemoryLimit` raised in its own thread, before the kernel's OOM killer or Ray's
memory monitor kills the whole worker (and every job and lease on it) with no word about why."""

from __future__ import annotations

import ctypes
import threading
import time

import psutil

from ..errors import PastMemoryLimit

CHECK_EVERY_S = 0.05


def memory_error(error: BaseException) -> MemoryError | None:
    """The MemoryError behind ``error`` (itself, or what it was raised from), if any: host allocations and
    CuPy's ``OutOfMemoryError`` alike."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MemoryError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def resident_bytes() -> int:
    return psutil.Process().memory_info().rss


class MemoryWatch:
    """Watches this process's resident memory while a job runs; past ``limit`` bytes it raises
    PastMemoryLimit in the job's thread (once per job). ``limit`` 0 watches nothing."""

    def __init__(self, limit: int):
        self.limit = limit
        self.peak = 0
        self._thread_id: int | None = None
        self._lock = threading.Lock()
        if limit:
            threading.Thread(target=self._watch, name="lumi-memory-watch", daemon=True).start()

    def __enter__(self) -> MemoryWatch:
        with self._lock:
            self.peak, self._thread_id = 0, threading.get_ident()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            if self._thread_id is not None:  # a limit hit just as the job ended must not land after it
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)
            self._thread_id = None

    def _watch(self) -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            rss = resident_bytes()
            with self._lock:
                if self._thread_id is None or rss <= self.limit:
                    continue
                self.peak = rss
                # Lands at the job's next Python instruction; inside one long C call it waits for the call to end.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id),
                                                           ctypes.py_object(PastMemoryLimit))
                self._thread_id = None
