"""One line per process to the dispatcher: submits and job ends travel in batches.

Every thread's submits wait in one outbox; a sender thread takes all that are waiting and sends them in one
``submit_many`` call, so sixteen threads submitting at once cost one actor round trip, not sixteen (a lone
submit goes at once: nothing waits for company). Each job is submitted with this process's mailbox id, and
the dispatcher puts the job's end (the answer ``Dispatcher.wait`` gives) into that mailbox; a collector thread
long-polls ``collect`` and hands each end to its :class:`~lumi.runtime.jobs.Job`. Job ids are the client's, so
the collector starts its poll as the submit goes out, not once it is answered: a short job's end can come back
one round trip sooner. So a job costs the client
a share of one submit and one collect, however many run at once.

A job's end may also bring a *lane* (see :mod:`lumi.runtime.worker`): while the dispatcher keeps it open, this
process's short graph jobs of the same tenant, tier and GPU go straight to that worker (:meth:`Wire.run_direct`),
one actor call each, up to LANE_DEPTH at a time per lane; when they are full, a job waits for room (up to
LANE_WAIT_S), since one sent to the queue instead would find no free worker and close the lanes. A job the worker
declines, or any job once the lane is closed, goes through the queue as before.

A restarted dispatcher knows the mailbox of each journaled job. The collector sees the restart (a new
``incarnation``) and names the jobs it still waits for once, so an end that was on its way when the old
dispatcher died is handed over again.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field

import ray

from ..errors import LaneClosed, LumiError

MAX_BATCH = 256  # specs in one submit_many call
COLLECT_S = 5.0  # how long one collect waits on the dispatcher when nothing ends
RETRY_S = 0.5  # pause after a failed collect (the dispatcher is restarting)
EARLY_KEEP_S = 60.0  # how long an end waits for its Job to be made
LANE_DEPTH = 2  # direct calls in flight on one lane (a worker's dispatch limit, by default)
LANE_WAIT_S = 1.0  # how long a job waits for room on a busy lane before it goes through the queue
CLOSED = "the Ray connection these jobs were submitted on was closed; connect again and submit them again"
STOPPED = "the dispatcher these jobs were submitted to was stopped; submit them again"


@dataclass(eq=False)
class _Lane:
    """A worker the dispatcher opened to this process, as its grant describes it."""

    token: str
    worker: object  # the actor handle
    worker_id: str
    device: str
    price: float
    tenant: str
    tier: str
    gpu: str | None
    flying: int = 0  # direct calls in flight
    closed: bool = False
    declined: set[str] = field(default_factory=set)  # graphs its worker does not know as short


class Wire:
    """The outbox and mailbox of one dispatcher actor in this process (see the module docstring)."""

    def __init__(self, dispatcher, connection: str):
        self.dispatcher, self.connection = dispatcher, connection
        self.mailbox = uuid.uuid4().hex
        self._lock = threading.Condition()  # the sender and the collector wait on it (submitters on their own event)
        self._outbox: list[tuple[dict, list, threading.Event]] = []  # (spec, [answer], answered) not sent yet
        self._waiting: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # job id -> Job
        self._early: dict[str, tuple[float, dict]] = {}  # ends that came before their Job was made
        self._sent: set[str] = set()  # ids of jobs submitted whose answer has not come back yet
        self._rewatch = False
        self._lanes: dict[tuple, list[_Lane]] = {}  # (tenant, tier, gpu) -> lanes open to this process
        self._lane_lock = threading.Lock()
        self._lane_room: dict[tuple, threading.Condition] = {}  # per key of _lanes: a call on one of them ended
        threading.Thread(target=self._send_forever, name="lumi-wire-send", daemon=True).start()
        threading.Thread(target=self._collect_forever, name="lumi-wire-collect", daemon=True).start()

    def submit(self, spec: dict) -> dict:
        """Send ``spec`` with the next batch; the dispatcher's record of the job, or its error raised."""
        answer: list = []
        answered = threading.Event()
        with self._lock:
            self._outbox.append((spec, answer, answered))
            if spec.get("id"):  # the collector starts polling now, beside the submit, not after its answer
                self._sent.add(spec["id"])
            self._lock.notify_all()
        answered.wait()
        if isinstance(answer[0], BaseException):
            raise answer[0]
        return answer[0]

    def run_direct(self, spec: dict) -> dict | None:
        """Run ``spec``'s job on a lane of this process for its tenant, tier and GPU: the job's end, as the collector
        hands ends over; None when there is no such lane, they stay full for LANE_WAIT_S, or the worker declines the
        job (it is not known to be short there, or the worker runs a queued job): then submit it."""
        from .jobs import call  # jobs builds on this module

        if spec["kind"] != "graph":
            return None
        key = (spec["tenant"], spec["tier"], spec["gpu"])
        with self._lane_lock:
            room = self._lane_room.setdefault(key, threading.Condition(self._lane_lock))
            deadline = time.monotonic() + LANE_WAIT_S
            while True:
                lanes = [lane for lane in self._lanes.get(key, ()) if spec["key"] not in lane.declined]
                if not lanes:
                    room.notify()  # pass on the wakeup this thread may have taken
                    return None
                lane = min(lanes, key=lambda lane: lane.flying)
                if lane.flying < LANE_DEPTH:
                    break
                if not room.wait(deadline - time.monotonic()):
                    return None
            lane.flying += 1
        submitted = time.time()
        job = (spec["id"], spec["program"], spec["args"], spec["key"], spec["label"], submitted)
        try:
            answer = call(lane.worker.run_direct.remote(lane.token, job))
        except (LaneClosed, ray.exceptions.RayError):  # closed, or its worker died: the queue takes the job
            lane.closed, answer = True, None
        finally:
            with self._lane_lock:
                lane.flying -= 1
                if lane.closed and lane in self._lanes.get(key, []):
                    self._lanes[key].remove(lane)
                    room.notify_all()  # they may all have to go through the queue now
                else:
                    room.notify()  # one call's room: one waiter (sixteen woken for it cost the client its CPU)
        if answer is None or isinstance(answer, str):
            if answer == "unknown":
                lane.declined.add(spec["key"])
            return None
        reading, result = answer
        record = {"id": spec["id"], "tenant": lane.tenant, "tier": lane.tier, "state": "failed" if reading["error"]
                  else "done", "position": None, "tier_position": None, "submitted_at": submitted,
                  "started_at": reading["started_at"], "finished_at": reading["finished_at"],
                  "gpu_seconds": reading["seconds"], "cost": reading["seconds"] * lane.price,
                  "device": reading["device"], "worker": lane.worker_id, "error": reading["error"], "attempts": 1,
                  "label": spec["label"], "estimate": reading["seconds"]}
        return {"job": record, "result": None, "value": reading.get("value", result), "output": None}

    def _open_lane(self, grant: dict) -> None:
        lane = _Lane(**grant)
        key = (lane.tenant, lane.tier, lane.gpu)
        with self._lane_lock:
            lanes = self._lanes.setdefault(key, [])
            if all(known.token != lane.token for known in lanes):
                lanes.append(lane)
                if key in self._lane_room:
                    self._lane_room[key].notify_all()

    def expect(self, job) -> None:
        """Hand ``job`` its end when it comes (held weakly: an end nobody holds a Job for is dropped)."""
        with self._lock:
            early = self._early.pop(job.id, None)
            if early is None:
                self._waiting[job.id] = job
                self._lock.notify_all()
        if early is not None:
            job._ended(early[1])

    def _connected(self) -> bool:
        """Whether this process is still on the Ray connection the wire was made for (tests shut Ray down and
        connect again; a Ray call on a closed connection would start a bare local Ray of its own)."""
        return ray.is_initialized() and ray.get_runtime_context().get_job_id() == self.connection

    def _send_forever(self) -> None:
        from .jobs import call  # jobs builds on this module

        while True:
            with self._lock:
                while not self._outbox:
                    self._lock.wait()
            if not self._connected():
                self._close(LumiError(CLOSED))
                return
            with self._lock:
                batch, self._outbox = self._outbox[:MAX_BATCH], self._outbox[MAX_BATCH:]
            try:
                answers = call(self.dispatcher.submit_many.remote([spec for spec, _, _ in batch], self.mailbox))
            except ray.exceptions.ActorDiedError:
                answers = [LumiError(STOPPED) for _ in batch]
            except Exception as e:  # it refused the whole batch (its journal), or cannot be reached: each says so
                answers = [e] * len(batch)
            with self._lock:
                for (spec, answer, answered), value in zip(batch, answers, strict=True):
                    answer.append(value)
                    answered.set()
                    self._sent.discard(spec.get("id"))

    def _collect_forever(self) -> None:
        incarnation = None
        while True:
            with self._lock:
                while not self._waiting and not self._sent:
                    self._lock.wait()
                watch = list(self._waiting) if self._rewatch else None
                self._rewatch = False
            if not self._connected():
                self._close(LumiError(CLOSED))
                return
            try:
                answer = ray.get(self.dispatcher.collect.remote(self.mailbox, watch, COLLECT_S))
            except ray.exceptions.ActorDiedError:  # stopped for good (a restart would have retried the call)
                self._close(LumiError(STOPPED))
                return
            except ray.exceptions.RayError:  # restarting, or unreachable for now: ask again, naming what is awaited
                self._rewatch = True
                time.sleep(RETRY_S)
                continue
            if incarnation is not None and answer["incarnation"] != incarnation and watch is None:
                self._rewatch = True  # ends may have been lost with the old dispatcher's answer
            incarnation = answer["incarnation"]
            now, ended = time.monotonic(), []
            for end in answer["ends"]:
                if end.get("lane"):
                    self._open_lane(end["lane"])
            with self._lock:
                for end in answer["ends"]:
                    job = self._waiting.pop(end["job"]["id"], None)
                    if job is not None:
                        ended.append((job, end))
                    else:  # its submit's answer is still on its way to the thread that makes the Job
                        self._early[end["job"]["id"]] = (now, end)
                for job_id in [i for i, (at, _) in self._early.items() if now - at > EARLY_KEEP_S]:
                    del self._early[job_id]  # no Job was made for it (its submitter failed meanwhile)
            for job, end in ended:
                job._ended(end)
            for job_id in answer["unknown"]:
                job = self._waiting.pop(job_id, None)
                if job is not None:
                    job._ended(LumiError(f"job {job_id}: the dispatcher restarted and no longer knows it "
                                         "(its journal keeps the last finished jobs only); submit it again"))

    def _close(self, gone: LumiError) -> None:
        """The connection or the dispatcher is gone: what still waits here fails with the reason ``gone``."""
        with self._lock:
            for _, answer, answered in self._outbox:
                answer.append(gone)
                answered.set()
            self._outbox, self._sent = [], set()
            waiting, self._waiting = list(self._waiting.values()), weakref.WeakValueDictionary()
            self._lock.notify_all()
        with self._lane_lock:
            self._lanes = {}
        for job in waiting:
            job._ended(gone)
        with _wires_lock:
            _wires.pop((self.connection, self.dispatcher._actor_id.binary()), None)


_wires: dict[tuple[str, bytes], Wire] = {}
_wires_lock = threading.Lock()


def wire_of(dispatcher) -> Wire:
    """This process's wire to ``dispatcher`` (one per Ray connection and dispatcher actor)."""
    key = (ray.get_runtime_context().get_job_id(), dispatcher._actor_id.binary())
    with _wires_lock:
        wire = _wires.get(key)
        if wire is None:
            wire = _wires[key] = Wire(dispatcher, key[0])
        return wire
