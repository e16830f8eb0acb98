"""Running a cell as ordinary Python on a worker (``%%remote --python``)."""

from __future__ import annotations

import traceback

from ..errors import ExecutionError

CELL_FILENAME = "<lumi-cell>"


def run_cell(source: str, inputs: dict, outputs: list[str]) -> dict:
    """Execute ``source`` with ``inputs`` as globals; return the values bound to ``outputs``."""
    namespace = {"__name__": "__lumi_remote__", **inputs}
    try:
        exec(compile(source, CELL_FILENAME, "exec"), namespace)
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == CELL_FILENAME]
        where = f" at cell line {frames[-1].lineno}" if frames else ""
        raise ExecutionError(f"the cell raised {type(e).__name__}{where} on the worker: {e}") from None
    return {name: namespace[name] for name in outputs if name in namespace}
