"""The scheduler: one named, detached Ray actor that runs schedules (``lumi.schedule``) as dispatcher jobs.

Each schedule persists under the store root, in ``schedules/<tenant>/<name>/``: ``schedule.json`` (its
settings, next run and last runs) and what a run needs (``function.pkl``, or ``graph.lumi`` and
``inputs.npz``). Ray restarts the actor when it dies, and a new cluster starts it on first use; either way
it reads every schedule back, and the runs it was waiting for are awaited again.

One thread keeps time: it fires what is due, then waits until the next schedule is due, a run finishes, or
a schedule changes. At most one run of a schedule is out at a time; a firing while the previous run is
still queued or running is recorded as ``skipped``. Runs missed while no scheduler ran (the cluster was
down) follow the schedule's ``missed`` policy: ``skip`` (the default) records them as ``missed`` and goes on
from the next time due; ``once`` runs once at start, for all of them (that run's ``catch_up`` is true).

The scheduler never unpickles user code: a function's pickle goes into the job, which unpickles it on a
worker as the schedule's tenant, as ``lumi.map`` does.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
from datetime import datetime

import numpy as np
import ray
from croniter import croniter

from ..errors import LumiError, NotFound, ScheduleNotFound
from ..graph.fileformat import loads
from ..runtime import jobs
from ..runtime.cluster import NAMESPACE, on_the_head
from ..runtime.dispatcher import get_dispatcher
from ..runtime.fanout import function_spec
from ..runtime.options import job_placement
from ..storage._persist import Folder

NAME = "lumi-scheduler"
KEEP_RUNS = 20
MISSED_GRACE_S = 2.0  # a run this late when the scheduler starts was missed, not merely slow
TICK_S = 0.5  # the longest the timing thread waits before it looks again
SUBMIT_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


def next_after(cron: str, t: float) -> float:
    """The first time ``cron`` is due after ``t`` (epoch seconds), in the scheduler's local time zone."""
    return croniter(cron, datetime.fromtimestamp(t).astimezone()).get_next(float)


def folder_of(tenant: str, name: str) -> str:
    return f"schedules/{tenant}/{name}"


def read_inputs(data: bytes) -> list[np.ndarray]:
    """The arrays of ``inputs.npz``, in order (never unpickled)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=4)
class Scheduler:
    """Fires schedules; ``put``, ``pause``, ``resume`` and ``delete`` change them (their rows are read from the
    store's folder, by :func:`lumi.cron.listing`: showing them starts no actor)."""

    def __init__(self, root: str, options: dict, env: dict):
        os.environ.update(env)  # the creator's LUMI_* settings: the same dispatcher, model store and prices
        self.folder = Folder(root, options)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.records: dict[tuple[str, str], dict] = {}
        # dispatcher.wait -> (schedule, job id, the job's ObjectRefs: held for a restarted dispatcher to read)
        self.waiting: dict[ray.ObjectRef, tuple[tuple[str, str], str, tuple]] = {}
        self._load()
        threading.Thread(target=self._keep_time, name="lumi-scheduler", daemon=True).start()

    # -- what clients call ----------------------------------------------------------------------------
    def put(self, record: dict, files: dict[str, bytes]) -> dict:
        """Create or replace a schedule (its runs so far are kept); returns its row."""
        key = (record["tenant"], record["name"])
        with self.lock:
            old = self.records.get(key)
            for name, data in files.items():
                self.folder.write(f"{folder_of(*key)}/{name}", data)
            record = {**record, "runs": old["runs"] if old else [], "created_at": time.time(),
                      "next_run": next_after(record["cron"], time.time())}
            self.records[key] = record
            self._save(key)
        self.wake.set()
        return row(record)

    def pause(self, tenant: str, name: str) -> dict:
        return self._set_state(tenant, name, "paused")

    def resume(self, tenant: str, name: str) -> dict:
        """Active again, from the next time due (runs missed while paused are not made up)."""
        return self._set_state(tenant, name, "active")

    def delete(self, tenant: str, name: str) -> None:
        """Forget the schedule; a run already out goes on and is not recorded."""
        with self.lock:
            self._require(tenant, name)
            del self.records[(tenant, name)]
            self.folder.remove(folder_of(tenant, name), recursive=True)

    # -- state ------------------------------------------------------------------------------------------
    def _require(self, tenant: str, name: str) -> dict:
        record = self.records.get((tenant, name))
        if record is None:
            raise ScheduleNotFound(f"no schedule named {name!r} of tenant {tenant!r}; lumi.schedules() lists them")
        return record

    def _set_state(self, tenant: str, name: str, state: str) -> dict:
        with self.lock:
            record = self._require(tenant, name)
            if record["state"] != state:
                record["state"] = state
                record["next_run"] = next_after(record["cron"], time.time())
                self._save((tenant, name))
        self.wake.set()
        return row(record)

    def _save(self, key: tuple[str, str]) -> None:
        self.folder.write(f"{folder_of(*key)}/schedule.json", json.dumps(self.records[key]).encode())

    def _load(self) -> None:
        """Every persisted schedule; runs that were out are awaited again, missed ones follow ``missed``."""
        now = time.time()
        for tenant in self.folder.names("schedules"):
            for name in self.folder.names(f"schedules/{tenant}"):
                try:
                    record = json.loads(self.folder.read(f"{folder_of(tenant, name)}/schedule.json"))
                except (FileNotFoundError, ValueError):
                    continue  # a schedule half made or deleted
                key = (tenant, name)
                self.records[key] = record
                for run in record["runs"]:
                    if run["state"] in ("queued", "running"):
                        self.waiting[get_dispatcher().wait.remote(run["job"])] = (key, run["job"], ())
                if record["state"] == "active" and record["next_run"] < now - MISSED_GRACE_S:
                    self._missed(key, record, now)

    def _missed(self, key: tuple[str, str], record: dict, now: float) -> None:
        if record["missed"] == "once":
            record["next_run"], record["catch_up"] = now, True
            return
        self._add_run(record, {"at": record["next_run"], "job": None, "state": "missed", "seconds": 0.0,
                               "cost": 0.0, "error": "no scheduler ran at this time; missed='skip' skips such runs"})
        record["next_run"] = next_after(record["cron"], now)
        self._save(key)

    @staticmethod
    def _add_run(record: dict, run: dict) -> None:
        record["runs"] = [*record["runs"], run][-KEEP_RUNS:]

    # -- the timing thread ------------------------------------------------------------------------------
    def _keep_time(self) -> None:
        while True:
            try:
                self._tick()
            except Exception:  # a bad moment (the dispatcher restarting) must not stop the schedules
                log.exception("lumi scheduler: a tick failed; going on")
                time.sleep(TICK_S)

    def _tick(self) -> None:
        now = time.time()
        with self.lock:
            due = [k for k, r in self.records.items() if r["state"] == "active" and r["next_run"] <= now]
            upcoming = [r["next_run"] for r in self.records.values() if r["state"] == "active"]
        for key in due:
            self._fire(key, now)
        pause = min([TICK_S, *(t - time.time() for t in upcoming)])
        waiters = list(self.waiting)
        if not waiters:
            self.wake.wait(max(pause, 0.0))
            self.wake.clear()
            return
        ready, _ = ray.wait(waiters, num_returns=len(waiters), timeout=max(pause, 0.0))
        for ref in ready:
            self._finished(ref)

    def _fire(self, key: tuple[str, str], now: float) -> None:
        with self.lock:
            record = self.records.get(key)
            if record is None or record["state"] != "active":
                return
            record["next_run"] = next_after(record["cron"], now)
            catch_up = record.pop("catch_up", False)
            out = any(run["state"] in ("queued", "running") for run in record["runs"])
            record = dict(record)
        run = {"at": now, "job": None, "state": "skipped", "seconds": 0.0, "cost": 0.0,
               "error": "the previous run was still queued or running", "catch_up": catch_up}
        if not out:
            try:
                dispatcher, spec = get_dispatcher(), jobs.with_id(self._spec(record))
                answer = jobs.call(dispatcher.submit.remote(spec), SUBMIT_TIMEOUT_S)
                run.update(job=answer["id"], state=answer["state"], error=None)
                self.waiting[dispatcher.wait.remote(answer["id"])] = (key, answer["id"], jobs.spec_refs(spec))
            except LumiError as e:  # Busy, a refusal, an endpoint gone, the dispatcher not answering
                run.update(state="refused", error=str(e))
        with self.lock:
            if key in self.records:
                self._add_run(self.records[key], run)
                self._save(key)

    def _finished(self, ref: ray.ObjectRef) -> None:
        key, job_id, _ = self.waiting.pop(ref)  # the run's ObjectRefs go with it
        try:
            job = jobs.call(ref)["job"]
            update = {"state": job["state"], "seconds": job["gpu_seconds"], "cost": job["cost"], "error": job["error"]}
        except LumiError as e:  # the dispatcher no longer knows the job
            update = {"state": "failed", "error": str(e)}
        except ray.exceptions.RayError as e:
            reason = f"the dispatcher stopped before the run finished ({type(e).__name__})"
            update = {"state": "failed", "error": reason}
        with self.lock:
            record = self.records.get(key)
            if record is None:
                return
            for run in record["runs"]:
                if run["job"] == job_id:
                    run.update(update)
            self._save(key)

    def _spec(self, record: dict) -> dict:
        """The job a run of ``record`` submits, built from what was persisted (or the endpoint's live version)."""
        base, target = folder_of(record["tenant"], record["name"]), record["target"]
        placement = job_placement(record["gpu"], record["tier"], record["tenant"])
        label = f"schedule {record['name']}"
        if target["kind"] == "function":
            data = self.folder.read(f"{base}/function.pkl")
            key = "schedule:" + hashlib.sha256(data).hexdigest()
            return {**function_spec(ray.put(data), key, (), placement), "label": label}
        arrays = read_inputs(self.folder.read(f"{base}/inputs.npz"))
        graph = loads(self.folder.read(f"{base}/graph.lumi")) if target["kind"] == "graph" else endpoint_graph(
            target["name"], record["tenant"])
        return jobs.graph_spec(graph, arrays, label=label, **placement)


def endpoint_graph(name: str, tenant: str):
    """The live version of endpoint ``name``, which must be ``tenant``'s (``local`` may run any)."""
    from ..serving.store import ModelStore

    store = ModelStore()
    record = store.require(name)
    if tenant not in ("local", record["tenant"]):
        raise NotFound(f"no endpoint named {name!r}; deploy one with %%deploy {name} or `lumi deploy`")
    return store.get(store.version(record)["sha256"])


def row(record: dict) -> dict:
    """A schedule as ``lumi.schedules()``, ``%lumi schedules`` and ``/v1/schedules`` show it."""
    target = record["target"]
    return {**record, "target": f"{target['kind']} {target['name']}",
            "next_run": record["next_run"] if record["state"] == "active" else None,
            "runs": [dict(r) for r in record["runs"]]}


def get_scheduler(root: str, options: dict, env: dict):
    """The cluster's scheduler (``lumi-scheduler`` in namespace ``lumi``), started on first use."""
    return Scheduler.options(name=NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                             **on_the_head()).remote(
        root, options, env)

