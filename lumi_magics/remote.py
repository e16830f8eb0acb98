"""``%%remote``: run a cell's computation on a Lumi worker and bring its variables back."""

from __future__ import annotations

import contextlib
import sys
import time

import ray
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from lumi.errors import Busy, LumiError, TraceError, UnsupportedOperation
from lumi.graph.tensor import CELL_FILENAME
from lumi.runtime import jobs, output
from lumi.runtime.dispatcher import get_dispatcher
from lumi.runtime.options import GpuRequest

from .backend import start_backend
from .capture import analyze, results_to_namespace, trace_cell
from .options import notebook_placement, placement_arguments
from .widgets import job_view


def _submit(submission: jobs.Submission, wait: bool, view) -> jobs.Job:
    """Submit; under back pressure either raise (``--no-wait``) or count down and retry politely."""
    start = time.monotonic()
    while True:
        try:
            return submission.submit()
        except Busy as e:
            if not wait:
                raise Busy(f"{e} (the cell was not submitted; run it again, or drop --no-wait to wait)",
                           retry_after=e.retry_after) from None
            deadline = time.monotonic() + e.retry_after
            while (left := deadline - time.monotonic()) > 0:
                view.show(None, time.monotonic() - start, note=f"cluster busy, retrying in {left:.0f} s")
                countdown_sleep(min(0.25, left))


countdown_sleep = time.sleep  # the Busy countdown's wait (tests interrupt it)


def _follow(job: jobs.Job, timeout: float | None, view, echo: bool = False):
    """Wait for the job while updating the view at least twice a second (a Ctrl-C is handled by ``_run``);
    with ``echo`` (a Python job), print what it prints as it goes."""
    start = time.monotonic()
    while True:
        ended = job.wait(0.25)
        jobs.check_interrupts()
        elapsed = time.monotonic() - start
        if ended:
            break
        view.show(job.progress(), elapsed)
        if echo:
            _echo(view, job.new_output())
        if timeout is not None and elapsed > timeout:
            job.cancel()
            raise LumiError(f"the cell did not finish within --timeout {timeout:g} s and was cancelled")
    try:
        value = job.outputs()
    except Exception:  # failed, or cancelled elsewhere (a KeyboardInterrupt is _run's)
        _finish(job, view, start, echo)
        raise
    _finish(job, view, start, echo)
    return value


def _finish(job: jobs.Job, view, start: float, echo: bool) -> None:
    """The rest of what the job printed, then the view's last frame; a dispatcher or display hiccup here never
    replaces the cell's own outcome."""
    if echo:
        with contextlib.suppress(LumiError, ray.exceptions.RayError):
            _echo(view, job.new_output())
    _show_final(view, job.progress, start)


def _echo(view, chunks: list[tuple[str, str]]) -> None:
    """Write what the job printed to this cell's own stdout and stderr (clearing a text progress line first)."""
    if not chunks:
        return
    view.make_room()
    output.write(chunks)


def _show_final(view, info, start: float) -> None:
    """The view's last frame; a dispatcher or display hiccup here never replaces the cell's own outcome."""
    with contextlib.suppress(Exception):
        view.show(info(), time.monotonic() - start, final=True)


def _interrupted(submission: jobs.Submission, view, start: float, wait: float) -> None:
    """Ctrl-C anywhere in ``_run``: cancel what the cell submitted (also a job whose id had not reached this
    thread yet) and show it cancelled. The caller re-raises the KeyboardInterrupt; nothing here replaces it."""
    record = submission.cancel(wait)
    if record is not None and view is not None:
        _show_final(view, lambda: {"job": record, "worker": None, "price": 0.0}, start)
    elif submission.job is not None:
        print(f"lumi: asked the cluster to cancel job {submission.job.id}; it has not confirmed yet "
              "(%lumi jobs shows it)", file=sys.stderr)


_warned_gpus: set[str] = set()
WORKERS_WAIT_S = 15.0


def check_gpu(gpu: GpuRequest | str, strict: bool) -> None:
    """Say once per GPU type what a job asking for ``gpu`` runs on when the cluster has no such GPU
    (the CPU fallback, or a wait for such a worker); with ``strict``, refuse it instead. Whether a
    worker has as many GPUs as a count asks for is the dispatcher's to say."""
    gpu = GpuRequest.parse(gpu)
    if gpu is None:
        return
    what = gpu.kind or "GPU"
    deadline = time.monotonic() + WORKERS_WAIT_S
    while not (info := jobs.call(get_dispatcher().cluster.remote()))["workers"] and time.monotonic() < deadline:
        time.sleep(0.25)  # workers still starting: what they are decides the answer
    gpus = sorted({w["device"] for w in info["workers"] if not w["fallback"] and w["state"] != "dead"})
    if any(gpu.matches(d) for d in gpus):
        return
    has = f"its GPUs are {', '.join(gpus)}" if gpus else "it has no GPU"
    runs = ("it waits in the queue until such a worker joins" if gpus
            else "it runs on the CPU fallback (the generated CPU kernels) instead")
    if strict:
        raise LumiError(f"--gpu {gpu} --strict-gpu: this cluster has no {what} ({has}), so the cell was not "
                        f"submitted. Drop --strict-gpu to run anyway: {runs}.")
    if what.upper() not in _warned_gpus:
        _warned_gpus.add(what.upper())
        print(f"lumi: --gpu {gpu}: this cluster has no {what} ({has}); {runs}. "
              "Add --strict-gpu to refuse instead. (Said once per GPU type.)", file=sys.stderr)


@magic_arguments()
@argument("--python", action="store_true",
          help="run the cell as ordinary Python on a worker (cloudpickle), for code the tracer cannot capture")
@argument("--graph", action="store_true",
          help="insist on a traced graph: raise where the tracer refuses the cell instead of running it as Python")
@placement_arguments()
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
    with jobs.keeping_interrupts():  # a Ctrl-C a finalizer swallowed is raised again, not lost
        _remote(args, cell, shell)


def _remote(args, cell: str, shell) -> None:
    gpu = GpuRequest.parse(args.gpu)  # a malformed --gpu is refused before the backend starts
    start_backend()
    if gpu is not None:
        check_gpu(gpu, args.strict_gpu)
    ns = shell.user_ns
    tier, tenant = notebook_placement(args.tier, args.tenant)
    options = dict(tier=tier, tenant=tenant, gpu=str(gpu) if gpu else None)
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
            defined = shell.run_cell(info.definition_source, store_history=False, silent=True)
            for error in (defined.error_before_exec, defined.error_in_exec):
                if isinstance(error, KeyboardInterrupt):  # the nested run_cell caught it: raise it for this cell
                    raise error
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
    """Submit, follow and fetch. A KeyboardInterrupt at any point in here (the submit, the Busy countdown,
    the wait, the result fetch) cancels the job on the cluster and is re-raised."""
    start = time.monotonic()
    submission = jobs.Submission(spec, outputs=outputs)  # sends nothing yet: an interrupt before the try loses nothing
    view = None
    try:
        view = job_view(shell)
        job = _submit(submission, args.wait, view)
        return _follow(job, args.timeout, view, echo=spec["kind"] == "python")
    except KeyboardInterrupt:
        for wait in (jobs.CANCEL_WAIT_S, 0.0, 0.0):  # another Ctrl-C meanwhile only stops the waiting
            try:
                _interrupted(submission, view, start, wait)
                break
            except KeyboardInterrupt:
                pass
        raise
    finally:
        if view is not None:
            with contextlib.suppress(Exception):
                view.close()
