"""Running a cell as ordinary Python on a worker (``%%remote --python``)."""

from __future__ import annotations

import linecache
import traceback

from ..errors import ExecutionError

CELL_FILENAME = "<lumi-cell>"


def run_cell(source: str, inputs: dict, outputs: list[str]) -> dict:
    """Execute ``source`` with ``inputs`` as globals; return the values bound to ``outputs``.

    A failure raises ExecutionError naming the cell line it came from, with the traceback through the
    cell's own lines (functions defined in the cell included), not through Lumi's."""
    namespace = {"__name__": "__lumi_remote__", **inputs}
    linecache.cache[CELL_FILENAME] = (len(source), None, source.splitlines(True), CELL_FILENAME)
    try:
        exec(compile(source, CELL_FILENAME, "exec"), namespace)
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == CELL_FILENAME]
        if not frames:
            raise ExecutionError(f"the cell raised {type(e).__name__} on the worker: {e}") from None
        lines = "".join(f"\n  cell line {f.lineno}, in {f.name}: {(f.line or '').strip()}" for f in frames)
        raise ExecutionError(f"the cell raised {type(e).__name__} at cell line {frames[-1].lineno} on the worker: "
                             f"{e}\ncell traceback (most recent call last):{lines}") from None
    return {name: namespace[name] for name in outputs if name in namespace}
