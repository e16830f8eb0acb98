"""Every error Lumi raises derives from :class:`LumiError` and says what to do next."""

from __future__ import annotations


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


class Busy(LumiError):
    """The cluster refused work under back pressure; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):
        return (type(self), (str(self), self.retry_after))


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
