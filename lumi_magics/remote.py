"""``%%remote``: run a cell's computation on a Lumi worker and bring its variables back."""

from __future__ import annotations

import time

import ray
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from lumi.errors import LumiError
from lumi.runtime import pool

from .capture import analyze, results_to_namespace, trace_cell
from .progress import Progress


def _get(ref, timeout: float | None, progress: Progress):
    """Wait for ``ref`` while showing progress; Ctrl-C cancels the remote task."""
    start = time.monotonic()
    try:
        while True:
            ready, _ = ray.wait([ref], timeout=0.25)
            if ready:
                break
            elapsed = time.monotonic() - start
            progress.update(state="running", elapsed=elapsed)
            if timeout is not None and elapsed > timeout:
                ray.cancel(ref)
                raise LumiError(f"the cell did not finish within --timeout {timeout:g} s and was cancelled")
    except KeyboardInterrupt:
        ray.cancel(ref)
        progress.update(state="cancelled")
        raise
    try:
        result = ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, LumiError):
            raise e.cause from None
        raise LumiError(f"the worker failed: {e.cause!r}") from None
    except ray.exceptions.RayActorError as e:
        raise LumiError(f"the worker running this cell died ({e}); run the cell again") from None
    progress.update(state="done", elapsed=time.monotonic() - start)
    return result


@magic_arguments()
@argument("--python", action="store_true",
          help="run the cell as ordinary Python on a worker (cloudpickle), for code the tracer cannot capture")
@argument("--timeout", type=float, default=None, help="cancel the cell after this many seconds")
def remote(line: str, cell: str, shell=None):
    """Run this cell's computation on a Lumi worker (a GPU actor on Ray) and bring its variables back.

    NumPy arrays the cell reads become inputs of a traced graph; the names it assigns come
    back as NumPy arrays. With --python the cell runs unmodified as Python on the worker.

    Example::

        %%remote
        y = np.tanh(x @ w + b).sum(axis=1)
    """
    args = parse_argstring(remote, line)
    ns = shell.user_ns
    progress = Progress()
    if args.python:
        info = analyze(cell, ns)
        inputs = {name: ns[name] for name in info.inputs}
        ref = pool.pick().run_python.remote(cell, inputs, info.outputs + info.definitions)
        values = _get(ref, args.timeout, progress)
    else:
        traced = trace_cell(cell, ns)
        info = traced.info
        results = []
        if traced.graph is not None:
            ref = pool.pick().run_graph.remote(traced.graph, *traced.arrays)
            results = _get(ref, args.timeout, progress)
        values = results_to_namespace(traced, results)
        if info.definition_source:
            shell.run_cell(info.definition_source, store_history=False, silent=True)
    ns.update(values)
    progress.close()
