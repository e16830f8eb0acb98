"""``lumi.schedule(fn, cron=...)``: run a function, a traced graph or a deployed endpoint on a schedule.

The cluster's scheduler actor (:mod:`lumi.cron.scheduler`) submits each run as a job of the schedule's
tier and tenant, so scheduled work shares the cluster fairly with everything else, and is metered the
same way. Schedules persist under the store root and survive a restart of the scheduler, the dispatcher
or the whole cluster; see :mod:`lumi.cron.scheduler` for what happens to runs missed meanwhile.
"""

from __future__ import annotations

import functools
import io
import json
import time
from collections.abc import Callable, Sequence

import cloudpickle
import numpy as np
import ray
from croniter import croniter

from ..errors import ScheduleError, ScheduleNotFound
from ..graph.fileformat import dumps
from ..graph.ir import Graph
from ..runtime.cluster import ensure_connected
from ..runtime.config import LOCAL_TENANT, load_config, lumi_environment, setting
from ..runtime.options import job_placement
from ..storage._persist import Folder
from ..storage._scope import check_name, default_options, default_root
from .scheduler import endpoint_graph, folder_of, get_scheduler, row

MISSED_POLICIES = ("skip", "once")


def _folder() -> Folder:
    return Folder(default_root(), default_options())


def _caller() -> str:
    """Who is asking: ``$LUMI_TENANT`` (set on a worker while a job runs), else the key-less ``local`` operator."""
    return setting("LUMI_TENANT") or LOCAL_TENANT


def _owner(tenant: str | None) -> str:
    """The tenant a schedule belongs to: one's own, or any for the ``local`` operator."""
    caller, owner = _caller(), tenant or _caller()
    check_name("tenant", owner)
    if owner != caller and caller != LOCAL_TENANT:
        raise ScheduleNotFound(f"tenant {caller!r} cannot make or change tenant {owner!r}'s schedules")
    return owner


def _scheduler():
    ensure_connected()
    return get_scheduler(default_root(), default_options(), lumi_environment())


def _target(fn, args: Sequence, tenant: str) -> tuple[dict, dict[str, bytes]]:
    """What a run calls, and the files that hold it: a function's pickle (with its arguments), or a graph
    (or an endpoint's name) and its input arrays."""
    if isinstance(fn, str):
        graph = endpoint_graph(fn, tenant)  # refused now, not at the first run, when there is no such endpoint
        return {"kind": "endpoint", "name": fn}, {"inputs.npz": _arrays(graph, args)}
    if isinstance(fn, Graph):
        return ({"kind": "graph", "name": fn.hash[:12]},
                {"graph.lumi": dumps(fn), "inputs.npz": _arrays(fn, args)})
    if not callable(fn):
        raise ScheduleError(f"lumi.schedule runs a Python function, a lumi.Graph or an endpoint's name, "
                            f"not {type(fn).__name__}")
    try:
        data = cloudpickle.dumps(functools.partial(fn, *args) if args else fn)
    except Exception as e:
        raise ScheduleError(f"lumi.schedule: cannot pickle {fn!r} to ship it to the workers: "
                            f"{type(e).__name__}: {e}") from e
    return {"kind": "function", "name": getattr(fn, "__name__", type(fn).__name__)}, {"function.pkl": data}


def _arrays(graph: Graph, args: Sequence) -> bytes:
    arrays = [np.asarray(a) for a in args]
    graph.bind_inputs(arrays)  # a wrong shape or dtype is refused now
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return buffer.getvalue()


def schedule(fn: Callable | Graph | str, cron: str, *, name: str | None = None, args: Sequence = (),
             tier: str | None = None, tenant: str | None = None, gpu=None, missed: str = "skip") -> Schedule:
    """Run ``fn(*args)`` whenever ``cron`` is due, as a job of ``tier`` (default ``api``).

    ``fn`` is a Python function (cloudpickled, as ``lumi.map`` ships it), a traced ``lumi.Graph`` or the
    name of a deployed endpoint (its live version at each run), and ``args`` its arguments or input
    arrays. ``cron`` has five fields (minute hour day month weekday), or six with seconds last
    (``"* * * * * */10"``), in the scheduler's local time. ``missed`` says what happens to runs missed while
    no scheduler ran: ``"skip"`` them, or run ``"once"`` when it is back. A schedule of the same name and
    tenant is replaced (its history is kept). Returns the :class:`Schedule`.
    """
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ScheduleError(f"cron {cron!r} is not a cron expression: five fields (minute hour day month weekday) "
                            "such as '*/5 * * * *', or six with seconds last, such as '* * * * * */10'")
    if missed not in MISSED_POLICIES:
        raise ScheduleError(f"missed={missed!r}: use 'skip' (the default) or 'once'")
    owner = _owner(tenant)
    placement = job_placement(gpu, tier, owner)  # a malformed --gpu is refused now
    load_config().tier(placement["tier"])  # and an unknown tier
    target, files = _target(fn, args, owner)
    name = check_name("schedule", name or target["name"])
    record = {"name": name, "tenant": owner, "cron": cron, "state": "active", "target": target,
              "tier": placement["tier"], "gpu": placement["gpu"], "missed": missed}
    ray.get(_scheduler().put.remote(record, files))
    return Schedule(name, owner)


def listing(tenant: str | None = None) -> list[dict]:
    """Every schedule's row (name, tenant, cron, state, next run, target, tier, last runs), every tenant's
    unless ``tenant`` is given; read from the store's folder, so showing them starts no actor."""
    folder, rows = _folder(), []
    for owner in folder.names("schedules"):
        if tenant not in (None, owner):
            continue
        for name in folder.names(f"schedules/{owner}"):
            try:
                rows.append(row(json.loads(folder.read(f"{folder_of(owner, name)}/schedule.json"))))
            except (FileNotFoundError, ValueError):
                continue  # being made or deleted right now
    return rows


def schedules(tenant: str | None = None) -> list[Schedule]:
    """The caller's schedules (the ``local`` operator: everyone's, or ``tenant``'s)."""
    caller = _caller()
    tenant = tenant if caller == LOCAL_TENANT else _owner(tenant)
    return [Schedule(r["name"], r["tenant"]) for r in listing(tenant)]


class Schedule:
    """A schedule: ``info()``, ``runs()``, ``next_run``, ``state``; ``pause()``, ``resume()``, ``delete()``."""

    def __init__(self, name: str, tenant: str | None = None):
        self.name, self.tenant = check_name("schedule", name), _owner(tenant)

    def info(self) -> dict:
        """Its row: cron, state, next run (epoch seconds; None while paused), target, tier and last runs."""
        try:
            return row(json.loads(_folder().read(f"{folder_of(self.tenant, self.name)}/schedule.json")))
        except FileNotFoundError:
            raise ScheduleNotFound(f"no schedule named {self.name!r} of tenant {self.tenant!r}; "
                                   "lumi.schedules() lists them") from None

    def runs(self) -> list[dict]:
        """Its last runs, oldest first: when, the job, state, execution seconds, cost and error."""
        return self.info()["runs"]

    next_run = property(lambda self: self.info()["next_run"], doc="when it runs next (epoch seconds), or None")
    state = property(lambda self: self.info()["state"], doc="active | paused")

    def pause(self) -> Schedule:
        self._call("pause")
        return self

    def resume(self) -> Schedule:
        """Active again from the next time due (runs missed while paused are not made up)."""
        self._call("resume")
        return self

    def delete(self) -> None:
        """Forget the schedule and its history (a run already out finishes unrecorded)."""
        self._call("delete")

    def _call(self, method: str):
        try:
            return ray.get(getattr(_scheduler(), method).remote(self.tenant, self.name))
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, ScheduleNotFound):
                raise ScheduleNotFound(str(e.cause)) from None
            raise

    def __repr__(self) -> str:
        try:
            info = self.info()
        except ScheduleNotFound:
            return f"<lumi.Schedule {self.name} (deleted)>"
        when = (time.strftime("%H:%M:%S", time.localtime(info["next_run"])) if info["next_run"] else "paused")
        return f"<lumi.Schedule {self.name} {info['cron']!r} next={when} runs={len(info['runs'])}>"
