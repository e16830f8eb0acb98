"""Running a notebook cell in the test IPython shell (the ``shell`` fixture), raising what it raised."""

from __future__ import annotations


def run(shell, source: str) -> dict:
    """Run ``source`` as one cell; return the user namespace, or raise the cell's error."""
    result = shell.run_cell(source)
    if result.error_in_exec:
        raise result.error_in_exec
    return shell.user_ns
