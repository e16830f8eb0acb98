"""The dispatcher: one named, detached Ray actor per cluster that queues, schedules and meters work.

Jobs wait in one queue per tier, fair between its tenants (``queues.TenantQueue``: a FIFO per
tenant, served round robin). Deficit round robin picks among backlogged tiers: each visit
credits a tier ``quantum x weight`` estimated GPU-seconds and it sends jobs while its credit
covers their estimate; the estimate of a graph comes from its FLOP and byte counts until runtimes
of the same graph hash have been measured. Each tier has a wait target (``wait_target_s``): while some
tier's head job has waited longer, only tiers whose heads are overdue are served (by the same round robin),
so an overdue job starts within one round of the overdue tiers, and no tier or tenant starves.
Workers hold at most ``dispatch_limit`` calls each: a call carries one job, or a batch of short ones (graph jobs
measured at SHORT_JOB_S or less, BATCH_S together), taken in the order the round robin picks them.
While nothing waits, a short job's worker may stay open to its client process as a *lane*: the process sends its
next short jobs to that worker itself, and the worker reports them afterwards. Any job queued or lease asked for
closes every lane first (``_dispatch``), so a lane delays queued work by one short job at most.
Endpoint replicas are leases on the same workers (``lease``/``unlease``): a leased worker runs
that endpoint's batches only, until the gateway gives it back or a queued job reclaims it (see
``_reclaimable``); asks for leases are served before queued jobs.
Past a tier's or the global queue cap a submit is refused with ``lumi.Busy``. A job whose worker
dies goes back to the head of its tier (bounded attempts, then failed with the reason). Cost is
measured execution seconds times the device's price; queued time is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import ray

from ..errors import Busy, JournalError, LumiError
from . import metering
from .cluster import NAMESPACE, ensure_connected, on_the_head, request_cluster_resources
from .config import LOCAL_TENANT, load_config, lumi_environment, setting
from .journal import Journal
from .options import GpuRequest
from .pool import BURST, CPU, DEVICE, BurstGroup, Lane, Lease, Pool, Slot
from .queues import TenantQueue
from .worker import SHORT_JOB_S

NAME = "lumi-dispatcher"
MAX_ATTEMPTS = 3
KEEP_FINISHED = 2000
STATS_PERIOD_S = 0.5
RESOURCES_EVERY = 10  # stats periods between readings of the cluster's resources
TOKEN_TTL_S = 600.0
CANCEL_GRACE_S = 2.0
RETRY_AFTER_BOUNDS = (0.5, 30.0)
FINAL = ("done", "failed", "cancelled")
LEASE_RETRY_AFTER_S = 2.0
RECLAIM_IDLE_S = 1.0  # a queued job takes back a lease of its own tier or a lower one idle this long
LEASE_MIN_S = 2.0  # a lease is never reclaimed sooner than this after its grant (no thrashing under contention)
CPU_WORKER_KEEP_S = 30.0  # an unleased CPU worker is kept this long for the next lease, then stopped
BURST_KEEP_S = 5.0  # a burst worker idle this long with nothing queued is stopped: the borrowed node goes back
RESULT_GRACE_S = 30.0  # how long a result stays with the dispatcher after a waiter had it
MAILBOX_KEEP_S = 600.0  # a mailbox nobody collected from this long is dropped
BATCH_S = 0.005  # the most one call's jobs are estimated to take together
BATCH_JOBS = 16  # the most jobs in one call
LANE_IDLE_S = 60.0  # a lane unused this long is closed
LANE_SHORT_KEYS = 256  # the most short graphs a lane is told of when it opens


@dataclass(eq=False)
class _Job:
    id: str
    tenant: str
    tier: str
    kind: str  # graph | python
    program: object  # ObjectRef or value: a Graph, or (source, output names)
    args: list  # ObjectRefs or values
    key: str  # what measured runtimes are remembered by: the graph hash or the source's hash
    work: dict  # {"flops", "bytes", "ops"} for graphs
    estimate: float  # GPU-seconds charged by the scheduler
    gpu: str | None
    label: str
    submitted_at: float
    state: str = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    gpu_seconds: float = 0.0
    cost: float = 0.0
    device: str | None = None
    worker: str | None = None
    error: str | None = None
    attempts: int = 0
    refs: tuple | None = None  # (readings of its call, its result) of the running attempt
    batched: bool = False  # the running attempt shares its worker call with other jobs
    lane: Lane | None = None  # the lane its worker call offers (opened once the call ends, if nothing waits then)
    granted: dict | None = None  # the lane its client is told of with its end
    result: object = None  # the result ObjectRef until a waiter takes it
    value: object = None  # the result itself when small enough to come with the reading
    output: list | None = None  # what a Python job printed, once it has finished
    handed: bool = False  # a waiter has had the result
    mailbox: str | None = None  # where the submitting process collects the job's end (see lumi.runtime.wire)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def journal_record(self) -> dict:
        """What the journal keeps of the job (its ObjectRefs go beside it)."""
        return {**self.public(), "kind": self.kind, "key": self.key, "work": self.work, "gpu": self.gpu,
                "mailbox": self.mailbox}

    def public(self, position: int | None = None, tier_position: int | None = None) -> dict:
        return {"id": self.id, "tenant": self.tenant, "tier": self.tier, "state": self.state,
                "position": position, "tier_position": tier_position, "submitted_at": self.submitted_at,
                "started_at": self.started_at, "finished_at": self.finished_at, "gpu_seconds": self.gpu_seconds,
                "cost": self.cost, "device": self.device, "worker": self.worker, "error": self.error,
                "attempts": self.attempts, "label": self.label, "estimate": self.estimate}


@dataclass(eq=False)
class _Mailbox:
    """The ends of one client process's jobs, until its collector takes them."""

    ready: list[str] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    polled: float = field(default_factory=time.monotonic)

    def add(self, job_id: str) -> None:
        self.ready.append(job_id)
        self.event.set()


@dataclass(eq=False)
class _Ask:
    """A lease asked for and not granted yet."""

    lease: Lease
    gpu: str | None
    cpus: float
    granted: asyncio.Future


# A tier at its debt floor (quantum - credit) gets back exactly the quantum on its next visit, but in floating point
# (0.01 - 0.08) + 0.08 is 0.009999999999999995: without this slack it could not afford a quantum-sized head and
# waited a second round (seen under load, where overruns push a tier to its floor).
_AFFORD_SLACK_S = 1e-9


@functools.lru_cache(maxsize=256)
def _gpu_request(gpu: str | None) -> GpuRequest | None:
    return GpuRequest.parse(gpu)  # once per form, not on every look at a queue head


def gpu_fits(gpu: str | None, slot: Slot) -> bool:
    """Whether a worker can take work asking for ``gpu`` (a canonical ``GpuRequest`` form; None: no GPU
    asked for). The CPU fallback takes everything (the widgets and ``%lumi cluster`` say so)."""
    request = _gpu_request(gpu)
    return request is None or slot.fallback or request.matches(slot.device)


class DeficitRoundRobin:
    """Deficit round robin over tiers; the unit is estimated GPU-seconds.

    ``quantum`` tracks the largest job estimate seen, so one visit always affords a head job and a
    backlogged tier never waits more than one round.
    """

    def __init__(self, weights: dict[str, float]):
        self.weights = dict(weights)
        self.order = list(weights)
        self.unit = min(weights.values())
        self.deficit = dict.fromkeys(self.order, 0.0)
        self.cursor = 0
        self.credited = False  # whether the tier under the cursor got its quantum on this visit
        self.quantum = 0.0

    def credit(self, tier: str) -> float:
        return self.quantum * self.weights[tier] / self.unit

    def pick(self, queues: dict[str, TenantQueue], eligible=lambda job: True, overdue=lambda job: False) -> _Job | None:
        """Take the next job to dispatch out of ``queues`` (None when no tier has an eligible head). While some
        tier's eligible head is ``overdue`` (past its tier's wait target), only such tiers are served."""
        heads = [q[0] for q in queues.values() if q and eligible(q[0])]
        if not heads:
            return None
        self.quantum = max(self.quantum, *(j.estimate for j in heads))
        late = {j.tier for j in heads if overdue(j)}
        for _ in range(3 * len(self.order)):
            tier = self.order[self.cursor]
            queue = queues[tier]
            if not queue:
                self.deficit[tier] = 0.0
            elif not late or tier in late:  # an on-time tier, while another is late, waits with its credit
                if not self.credited:
                    self.deficit[tier] = min(self.deficit[tier] + self.credit(tier), 2 * self.credit(tier))
                    self.credited = True
                head = queue[0]
                if eligible(head) and head.estimate <= self.deficit[tier] + _AFFORD_SLACK_S:
                    self.deficit[tier] -= head.estimate
                    queue.popleft()
                    if not queue:
                        self.deficit[tier] = 0.0
                    return head
            self.cursor = (self.cursor + 1) % len(self.order)
            self.credited = False
        return None

    def correct(self, tier: str, overrun: float, backlogged: bool) -> None:
        """Charge a backlogged tier what its job ran over (or refund what it ran under) its estimate.

        The debt stays small enough that the next visit still affords any job, so a tier whose
        estimates run low still never waits more than one round.
        """
        if backlogged:
            credit = self.credit(tier)
            self.deficit[tier] = min(max(self.deficit[tier] - overrun, self.quantum - credit), 2 * credit)

    def copy(self) -> DeficitRoundRobin:
        other = DeficitRoundRobin(self.weights)
        other.deficit, other.cursor, other.credited, other.quantum = (dict(self.deficit), self.cursor,
                                                                      self.credited, self.quantum)
        return other


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Dispatcher:
    """See the module docstring; every public method returns JSON-serialisable data. Ray restarts it when it
    dies, and retries the calls that were in flight then: the restarted one reads its journal back first."""

    def __init__(self, env: dict | None = None, workers: int | None = None, name: str = NAME):
        env = {**os.environ, **(env or {})}
        self.config = load_config(env)
        self.tiers = self.config.tiers
        self.queues: dict[str, TenantQueue] = {t: TenantQueue() for t in self.tiers}
        self.drr = DeficitRoundRobin({t: tier.weight for t, tier in self.tiers.items()})
        target = workers if workers is not None else (self.config.workers or None)
        self.pool = Pool(self.config.dispatch_limit, self.config.worker_gpus, target, self.config.worker_memory,
                         BurstGroup.parse(self.config.burst_pool))
        self._burst_starting = 0
        self.jobs: dict[str, _Job] = {}
        self.measured: dict[str, float] = {}
        self.tokens: dict[str, tuple[str, str, float]] = {}
        self.asks: list[_Ask] = []
        self.finished: deque[str] = deque()
        self._cpu_starting = 0
        self.ledger = metering.Ledger()
        self.counts = dict.fromkeys(("accepted", "refused", "done", "failed", "cancelled", "requeued", "burst_started",
                                     "burst_released", "submit_calls", "worker_calls", "lanes_opened",
                                     "lane_jobs"), 0)
        self.peak = {"total": 0, **dict.fromkeys(self.tiers, 0)}
        self._order: dict[str, tuple[int, int]] | None = None
        self._last_start = 0.0
        self._started = False
        self._growing = False
        self._costs: list[metering.Record] = []  # metered, not yet journaled
        self._ends: list[tuple[dict, object, list | None]] = []  # jobs ended, not yet journaled
        self._gone: list[str] = []  # jobs forgotten (past KEEP_FINISHED), not yet journaled
        self._flush_due = False
        self.mailboxes: dict[str, _Mailbox] = {}
        self.incarnation = uuid.uuid4().hex  # a client's collector sees a restart by its change
        self.journal = Journal(setting("LUMI_JOURNAL", env) / f"{name}.sqlite", setting("LUMI_JOURNAL_MAX_BYTES", env))
        self._restore()

    def _restore(self) -> None:
        """Read the journal back: finished jobs keep their records, small results and output (and their runtimes
        refine the estimates again); queued and running ones (and finished ones whose result nobody took and that
        was too big to journal) queue again, in submission order; the cost ledger is counted again."""
        for record in self.journal.cost_records():
            self.ledger.restore(record)
        for record, refs, value, output, taken in self.journal.jobs():
            program, args = refs or (None, [])
            job = _Job(id=record["id"], tenant=record["tenant"], tier=record["tier"], kind=record["kind"],
                       program=program, args=list(args), key=record["key"], work=record["work"],
                       estimate=record["estimate"], gpu=record["gpu"], label=record["label"],
                       submitted_at=record["submitted_at"], attempts=record["attempts"],
                       mailbox=record.get("mailbox"))
            self.jobs[job.id] = job
            if record["tier"] not in self.queues:  # a tier the new configuration no longer has
                record = {**record, "state": "failed", "error": f"its tier {record['tier']!r} no longer exists"}
            again = record["state"] in ("queued", "running") or (
                record["state"] == "done" and value is None and not taken and refs is not None)
            if again:
                self.queues[job.tier].append(job)
                self.counts["requeued"] += 1
                continue
            for name in ("state", "started_at", "finished_at", "gpu_seconds", "cost", "device", "worker", "error"):
                setattr(job, name, record[name])
            job.value, job.output, job.handed = value, output, taken
            job.program, job.args = None, []
            job.finished.set()
            if job.mailbox and not taken:
                self._mailbox(job.mailbox).add(job.id)
            self.finished.append(job.id)
            if job.state == "done" and job.key and job.gpu_seconds > 0:  # measured runtimes, measured again
                self.measured[job.key] = metering.refine(self.measured.get(job.key), job.gpu_seconds)
        self.counts["accepted"] = len(self.jobs)

    # -- admission ----------------------------------------------------------------------------
    def _occupancy(self) -> tuple[dict[str, int], int]:
        now = time.time()
        for token in [t for t, (_, _, at) in self.tokens.items() if now - at > TOKEN_TTL_S]:
            del self.tokens[token]
        depth = {t: len(q) for t, q in self.queues.items()}
        for _, tier, _ in self.tokens.values():
            depth[tier] += 1
        return depth, sum(depth.values())

    def _admit(self, tier: str) -> None:
        """Refuse with Busy when ``tier`` or the whole queue is at its cap."""
        if tier not in self.tiers:
            raise LumiError(f"unknown tier {tier!r}; tiers are {', '.join(self.tiers)}")
        depth, total = self._occupancy()
        if depth[tier] < self.tiers[tier].cap and total < self.config.queue_cap:
            return
        self.counts["refused"] += 1
        what = (f"tier {tier!r} has {depth[tier]} queued (cap {self.tiers[tier].cap})" if depth[tier] >=
                self.tiers[tier].cap else f"the queue holds {total} jobs (cap {self.config.queue_cap})")
        backlog = sum(j.estimate for j in self.queues[tier]) / max(1, len(self.pool.ready()))
        retry_after = min(max(backlog, RETRY_AFTER_BOUNDS[0]), RETRY_AFTER_BOUNDS[1])
        raise Busy(f"Lumi is busy: {what}; retry in {retry_after:.1f} s", retry_after=retry_after)

    def _check_job_quota(self, tenant: str, tier: str) -> None:
        """Refuse with Busy when ``tenant`` already has its tier's quota of queued jobs (``[quotas.<tier>] jobs``).
        The machine's own tenant, like the admin keys at the gateway, has no quota (the tier caps still hold)."""
        if tenant == LOCAL_TENANT:
            return
        quota = self.config.quota(tier).jobs
        queued = sum(q.queued(tenant) for q in self.queues.values())
        if queued >= quota:
            self.counts["refused"] += 1
            raise Busy(f"quota 'jobs' reached: tenant {tenant!r} has {queued} queued jobs, the most tier {tier!r} "
                       "allows; retry when some have started", retry_after=RETRY_AFTER_BOUNDS[1] / 10)

    def _check_gpus(self, gpu: str | None) -> None:
        request = _gpu_request(gpu)
        if request is not None and request.count > max(1.0, self.pool.worker_gpus):  # a fraction shares one
            raise LumiError(f"--gpu {gpu}: a job runs on one worker, and each worker here holds "
                            f"{self.pool.worker_gpus:g} GPU(s) (LUMI_WORKER_GPUS); ask for at most that many")

    def _note_peak(self) -> None:
        depth, total = self._occupancy()
        self.peak["total"] = max(self.peak["total"], total)
        for tier, n in depth.items():
            self.peak[tier] = max(self.peak[tier], n)

    @ray.method(enable_task_events=False)  # the hot path: Ray's per-call task events cost more than they tell
    async def submit(self, spec: dict) -> dict:
        """Queue a job; raise Busy past the caps. ``spec``: kind, program, args, tenant, tier, gpu,
        label, key, work, and optionally estimate (seconds) to override the model."""
        (answer,) = self._submit_all([spec], None)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    @ray.method(enable_task_events=False)
    async def submit_many(self, specs: list[dict], mailbox: str | None = None) -> list:
        """``submit`` for many specs at once (one journal transaction): the job's record, or the Busy/LumiError,
        for each. With ``mailbox``, each job's end goes there for :meth:`collect`."""
        return self._submit_all(specs, mailbox)

    def _submit_all(self, specs: list[dict], mailbox: str | None) -> list:
        self._ensure_started()
        self.counts["submit_calls"] += 1
        answers: list = []
        for spec in specs:
            try:
                answers.append(self._accept(spec, mailbox))
            except LumiError as e:
                answers.append(e)
        new = [a for a in answers if isinstance(a, _Job)]
        try:  # nothing is accepted that is not journaled (JournalError refuses the lot)
            self.journal.accepted([(job.journal_record(), job.program, job.args) for job in new])
        except JournalError as e:
            for job in new:
                self.queues[job.tier].remove(job)
                del self.jobs[job.id]
            self.counts["accepted"] -= len(new)
            return [e if isinstance(a, _Job) else a for a in answers]
        if new:
            self._note_peak()
            self._changed()
            self._dispatch()
        # positions are computed when asked for (status), not on every submit
        return [a.public() if isinstance(a, _Job) else a for a in answers]

    def _accept(self, spec: dict, mailbox: str | None) -> _Job | dict:
        """Queue one spec's job (the caller journals it): the new job, or the record of the one already made
        under its id (Ray retried the submit across a restart)."""
        if spec.get("id") in self.jobs:
            return self.jobs[spec["id"]].public()
        tier = spec.get("tier") or "api"
        self._admit(tier)
        self._check_job_quota(spec.get("tenant") or "local", tier)
        kind = spec.get("kind", "graph")
        if kind not in ("graph", "python"):
            raise LumiError(f"unknown job kind {kind!r}; use 'graph' or 'python'")
        self._check_gpus(spec.get("gpu"))
        job = _Job(id=self._new_id(spec.get("id")), tenant=spec.get("tenant") or "local", tier=tier, kind=kind,
                   program=spec["program"], args=list(spec.get("args", [])), key=spec.get("key", ""),
                   work=dict(spec.get("work") or {}), estimate=0.0, gpu=spec.get("gpu"),
                   label=spec.get("label") or kind, submitted_at=time.time(), mailbox=mailbox)
        job.estimate = float(spec.get("estimate") or self._estimate(job))
        self.jobs[job.id] = job
        self.queues[tier].append(job)
        self.counts["accepted"] += 1
        return job

    def _new_id(self, wanted: str | None) -> str:
        """A fresh job id, or the client's own (so that a client interrupted mid-submit can still cancel it)."""
        if wanted is None:
            return uuid.uuid4().hex[:12]
        if not (isinstance(wanted, str) and 8 <= len(wanted) <= 32 and wanted.isalnum()):
            raise LumiError(f"a job id is 8-32 letters and digits, not {wanted!r}")
        return wanted

    def _estimate(self, job: _Job) -> float:
        if job.key in self.measured:
            return self.measured[job.key]
        device = "CPU" if self.pool.fallback() else "GPU"
        w = job.work
        return metering.estimate_seconds(w.get("flops", 0), w.get("bytes", 0), w.get("ops", 1), device)

    async def acquire(self, tenant: str = "local", tier: str = "api") -> str:
        """Hold a place against the tier's and the global cap (serving admission); raise Busy when full."""
        return self._acquire(tenant, tier)

    def _acquire(self, tenant: str, tier: str) -> str:
        self._admit(tier)
        token = uuid.uuid4().hex
        self.tokens[token] = (tenant, tier, time.time())
        self._note_peak()
        return token

    async def acquire_many(self, asks: list[tuple[str, str]]) -> list:
        """``acquire`` for many ``(tenant, tier)`` at once: a token, or the Busy/LumiError, for each."""
        answers = []
        for tenant, tier in asks:
            try:
                answers.append(self._acquire(tenant, tier))
            except LumiError as e:
                answers.append(e)
        return answers

    async def release(self, token: str, seconds: float | None, device: str, endpoint: str | None = None,
                      admitted: tuple[str, str] | None = None) -> dict:
        """Give the place back and meter ``seconds`` of execution on ``device`` (None: it did not run)."""
        try:
            return self._release(token, seconds, device, endpoint, admitted)
        finally:
            self._flush()

    def _release(self, token: str, seconds: float | None, device: str, endpoint: str | None,
                 admitted: tuple[str, str] | None = None) -> dict:
        """``admitted``: the (tenant, tier) the token was for, so that a request admitted before this dispatcher
        restarted (its token died with the old one) is still metered."""
        held = self.tokens.pop(token, None)
        if held is None and (admitted is None or admitted[1] not in self.tiers):
            raise LumiError("unknown or expired admission token; acquire() a new one for each request")
        if seconds is None:  # the request never ran (the gateway gave up waiting for its admission)
            return {"cost": 0.0}
        tenant, tier = held[:2] if held is not None else admitted
        record = self.ledger.add(tenant, tier, device, seconds, self.config.price(device), endpoint=endpoint)
        self._costs.append(record)
        return {"cost": record.cost}

    async def release_many(self, items: list[tuple]) -> list:
        """``release`` for many ``(token, seconds, device, endpoint[, (tenant, tier)])`` at once: a receipt, or the
        error, for each."""
        answers = []
        for item in items:
            try:
                answers.append(self._release(*item))
            except LumiError as e:
                answers.append(e)
        self._flush()
        return answers

    # -- leases -------------------------------------------------------------------------------
    async def lease(self, spec: dict) -> dict:
        """Grant a worker to one replica of an endpoint version, loaded and compiled: returns
        ``{"lease", "worker" (the actor handle), "device", "compile_s"}``. Raises Busy when no worker
        frees up within ``wait_s`` (nothing waits on an actor Ray cannot place).

        ``spec``: endpoint, version, tier, tenant, gpu (None: a CPU worker), cpus, window (the
        endpoint's scaledown window), wait_s, grow (ask Ray's autoscaler for room), data ([ObjectRef]
        of the version's ``.lumi`` bytes).
        """
        self._ensure_started()
        tier = spec.get("tier") or "api"
        if tier not in self.tiers:
            raise LumiError(f"unknown tier {tier!r}; tiers are {', '.join(self.tiers)}")
        gpu = spec.get("gpu")
        self._check_gpus(gpu)
        lease = Lease(uuid.uuid4().hex[:12], spec["endpoint"], int(spec["version"]), tier,
                      spec.get("tenant") or LOCAL_TENANT, DEVICE if gpu else CPU, float(spec.get("window", 60.0)),
                      owner=spec.get("owner") or "")
        ask = _Ask(lease, gpu, float(spec.get("cpus", 1.0)), asyncio.get_running_loop().create_future())
        self.asks.append(ask)
        self._dispatch()
        if not ask.granted.done():
            if lease.role == CPU and self._cpu_starting < sum(a.lease.role == CPU for a in self.asks):
                asyncio.get_running_loop().create_task(self._start_cpu_worker(ask.cpus))
            if spec.get("grow"):
                self._ask_cluster_for_room()
        while True:  # wait_s for a worker to free up, and as long as one that could take it is starting
            try:
                slot = await asyncio.wait_for(asyncio.shield(ask.granted), float(spec.get("wait_s", 5.0)))
                break
            except TimeoutError:
                if ask.granted.done():  # granted just as the wait ran out
                    slot = ask.granted.result()
                    break
                if not self.pool.starting(lease.role):
                    self.asks.remove(ask)
                    what = "GPU" if gpu else "CPU"
                    raise Busy(f"no {what} worker is free for {lease.endpoint!r}: every one is running jobs or "
                               "serving other endpoints; retry shortly", retry_after=LEASE_RETRY_AFTER_S) from None
        try:
            loaded = await slot.handle.hold.remote(lease.id, spec["data"][0])
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            self._lose(slot)
            raise Busy(f"the worker leased to {lease.endpoint!r} died while loading it; retry",
                       retry_after=RETRY_AFTER_BOUNDS[0]) from None
        except ray.exceptions.RayTaskError as e:
            self._end_lease(slot)
            raise (e.cause if isinstance(e.cause, LumiError) else LumiError(str(e.cause))) from None
        return {"lease": lease.id, "worker": slot.handle, "device": slot.device, **loaded}

    async def unlease(self, lease_id: str) -> None:
        """Give a lease back (the autoscaler scaled the endpoint down, or it was deleted)."""
        slot = next((s for s in self.pool.leased() if s.lease.id == lease_id), None)
        if slot is not None:
            self._end_lease(slot)

    async def drop_leases(self, owner: str) -> int:
        """Take back every lease ``owner`` holds: a gateway that Ray restarted gives back what it held before it
        died (its batches went with it). Returns how many."""
        slots = [s for s in self.pool.leased() if s.lease.owner == owner]
        for slot in slots:
            self._end_lease(slot)
        return len(slots)

    def _end_lease(self, slot: Slot) -> None:
        self.pool.take_back(slot)
        self._changed()
        self._dispatch()

    def _grant(self) -> None:
        """Give free workers to waiting asks, oldest first (they are served before queued jobs)."""
        for ask in list(self.asks):
            if ask.granted.done():
                self.asks.remove(ask)
                continue
            fits = [s for s in self.pool.lendable(ask.lease.role) if gpu_fits(ask.gpu, s)]
            if not fits and not self._holds(ask.lease):  # only an endpoint with no lease takes one from another
                rank = self.config.rank(ask.lease.tier)
                fits = [s for s in self.pool.leased(ask.lease.role) if gpu_fits(ask.gpu, s)
                        and self._reclaimable(s.lease, rank)]
                for slot in fits[:1]:
                    self.pool.take_back(slot)
            if fits:
                self.asks.remove(ask)
                self.pool.lend(fits[0], ask.lease)
                ask.granted.set_result(fits[0])

    def _holds(self, lease: Lease) -> bool:
        """Whether the endpoint version ``lease`` is asked for already holds a lease."""
        return any((s.lease.endpoint, s.lease.version) == (lease.endpoint, lease.version) for s in self.pool.leased())

    def _reclaimable(self, lease: Lease, rank) -> bool:
        """A lease may be taken back for work of ``rank`` once idle for RECLAIM_IDLE_S if its tier ranks
        at or below that work's, or for its endpoint's whole scaledown window if it ranks above; and
        never within LEASE_MIN_S of its grant."""
        patience = RECLAIM_IDLE_S if self.config.rank(lease.tier) <= rank else max(RECLAIM_IDLE_S, lease.window)
        return lease.idle() >= patience and time.time() - lease.since >= LEASE_MIN_S

    def _reclaim_for_jobs(self) -> None:
        """Take back an idle lease when eligible jobs are queued and no device worker is free."""
        backlog = [t for t, q in self.queues.items() if q]
        if not backlog or self.pool.free():
            return
        rank = max(self.config.rank(t) for t in backlog)
        heads = [self.queues[t][0] for t in backlog]
        for slot in self.pool.leased(DEVICE):
            if self._reclaimable(slot.lease, rank) and any(self._eligible(j, slot) for j in heads):
                self.pool.take_back(slot)
                self._changed()
                return

    async def _start_cpu_worker(self, cpus: float) -> None:
        self._cpu_starting += 1
        try:
            await self.pool.start_cpu_worker(cpus)
        finally:
            self._cpu_starting -= 1
        self._dispatch()

    def _ask_cluster_for_room(self) -> None:
        """On a cluster that can grow, ask Ray's autoscaler for every lease held or wanted."""
        leases = [s.lease for s in self.pool.leased(None)] + [a.lease for a in self.asks]
        bundles = [{"GPU": self.pool.worker_gpus} if lease.role == DEVICE else {"CPU": 1} for lease in leases]
        with contextlib.suppress(Exception):  # a cluster without an autoscaler: nothing to ask
            request_cluster_resources(bundles)

    def _lose(self, slot: Slot) -> None:
        """A worker died outside a job's watch (found by the stats refresh or a lease's load)."""
        self.pool.mark_dead(slot)
        if slot.role == DEVICE:
            asyncio.get_running_loop().create_task(self._grow())
        self._changed()

    # -- scheduling ---------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            asyncio.get_running_loop().create_task(self._grow())
            asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _grow(self) -> None:
        if self._growing:
            return
        self._growing = True
        try:
            while len(self.pool.live()) < self.pool.wanted():
                if not await self.pool.grow():
                    await asyncio.sleep(1.0)
                self._dispatch()
        finally:
            self._growing = False

    async def _refresh_forever(self) -> None:
        for tick in itertools.count(1):
            await asyncio.sleep(STATS_PERIOD_S)
            if tick % RESOURCES_EVERY == 0:  # a cluster that grew (or lost a node) changes the pool's size
                await self.pool.read_resources()
            for slot in await self.pool.refresh():
                if not slot.running:  # a job's own watcher hands back what a dead worker ran
                    self._lose(slot)
            now = time.monotonic()
            for mailbox in [m for m, box in self.mailboxes.items() if now - box.polled > MAILBOX_KEEP_S]:
                del self.mailboxes[mailbox]  # its process stopped collecting: it has gone
            for slot in self.pool.ready(None):
                if slot.ran:
                    self._record_lane_jobs(slot)
            for slot in self.pool.lanes():
                if slot.lane.idle() > LANE_IDLE_S:
                    self._close_lane(slot)
            for slot in self.pool.lendable(CPU):
                if now - slot.free_since > CPU_WORKER_KEEP_S:
                    self.pool.retire(slot)
            for slot in self.pool.ready(BURST):
                if not slot.running and not any(self.queues.values()) and now - slot.free_since > BURST_KEEP_S:
                    self.pool.retire(slot)
                    self.counts["burst_released"] += 1
            if len(self.pool.live()) < self.pool.wanted():
                asyncio.get_running_loop().create_task(self._grow())
            self._dispatch()

    def _overdue(self):
        """Whether a queued job has waited past its tier's wait target, as of now."""
        now, targets = time.time(), {t: x.wait_target_s for t, x in self.tiers.items()}
        return lambda job: now - job.submitted_at > targets[job.tier]

    def _eligible(self, job: _Job, slot: Slot) -> bool:
        return gpu_fits(job.gpu, slot)

    def _dispatch(self) -> None:
        self._grant()
        self._fill()
        if self.asks or any(self.queues.values()):  # what still waits takes back the lanes, then idle leases
            if self._close_lanes():
                self._grant()
            self._reclaim_for_jobs()
            self._fill()
        self._burst()

    def _fill(self) -> None:
        """Start queued jobs on the free workers, in the round robin's order."""
        progressed = True
        while progressed:
            progressed = False
            for slot in self.pool.free():
                overdue = self._overdue()
                job = self.drr.pick(self.queues, lambda j, s=slot: self._eligible(j, s), overdue)
                if job is not None:
                    self._start(self._batch(job, slot, overdue), slot)
                    progressed = True

    def _burst(self) -> None:
        """Start a burst worker when a tier's head is past its wait target and no worker is free for it, or
        starting."""
        if self._burst_starting or not self.pool.burst_room() or self.pool.free() or self.pool.starting(DEVICE):
            return
        overdue = self._overdue()
        if any(q and overdue(q[0]) for q in self.queues.values()):
            self._burst_starting += 1
            self.counts["burst_started"] += 1
            asyncio.get_running_loop().create_task(self._start_burst_worker())

    async def _start_burst_worker(self) -> None:
        try:
            await self.pool.start_burst_worker()
        finally:
            self._burst_starting -= 1
        self._dispatch()

    def _batch(self, first: _Job, slot: Slot, overdue) -> list[_Job]:
        """``first``, and when it is short, the short jobs the round robin picks next for ``slot``: they go in one
        call (a trivial job costs a worker call more than it costs to run)."""
        batch, total = [first], first.estimate
        while self._short(first) and len(batch) < BATCH_JOBS:
            room = BATCH_S - total
            job = self.drr.pick(self.queues, lambda j, room=room: (self._short(j) and j.estimate <= room
                                                                  and self._eligible(j, slot)), overdue)
            if job is None:
                break
            batch.append(job)
            total += job.estimate
        return batch

    def _short(self, job: _Job) -> bool:
        """A graph job measured (not only modelled: a first run may compile for seconds) at SHORT_JOB_S or less."""
        return job.kind == "graph" and job.key in self.measured and job.estimate <= SHORT_JOB_S

    def _lane_offer(self, batch: list[_Job], slot: Slot) -> Lane | None:
        """A lane for the client of ``batch``'s one short job, when nothing else waits and the worker has no other
        call."""
        job = batch[0]
        if (not self.config.lanes or len(batch) > 1 or not job.mailbox or not self._short(job) or slot.role != DEVICE
                or slot.calls or self.asks or any(self.queues.values())):
            return None
        return Lane(uuid.uuid4().hex, job.mailbox, job.tenant, job.tier, job.gpu)

    def _short_graphs(self) -> dict[str, float]:
        """The most recently measured short graphs, for a lane's worker."""
        recent = itertools.islice(reversed(self.measured.items()), LANE_SHORT_KEYS)
        return {key: seconds for key, seconds in recent if seconds <= SHORT_JOB_S}

    def _start(self, batch: list[_Job], slot: Slot) -> None:
        lane = batch[0].lane = self._lane_offer(batch, slot)
        for job in batch:
            self._last_start = max(time.time(), self._last_start + 1e-6)  # distinct, ordered timestamps
            job.state, job.started_at, job.worker, job.device = "running", self._last_start, slot.id, slot.device
            job.attempts += 1
            job.batched = len(batch) > 1
        self.pool.occupy(slot, [job.id for job in batch])
        self.counts["worker_calls"] += 1
        run = slot.handle.run_jobs if len(batch) == 1 else slot.handle.run_jobs.options(num_returns=len(batch) + 1)
        offer = None if lane is None else (lane.token, lane.tenant, lane.tier, self._short_graphs())
        refs = run.remote([(job.id, job.kind, job.program, job.args, job.tenant) for job in batch], offer)
        for job, result in zip(batch, refs[1:], strict=True):
            job.refs = (refs[0], result)
        self._changed()
        asyncio.get_running_loop().create_task(self._watch(batch, slot, refs))

    async def _watch(self, batch: list[_Job], slot: Slot, refs: list) -> None:
        lost = None
        try:
            readings = await refs[0]
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
            lost = e
        except Exception as e:  # cancelled before it started, or a failure outside the jobs themselves
            readings = [{"seconds": 0.0, "device": slot.device, "error": f"{type(e).__name__}: {e}"} for _ in batch]
        self.pool.vacate(slot, [job.id for job in batch])
        if lost is not None:
            self._worker_lost(batch, slot, lost)
            return
        if batch[0].lane is not None:
            self._open_lane(batch[0], slot, readings[0])
        for job, reading, result in zip(batch, readings, refs[1:], strict=True):
            self._finish(job, reading, result)
        if any(reading.get("replace") for reading in readings):  # out of memory: what was left may not be freed
            self.pool.kill(slot)
            self._lose(slot)
        self._dispatch()

    def _open_lane(self, job: _Job, slot: Slot, reading: dict) -> None:
        """The worker opened the lane its call offered: keep it, and tell the client with the job's end, if the job
        ran and still nothing else waits and the worker has no other call; else close it again."""
        lane, job.lane = job.lane, None
        if (reading.get("error") or job.state == "cancelled" or slot.state == "dead" or slot.calls or slot.lease
                or self.asks or any(self.queues.values())):
            slot.handle.close_lane.remote(lane.token)
            return
        slot.lane = lane
        job.granted = lane.grant(slot, self.config.price(slot.device))
        self.counts["lanes_opened"] += 1

    def _close_lanes(self) -> bool:
        """Close every open lane (work waits); whether there were any. The jobs their workers had not reported yet
        are recorded when the answers come."""
        slots = self.pool.lanes()
        for slot in slots:
            self._close_lane(slot)
        return bool(slots)

    def _close_lane(self, slot: Slot) -> None:
        ref = self.pool.close_lane(slot)
        if ref is not None:
            asyncio.get_running_loop().create_task(self._closed(slot, ref))
        self._changed()

    async def _closed(self, slot: Slot, ref) -> None:
        with contextlib.suppress(ray.exceptions.RayError):
            slot.ran += await ref
        self._record_lane_jobs(slot)

    def _record_lane_jobs(self, slot: Slot) -> None:
        """Count, meter and journal the jobs ``slot``'s lane ran, as the worker reported them: each becomes a
        finished job like any other (its result went straight to its client)."""
        ran, slot.ran = slot.ran, []
        records = []
        for r in ran:
            if r["id"] in self.jobs:
                continue
            job = _Job(id=r["id"], tenant=r["tenant"], tier=r["tier"], kind="graph", program=None, args=[],
                       key=r["key"], work={}, estimate=r["seconds"], gpu=None, label=r["label"],
                       submitted_at=r["submitted_at"], state="failed" if r["error"] else "done",
                       started_at=r["started_at"], finished_at=r["finished_at"], device=r["device"],
                       worker=slot.id, error=r["error"], attempts=1, handed=True)
            self._meter(job, r["seconds"])
            job.finished.set()
            self.jobs[job.id] = job
            self.counts["accepted"] += 1
            self.counts["lane_jobs"] += 1
            self.counts[job.state] += 1
            self._prune(job)
            records.append(job.journal_record())
        if records:
            with contextlib.suppress(JournalError):  # they ran; what would be lost is their record, not their result
                self.journal.ran(records)
            self._flush()

    def _meter(self, job: _Job, seconds: float, compile_s: float = 0.0) -> None:
        """Bill ``job`` its ``seconds`` of execution (journaled with the next flush), and remember them as its
        graph's runtime, less a first run's ``compile_s``: the runs after it are warm."""
        job.gpu_seconds = seconds
        record = self.ledger.add(job.tenant, job.tier, job.device, seconds, self.config.price(job.device),
                                 job_id=job.id)
        self._costs.append(record)
        job.cost = record.cost
        if seconds > 0 and job.key:
            run = max(seconds - compile_s, metering.MIN_ESTIMATE_S / 100)
            self.measured[job.key] = metering.refine(self.measured.get(job.key), run)

    def _finish(self, job: _Job, reading: dict, result_ref) -> None:
        seconds = reading["seconds"]
        self._meter(job, seconds, reading.get("compile_s", 0.0))
        self.drr.correct(job.tier, seconds - job.estimate, bool(self.queues[job.tier]))
        job.program, job.args, job.refs = None, [], None
        if job.state != "cancelled":
            job.state = "failed" if reading.get("error") else "done"
            job.error = reading.get("error")
            job.value, job.output = reading.get("value"), reading.get("output")
            job.result = result_ref if job.value is None else None
            job.finished_at = time.time()
            self.counts[job.state] += 1
            self._ended(job)
            self._prune(job)
            self._journal_end(job)
        else:  # cancel() journaled how it ended; only the seconds it ran are new
            self._flush()
        self._changed()

    def _worker_lost(self, batch: list[_Job], slot: Slot, error: Exception) -> None:
        """``slot``'s worker died running ``batch``: each job goes back to the head of its tier (in the order they
        were picked), or fails after MAX_ATTEMPTS."""
        retiring = slot.retiring
        self.pool.mark_dead(slot)
        asyncio.get_running_loop().create_task(self._grow())
        for job in reversed(batch):
            if job.state == "cancelled":
                continue
            if retiring:
                job.attempts -= 1
            job.refs = None
            if job.attempts >= MAX_ATTEMPTS:
                self._fail(job, f"its worker died {job.attempts} times (last: {type(error).__name__}); "
                                "the job may crash workers: check its memory use and run it again")
                continue
            job.state, job.started_at, job.worker, job.device = "queued", None, None, None
            self.queues[job.tier].appendleft(job)
            self.counts["requeued"] += 1
        self._changed()
        self._dispatch()

    def _fail(self, job: _Job, reason: str) -> None:
        job.state, job.error, job.finished_at = "failed", reason, time.time()
        job.program, job.args = None, []
        self.counts["failed"] += 1
        self._ended(job)
        self._prune(job)
        self._journal_end(job)
        self._changed()

    def _ended(self, job: _Job) -> None:
        """Wake the job's waiters, and put its end in its client's mailbox."""
        job.finished.set()
        if job.mailbox:
            self._mailbox(job.mailbox).add(job.id)

    def _mailbox(self, mailbox: str) -> _Mailbox:
        box = self.mailboxes.get(mailbox)
        if box is None:
            box = self.mailboxes[mailbox] = _Mailbox()
        return box

    def _journal_end(self, job: _Job) -> None:
        """Journal how ``job`` ended (with its small result and output) with the next flush: once this turn of the
        event loop is over, and in any case before its end is handed to anyone."""
        self._ends.append((job.journal_record(), job.value, job.output))
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write the ends, forgotten jobs and cost records gathered since the last flush, in one transaction."""
        self._flush_due = False
        ends, gone, costs = self._ends, self._gone, self._costs
        self._ends, self._gone, self._costs = [], [], []
        with contextlib.suppress(JournalError):  # they ended; after a restart on a full disk they would run again
            self.journal.ended(ends, gone, costs)

    async def cancel(self, job_id: str) -> dict:
        """Cancel a queued or running job (a running one's worker is replaced if it does not stop)."""
        job = self._job(job_id)
        if job.state in FINAL:
            return self._public(job)
        if job.state == "queued":
            self.queues[job.tier].remove(job)
        else:
            if not job.batched:  # a batch's call is its other jobs' too: it runs out (short jobs), or is stopped
                ray.cancel(job.refs[0])
            asyncio.get_running_loop().create_task(self._stop(job, job.worker))
        job.state, job.finished_at = "cancelled", time.time()
        self.counts["cancelled"] += 1
        self._ended(job)
        self._prune(job)
        self._journal_end(job)
        self._flush()
        self._changed()
        return self._public(job)

    async def _stop(self, job: _Job, worker: str) -> None:
        await asyncio.sleep(CANCEL_GRACE_S)
        slot = self.pool.slots.get(worker)
        if slot is not None and job.id in slot.running:
            self.pool.kill(slot)

    async def resize(self, workers: int) -> dict:
        """Keep ``workers`` worker actors (extra idle ones are stopped first)."""
        self._ensure_started()
        self.pool.target = workers
        live = sorted(self.pool.live(), key=lambda s: len(s.running))
        for slot in live[workers:]:
            self.pool.kill(slot)
            if not slot.running:
                self.pool.mark_dead(slot)
        await self._grow()
        return await self.cluster()

    # -- views --------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._order = None

    def _positions(self) -> dict[str, tuple[int, int]]:
        """Each queued job's 1-based place in the order DRR would dispatch the current queues, overall
        and within its tier (computed when asked for, once per change of the queues)."""
        if self._order is None:
            drr, queues = self.drr.copy(), {t: q.copy() for t, q in self.queues.items()}
            in_tier = dict.fromkeys(self.queues, 0)
            order = {}
            overdue = self._overdue()
            while (job := drr.pick(queues, overdue=overdue)) is not None:
                in_tier[job.tier] += 1
                order[job.id] = (len(order) + 1, in_tier[job.tier])
            self._order = order
        return self._order

    def _public(self, job: _Job) -> dict:
        if job.state != "queued":
            return job.public()
        return job.public(*self._positions().get(job.id, (None, None)))

    def _job(self, job_id: str) -> _Job:
        self._ensure_started()  # a restarted dispatcher hears first from clients asking about their jobs
        try:
            return self.jobs[job_id]
        except KeyError:
            raise LumiError(f"no job {job_id!r} (finished jobs are kept for the last {KEEP_FINISHED})") from None

    def _prune(self, job: _Job) -> None:
        """Remember ``job`` as finished; forget the oldest finished ones past KEEP_FINISHED (journal too)."""
        self.finished.append(job.id)
        gone = []
        while len(self.finished) > KEEP_FINISHED:
            gone.append(self.finished.popleft())
            self.jobs.pop(gone[-1], None)
        self._gone += gone

    async def status(self, job_id: str) -> dict:
        return self._public(self._job(job_id))

    async def progress(self, job_id: str) -> dict:
        """A job and the worker running it (device, utilization), for live displays."""
        job = self._job(job_id)
        slot = self.pool.slots.get(job.worker) if job.worker else None
        return {"job": self._public(job), "worker": slot.snapshot(self._running()) if slot else None,
                "price": self.config.price(job.device or ("CPU" if self.pool.fallback() else "GPU"))}

    async def output(self, job_id: str, since: int = 0) -> list[tuple[str, str]]:
        """What a Python job has printed from chunk ``since`` on: ``(stream, text)`` pairs, read from its worker
        while it runs (none while it is queued)."""
        job = self._job(job_id)
        if job.output is not None:
            return job.output[since:]
        slot = self.pool.slots.get(job.worker) if job.state == "running" and job.worker else None
        if slot is None:
            return []
        try:
            chunks = await slot.handle.output.remote(job.id, since)
        except ray.exceptions.RayError:  # the worker died: the job runs again elsewhere, or fails with the reason
            return []
        return chunks if chunks is not None else (job.output or [])[since:]

    @ray.method(enable_task_events=False)
    async def wait(self, job_id: str) -> dict:
        """Wait until the job finishes; hand over its end (see :meth:`_hand_over`)."""
        job = self._job(job_id)
        await job.finished.wait()
        return self._hand_over([job])[0]

    @ray.method(enable_task_events=False)
    async def collect(self, mailbox: str, watch: list[str] | None = None, wait_s: float = 5.0) -> dict:
        """The ends of the jobs submitted with ``mailbox`` that finished since the last collect (waiting up to
        ``wait_s`` for one), each as :meth:`wait` answers it; ``watch`` names jobs whose end belongs there too
        (a collector that saw a restart names what it still waits for). Jobs of ``watch`` this dispatcher does
        not know are listed as ``unknown``; ``incarnation`` changes when the dispatcher restarts."""
        self._ensure_started()
        box = self._mailbox(mailbox)
        box.polled = time.monotonic()
        unknown = []
        for job_id in watch or ():
            job = self.jobs.get(job_id)
            if job is None:
                unknown.append(job_id)
                continue
            job.mailbox = mailbox
            if job.finished.is_set() and job_id not in box.ready:
                box.add(job_id)
        if not box.ready and not unknown:
            box.event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(box.event.wait(), wait_s)
        ids, box.ready = box.ready, []
        box.event.clear()
        unknown += [i for i in ids if i not in self.jobs]
        ends = self._hand_over([self.jobs[i] for i in ids if i in self.jobs])
        return {"ends": ends, "unknown": unknown, "incarnation": self.incarnation}

    def _hand_over(self, ended: list[_Job]) -> list[dict]:
        """Each finished job's end: its record, result ObjectRef (in a list) and small result. Ray may deliver an
        answer twice (a retry across a restart), so a result stays for RESULT_GRACE_S after its first hand-over,
        then the dispatcher lets go of it."""
        self._flush()  # nothing is handed over that is not journaled
        answers, taken = [], []
        for job in ended:
            result, value = job.result, job.value
            if (result is not None or value is not None) and not job.handed:
                job.handed = True
                taken.append(job.id)
                asyncio.get_running_loop().call_later(RESULT_GRACE_S, self._let_go, job)
            answers.append({"job": self._public(job), "result": None if result is None else [result],
                            "value": value, "output": job.output, "lane": job.granted})
        with contextlib.suppress(JournalError):
            self.journal.taken(taken)
        return answers

    @staticmethod
    def _let_go(job: _Job) -> None:
        job.result = job.value = None

    async def jobs(self, limit: int = 200) -> list[dict]:
        return [self._public(j) for j in list(self.jobs.values())[::-1][:limit]]

    def _running(self) -> dict[str, dict]:
        """Tier, tenant and label of every running job, for the workers' ``doing``."""
        return {j.id: {"tier": j.tier, "tenant": j.tenant, "label": j.label}
                for s in self.pool.ready() for j in map(self.jobs.get, s.running) if j is not None}

    async def cluster(self) -> dict:
        self._ensure_started()
        depth = {t: len(q) for t, q in self.queues.items()}
        return {"workers": self.pool.snapshot(self._running()), "queue": depth, "queue_cap": self.config.queue_cap,
                "leases": [s.lease.public() for s in self.pool.leased(None)], "pending_leases": len(self.asks),
                "tiers": {t: {"weight": x.weight, "cap": x.cap, "wait_target_s": x.wait_target_s}
                          for t, x in self.tiers.items()},
                "lanes": len(self.pool.lanes()),
                "fallback": self.pool.fallback(), "dispatch_limit": self.config.dispatch_limit,
                "tokens": len(self.tokens)}

    async def costs(self) -> dict:
        return self.ledger.snapshot()

    async def counters(self) -> dict:
        """Admission and outcome counts, and the deepest the queues have been (queued jobs plus held tokens)."""
        depth, total = self._occupancy()
        return {**self.counts, "peak": dict(self.peak), "depth": {"total": total, **depth},
                "caps": {"total": self.config.queue_cap, **{t: x.cap for t, x in self.tiers.items()}}}


def start_dispatcher(name: str, env: dict | None = None, workers: int | None = None, detached: bool = False):
    """Start a dispatcher actor under ``name`` (or return the one that already runs under it)."""
    ensure_connected()
    options = dict(name=name, namespace=NAMESPACE, get_if_exists=True, **on_the_head())
    if detached:
        options["lifetime"] = "detached"
    return Dispatcher.options(**options).remote(env=env, workers=workers, name=name)


HANDLE_TTL_S = 2.0  # how long get_dispatcher() reuses a handle before asking Ray for the named actor again
_handle: tuple[str, float, object] | None = None  # (Ray job id, when asked, handle) of this process


def get_dispatcher():
    """The cluster's dispatcher ("lumi-dispatcher" in namespace "lumi"), started on first use.

    The creator's ``LUMI_*`` environment variables configure it; racing creators get the same actor. The handle
    is reused for HANDLE_TTL_S within one Ray connection: asking Ray for a named actor is a round trip to its
    control store, which would otherwise double the cost of a small job's submit.
    """
    global _handle
    ensure_connected()
    connection, now = ray.get_runtime_context().get_job_id(), time.monotonic()
    if _handle is None or _handle[0] != connection or now - _handle[1] > HANDLE_TTL_S:
        _handle = (connection, now, start_dispatcher(NAME, env=lumi_environment(), detached=True))
    return _handle[2]
