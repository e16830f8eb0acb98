"""``%%remote``: run a cell's computation on a Lumi worker and bring its variables back."""

from __future__ import annotations

import sys
import time

import ray
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from lumi.errors import Busy, LumiError, TraceError, UnsupportedOperation
from lumi.graph.tensor import CELL_FILENAME
from lumi.runtime import jobs
from lumi.runtime.dispatcher import get_dispatcher

from .backend import start_backend
from .capture import analyze, results_to_namespace, trace_cell
from .widgets import job_view


def _submit(spec: dict, wait: bool, view, outputs: int | None) -> jobs.Job:
    """Submit; under back pressure either raise (``--no-wait``) or count down and retry politely."""
    start = time.monotonic()
    while True:
        try:
            return jobs.submit_spec(spec, outputs=outputs)
        except Busy as e:
            if not wait:
                raise Busy(f"{e} (the cell was not submitted; run it again, or drop --no-wait to wait)",
                           retry_after=e.retry_after) from None
            deadline = time.monotonic() + e.retry_after
            while (left := deadline - time.monotonic()) > 0:
                view.show(None, time.monotonic() - start, note=f"cluster busy, retrying in {left:.0f} s")
                time.sleep(min(0.25, left))


def _follow(job: jobs.Job, timeout: float | None, view):
    """Wait for the job while updating the view at least twice a second; Ctrl-C cancels it on the cluster."""
    start = time.monotonic()
    try:
        while True:
            ready, _ = ray.wait([job.waiter()], timeout=0.25)
            elapsed = time.monotonic() - start
            if ready:
                break
            view.show(job.progress(), elapsed)
            if timeout is not None and elapsed > timeout:
                job.cancel()
                raise LumiError(f"the cell did not finish within --timeout {timeout:g} s and was cancelled")
        try:
            return job.outputs()
        finally:
            view.show(job.progress(), time.monotonic() - start, final=True)
    except KeyboardInterrupt:
        job.cancel()
        view.show(job.progress(), time.monotonic() - start, final=True)
        raise


_warned_gpus: set[str] = set()
WORKERS_WAIT_S = 15.0


def check_gpu(gpu: str, strict: bool) -> None:
    """Say once per GPU type what a job asking for ``gpu`` runs on when the cluster has no such GPU
    (the CPU fallback, or a wait for such a worker); with ``strict``, refuse it instead."""
    kind = gpu.split(":")[0]
    deadline = time.monotonic() + WORKERS_WAIT_S
    while not (info := jobs.call(get_dispatcher().cluster.remote()))["workers"] and time.monotonic() < deadline:
        time.sleep(0.25)  # workers still starting: what they are decides the answer
    gpus = sorted({w["device"] for w in info["workers"] if not w["fallback"] and w["state"] != "dead"})
    if any(kind.upper() in d.upper() for d in gpus):
        return
    has = f"its GPUs are {', '.join(gpus)}" if gpus else "it has no GPU"
    runs = ("it waits in the queue until such a worker joins" if gpus
            else "it runs on the CPU fallback (the generated CPU kernels) instead")
    if strict:
        raise LumiError(f"--gpu {gpu} --strict-gpu: this cluster has no {kind} ({has}), so the cell was not "
                        f"submitted. Drop --strict-gpu to run anyway: {runs}.")
    if kind.upper() not in _warned_gpus:
        _warned_gpus.add(kind.upper())
        print(f"lumi: --gpu {gpu}: this cluster has no {kind} ({has}); {runs}. "
              "Add --strict-gpu to refuse instead. (Said once per GPU type.)", file=sys.stderr)


@magic_arguments()
@argument("--python", action="store_true",
          help="run the cell as ordinary Python on a worker (cloudpickle), for code the tracer cannot capture")
@argument("--graph", action="store_true",
          help="insist on a traced graph: raise where the tracer refuses the cell instead of running it as Python")
@argument("--tier", default="api", help="scheduling tier (enterprise, api, unlimited, light, free); default api")
@argument("--tenant", default="local", help="who is billed; default local")
@argument("--gpu", default=None, metavar="TYPE[:N]", help="GPU type to run on, e.g. H100 or H100:1")
@argument("--strict-gpu", action="store_true",
          help="refuse to run when the cluster has no GPU of the --gpu type (default: warn once, then run)")
@argument("--timeout", type=float, default=None, help="cancel the job after this many seconds")
@argument("--wait", dest="wait", action="store_true", default=True,
          help="when the cluster is busy, retry politely with a countdown (default)")
@argument("--no-wait", dest="wait", action="store_false", help="when the cluster is busy, raise lumi.Busy")
def remote(line: str, cell: str, shell=None):
    """Run this cell's computation on a Lumi worker (a GPU actor on Ray) and bring its variables back.

    NumPy arrays the cell reads (and dicts or lists of them) become inputs of a traced graph; the
    names it assigns come back as NumPy arrays. Where the tracer refuses the cell (a NumPy call it
    does not know, control flow on array values) the cell runs unmodified as Python on the worker,
    and one line says why; --graph raises instead, --python skips tracing.
    While it waits and runs, the cell shows its queue position, device utilization and cost.
    Ctrl-C cancels the job on the cluster.

    Example:

        %%remote --tier enterprise --gpu H100
        y = np.tanh(x @ w + b).sum(axis=1)
    """
    args = parse_argstring(remote, line)
    start_backend()
    if args.gpu:
        check_gpu(args.gpu, args.strict_gpu)
    ns = shell.user_ns
    options = dict(tier=args.tier, tenant=args.tenant, gpu=args.gpu)
    traced = None
    if not args.python:
        try:
            traced = trace_cell(cell, ns)
        except (UnsupportedOperation, TraceError) as e:
            if args.graph:
                raise
            print(f"lumi: running this cell as Python on a worker: {fallback_reason(e)} (--graph raises instead)",
                  file=sys.stderr)
    if traced is None:
        info = analyze(cell, ns)
        spec = jobs.python_spec(cell, {name: ns[name] for name in info.inputs}, info.outputs + info.definitions,
                                label="%%remote --python", **options)
        values = _run(spec, args, shell, outputs=None)
    else:
        info = traced.info
        results = []
        if traced.graph is not None:
            spec = jobs.graph_spec(traced.graph, traced.arrays, label="%%remote", **options)
            results = _run(spec, args, shell, outputs=len(traced.graph.outputs))
        values = results_to_namespace(traced, results)
        if info.definition_source:
            shell.run_cell(info.definition_source, store_history=False, silent=True)
    ns.update(values)


def fallback_reason(e: Exception) -> str:
    """Why the tracer stopped, in one line: its message's first sentence and the cell line that stopped it."""
    first = str(e).split("; ")[0].rstrip(".")
    tb, line = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == CELL_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return first if line is None or "cell line" in first else f"{first} at cell line {line}"


def _run(spec: dict, args, shell, outputs: int | None):
    view = job_view(shell)
    try:
        job = _submit(spec, args.wait, view, outputs)
        return _follow(job, args.timeout, view)
    finally:
        view.close()
