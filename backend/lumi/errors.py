"""Every error Lumi raises derives from :class:`LumiError` and says what to do next."""

from __future__ import annotations

import queue


class LumiError(Exception):
    """Base class of Lumi's errors."""


class UnsupportedOperation(LumiError):
    """The tracer cannot record this operation as a graph."""


class TraceError(LumiError):
    """Tracing failed: value-dependent control flow, mutation, or a misuse of a lazy tensor."""


class ShapeError(LumiError):
    """Shapes or dtypes do not fit an operation or a graph's declared inputs."""


class FormatError(LumiError):
    """A `.lumi` file is corrupt, truncated, too large, or of an unknown version."""


class ExecutionError(LumiError):
    """An operation failed while running; names the op and the line that created it."""


class OutOfMemory(ExecutionError):
    """A job ran out of memory (its worker's limit, the host's or the GPU's); its worker was replaced."""


class PastMemoryLimit(OutOfMemory, MemoryError):
    """Raised inside a job, by its worker's memory watch, when the worker went past ``LUMI_WORKER_MEMORY_BYTES``
    (the worker turns it into an OutOfMemory that says so)."""


class Busy(LumiError):
    """The cluster refused work under back pressure; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):
        return (type(self), (str(self), self.retry_after))


class Unavailable(Busy):
    """Lumi's control plane is restarting (the dispatcher came back from a crash); retry after ``retry_after``
    seconds. The gateway answers it as 503 with Retry-After."""


class QuotaExceeded(LumiError):
    """A tenant asked for more than its tier's quota (``quota`` names which: replicas, gpus, ...)."""

    def __init__(self, message: str, quota: str = ""):
        super().__init__(message)
        self.quota = quota

    def __reduce__(self):
        return (type(self), (str(self), self.quota))


class TooLarge(LumiError):
    """A request or its answer is past a size limit (HTTP 413); split the batch."""


class GraphTooLarge(TooLarge):
    """A graph is past the node or compile-time budget that serving admits (refused at deploy)."""


class IndexOutOfRange(LumiError):
    """An index (a gathered token id, say) is past the end of the axis it indexes: bad input (HTTP 400);
    nothing was read there."""

    def __init__(self, value: int, axis: int, size: int, where: str = ""):
        super().__init__(f"index {value} is out of range for axis {axis} of size {size}{where}; valid indices "
                         f"are -{size} to {size - 1}")
        self.value, self.axis, self.size, self.where = value, axis, size, where

    def __reduce__(self):
        return (type(self), (self.value, self.axis, self.size, self.where))


class LeaseRevoked(LumiError):
    """The worker no longer serves this endpoint lease (the dispatcher reclaimed it); ask for a new one."""


class LaneClosed(LumiError):
    """The worker no longer holds this process's lane (the dispatcher closed it); submit through the queue."""


class JobTimeout(LumiError, TimeoutError):
    """``Job.result(timeout)`` ran out of time; the job itself goes on (``job.cancel()`` stops it)."""


class NotFound(LumiError):
    """No endpoint or version of that name (HTTP 404; also what another tenant's endpoint answers)."""


class Forbidden(LumiError):
    """The key may not do this (a tier above its own, or a name another tenant holds): HTTP 403."""


class TamperedModel(FormatError):
    """A stored model's bytes no longer hash to its name (HTTP 500 "was modified")."""


class NotConnected(LumiError):
    """No Lumi gateway to talk to (none recorded, or the recorded one does not answer); the message says how
    to start one."""


# -- the store (lumi.Dict, lumi.Queue, lumi.Volume): each also the built-in error it stands for ------------
class InvalidName(LumiError, ValueError):
    """A store name, tenant, key or path outside the allowed charset or length."""


class StoreNotFound(LumiError):
    """No store of that name that the caller may open: missing, or another tenant's (one message for both)."""


class MissingKey(LumiError, KeyError):
    """``d[key]`` for a key the Dict does not hold; names the Dict and the key."""

    def __str__(self) -> str:  # KeyError's own str() shows the repr of its message
        return str(self.args[0]) if self.args else ""


class ValueTooLarge(TooLarge):
    """A Dict value or Queue item past ``LUMI_STORE_MAX_VALUE_BYTES`` once encoded."""


class QueueFull(Busy):
    """``put`` on a Queue holding ``maxsize`` items; nothing was added."""


class QueueEmpty(LumiError, queue.Empty):
    """``get`` found no item before its timeout (``except queue.Empty`` catches it too)."""


class PathNotFound(LumiError, FileNotFoundError):
    """A Volume path that does not exist."""


class UntrustedValue(LumiError):
    """A pickled value written by another tenant: unpickling runs code, so only its own tenant loads it."""


class MapItemError(ExecutionError):
    """One item of a ``lumi.map`` failed: ``index`` is its place in the input, ``remote`` what the
    worker reported (for a Python function, the exception and its traceback there)."""

    def __init__(self, index: int, remote: str):
        super().__init__(f"lumi.map: item {index} failed: {remote}")
        self.index = index
        self.remote = remote

    def __reduce__(self):
        return type(self), (self.index, self.remote)


# -- schedules (lumi.schedule) ------------------------------------------------------------------------------
class ScheduleError(LumiError, ValueError):
    """A schedule that cannot be made as asked: a bad cron expression, name, policy or target."""


class ScheduleNotFound(NotFound):
    """No schedule of that name that the caller may see (missing, or another tenant's: one message for both)."""


class JournalError(LumiError):
    """The dispatcher's journal could not be written (a full or read-only disk): the job was not accepted."""
