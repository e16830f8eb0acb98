"""The one pool of worker actors a dispatcher owns: starting them, their slots, leases, health and
utilization. Device workers (one per GPU slot) run jobs and GPU endpoints; CPU workers start on
demand for CPU-only endpoints; burst workers (on nodes of the burst group, when one is configured) run jobs
only, while a tier is past its wait target. An endpoint version's replicas are leases on these workers, and a
device worker may hold a lane for one client process while nothing is queued (see ``lumi.runtime.worker``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import asdict, dataclass, field

import ray

from ..errors import LumiError
from .utilization import BUSY_FRACTION
from .worker import Worker

FALLBACK_WORKERS = 2  # CPU-fallback workers share the host's cores: more than two rarely helps
START_TIMEOUT_S = 60.0
RESOURCES_TIMEOUT_S = 10.0  # a worker Ray has not placed by then is given up (and killed), not waited on
DEVICE, CPU, BURST = "device", "cpu", "burst"
_PREFIX = {DEVICE: "lumi-worker", CPU: "lumi-cpu-worker", BURST: "lumi-burst-worker"}


@dataclass(frozen=True)
class BurstGroup:
    """Nodes carrying the Ray node label ``key=value`` (``LUMI_BURST_POOL``) are burst capacity: device workers
    start there only while a tier's head is overdue, and stop once the queues have drained."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str | None) -> BurstGroup | None:
        if not text:
            return None
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise LumiError(f"LUMI_BURST_POOL is a node label KEY=VALUE (such as lumi.io/pool=burst), not {text!r}")
        return cls(key.strip(), value.strip())

    def selector(self, burst: bool) -> dict[str, str]:
        """The label selector placing a worker on burst nodes, or (``burst`` False) on every other node."""
        return {self.key: self.value if burst else f"!{self.value}"}

    def holds(self, node: dict) -> bool:
        return (node.get("Labels") or {}).get(self.key) == self.value


@dataclass
class Lease:
    """One replica of an endpoint version: a worker granted to it until given back or reclaimed."""

    id: str
    endpoint: str
    version: int
    tier: str
    tenant: str
    role: str  # device | cpu
    window: float  # the endpoint's scaledown window: how long a lease of a higher tier stays while idle
    worker: str = ""
    since: float = field(default_factory=time.time)
    batches: int = 0
    gpu_seconds: float = 0.0
    idle_for: float = 0.0
    seen_at: float = field(default_factory=time.monotonic)  # when batches and idle_for were last read
    owner: str = ""  # who asked: a gateway's actor id (the same after Ray restarts it)

    def idle(self) -> float:
        """Seconds since the lease last ran a batch (as of the worker's last report)."""
        return self.idle_for + time.monotonic() - self.seen_at

    def public(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("seen_at", "window", "idle_for")} | \
            {"idle_for": self.idle()}


@dataclass
class Lane:
    """A device worker open to one client process's short jobs, sent straight to it, until work waits."""

    token: str
    mailbox: str  # the process's (see lumi.runtime.wire)
    tenant: str
    tier: str
    gpu: str | None
    since: float = field(default_factory=time.time)
    jobs: int = 0
    idle_for: float = 0.0
    seen_at: float = field(default_factory=time.monotonic)

    def idle(self) -> float:
        return self.idle_for + time.monotonic() - self.seen_at

    def grant(self, slot: Slot, price: float) -> dict:
        """What the client is told of the lane with its job's end."""
        return {"token": self.token, "worker": slot.handle, "worker_id": slot.id, "device": slot.device,
                "price": price, "tenant": self.tenant, "tier": self.tier, "gpu": self.gpu}


@dataclass
class Slot:
    """One worker actor as the dispatcher sees it."""

    id: str
    handle: object
    role: str = DEVICE
    state: str = "starting"  # starting | idle | busy | leased | dead
    host: str = ""
    device: str = ""
    target: str = ""
    fallback: bool = True
    running: set[str] = field(default_factory=set)
    calls: int = 0  # worker calls in flight, each with one job or a batch of short ones (the dispatch limit's unit)
    lease: Lease | None = None
    lane: Lane | None = None
    ran: list[dict] = field(default_factory=list)  # lane jobs the worker reported, not yet recorded
    free_since: float = field(default_factory=time.monotonic)
    stats: dict = field(default_factory=lambda: {"utilization": 0.0, "utilization_source": BUSY_FRACTION,
                                                 "memory_used": None, "memory_total": None})
    retiring: bool = False  # killed on purpose (a cancel or a resize): its jobs go back without a charged attempt

    def doing(self, jobs: dict) -> dict:
        """What the worker does now; ``jobs`` maps the ids it runs to their tier, tenant and label."""
        if self.state == "dead":
            return {"kind": "dead"}
        if self.lease is not None:
            keys = ("endpoint", "version", "tier", "tenant", "since", "batches", "gpu_seconds")
            return {"kind": "serving", **{k: getattr(self.lease, k) for k in keys}}
        if self.lane is not None and not self.running:
            return {"kind": "lane", "tier": self.lane.tier, "tenant": self.lane.tenant, "since": self.lane.since,
                    "jobs": self.lane.jobs}
        for job_id in sorted(self.running):
            return {"kind": "job", "job": job_id, **jobs.get(job_id, {})}
        return {"kind": "idle"}

    def snapshot(self, jobs: dict) -> dict:
        doing = self.doing(jobs)
        return {"id": self.id, "role": self.role, "host": self.host, "device": self.device, "target": self.target,
                "fallback": self.fallback, **self.stats,
                "running": len(self.running), "state": self.state, "doing": doing, "activity": activity(doing)}


def activity(doing: dict) -> str:
    """One line for people: idle, job 3f2a91c0 (api, acme), serving mnist v3 since 12:01:07 (41 batches)."""
    if doing["kind"] == "job":
        return f"job {doing['job']} ({doing.get('tier', '?')}, {doing.get('tenant', '?')})"
    if doing["kind"] == "serving":
        since = time.strftime("%H:%M:%S", time.localtime(doing["since"]))
        return f"serving {doing['endpoint']} v{doing['version']} since {since} ({doing['batches']} batches)"
    if doing["kind"] == "lane":
        return f"lane for {doing['tenant']} ({doing['tier']}, {doing['jobs']} jobs)"
    return doing["kind"]


class Pool:
    """Worker actors under a dispatch limit; ``target`` device workers are kept alive, dead ones replaced."""

    def __init__(self, dispatch_limit: int, worker_gpus: float, target: int | None, memory_limit: int = 0,
                 burst: BurstGroup | None = None):
        self.dispatch_limit = dispatch_limit
        self.worker_gpus = worker_gpus
        self.memory_limit = memory_limit  # resident bytes each worker may reach (0: no limit)
        self.target = target  # None: one per GPU slot, or FALLBACK_WORKERS on the CPU fallback
        self.burst = burst
        self.slots: dict[str, Slot] = {}
        self.dead: list[Slot] = []
        self.resources: dict[str, float] = {}  # the cluster's totals and free resources, as last read
        self.free_resources: dict[str, float] = {}
        self.burst_gpus = 0.0  # GPUs on burst nodes, as last read

    def live(self, role: str | None = DEVICE) -> list[Slot]:
        return [s for s in self.slots.values() if s.state != "dead" and role in (None, s.role)]

    def ready(self, role: str | None = DEVICE) -> list[Slot]:
        return [s for s in self.slots.values() if s.state in ("idle", "busy", "leased") and role in (None, s.role)]

    def starting(self, role: str) -> list[Slot]:
        return [s for s in self.slots.values() if s.state == "starting" and s.role == role]

    def free(self) -> list[Slot]:
        """Workers that may take a call (device and burst ones: ready, not leased, no lane open, below the dispatch
        limit), least loaded first, burst ones last."""
        return sorted((s for s in [*self.ready(), *self.ready(BURST)] if s.lease is None and s.lane is None
                       and s.calls < self.dispatch_limit), key=lambda s: (s.role == BURST, s.calls))

    def lendable(self, role: str) -> list[Slot]:
        """Workers of ``role`` that may be leased now: ready, running nothing, leased to nobody, no lane open."""
        return [s for s in self.ready(role) if s.lease is None and s.lane is None and not s.running]

    def lanes(self) -> list[Slot]:
        return [s for s in self.ready() if s.lane is not None]

    def close_lane(self, slot: Slot):
        """Close the slot's lane: the worker declines its jobs from now on. Returns the worker's answer (an
        ObjectRef of the lane jobs it had not reported yet), or None."""
        lane, slot.lane = slot.lane, None
        if lane is None or slot.state == "dead":
            return None
        return slot.handle.close_lane.remote(lane.token)

    def leased(self, role: str | None = None) -> list[Slot]:
        return [s for s in self.ready(role) if s.lease is not None]

    def fallback(self) -> bool:
        ready = self.ready()
        return not ready or all(s.fallback for s in ready)

    async def read_resources(self) -> None:
        """Refresh what the cluster has (total and free), off the event loop: these are blocking calls to
        Ray's control store, which must never stall the dispatcher (a call that does not answer is left)."""
        def read():
            burst = self.burst and sum(n["Resources"].get("GPU", 0) for n in ray.nodes()
                                       if n.get("Alive") and self.burst.holds(n))
            return ray.cluster_resources(), ray.available_resources(), float(burst or 0)

        with contextlib.suppress(Exception):  # TimeoutError, or the control store restarting: keep the last one
            self.resources, self.free_resources, self.burst_gpus = await asyncio.wait_for(asyncio.to_thread(read),
                                                                                         RESOURCES_TIMEOUT_S)

    def has_gpus(self) -> bool:
        return self.resources.get("GPU", 0) - self.burst_gpus >= self.worker_gpus

    def wanted(self) -> int:
        """Device workers wanted: ``target``, else one per GPU slot off the burst nodes (at most two on the CPU
        fallback)."""
        if self.target is not None:
            return self.target
        slots = int((self.resources.get("GPU", 0) - self.burst_gpus) / self.worker_gpus) or 1
        return min(slots, FALLBACK_WORKERS) if self.fallback() else slots

    def burst_room(self) -> int:
        """Burst workers that could start now: the burst nodes' GPU slots not yet used by one."""
        if self.burst is None:
            return 0
        return max(0, int(self.burst_gpus / self.worker_gpus) - len(self.live(BURST)))

    def _spawn(self, role: str, options: dict) -> Slot:
        name = f"{_PREFIX[role]}-{uuid.uuid4().hex[:8]}"
        if self.burst is not None and role != CPU:
            options = {**options, "label_selector": self.burst.selector(role == BURST)}
        slot = self.slots[name] = Slot(name, Worker.options(name=name, **options).remote(self.memory_limit),
                                           role=role)
        return slot

    async def start_burst_worker(self) -> Slot | None:
        """One device worker on a burst node (None when it did not come up)."""
        return await self._ready(self._spawn(BURST, {"num_gpus": self.worker_gpus}))

    async def _ready(self, slot: Slot) -> Slot | None:
        try:
            info = await asyncio.wait_for(slot.handle.info.remote(), START_TIMEOUT_S)
        except Exception:  # it died starting, or Ray could not place it in time
            self.kill(slot)
            self.mark_dead(slot)
            return None
        slot.host, slot.device, slot.target = info["host"], info["device"], info["target"]
        slot.fallback, slot.state = info["fallback"], "idle"
        return slot

    async def grow(self) -> list[Slot]:
        """Start device workers up to the wanted number and wait for them; returns those that came up."""
        # A cluster without GPU slots (a plain `ray start`, a CPU-only KubeRay) gets CPU-fallback
        # workers; asking for a GPU there would leave the worker, and every job, waiting forever.
        await self.read_resources()
        options = {"num_gpus": self.worker_gpus if self.has_gpus() else 0}
        new = [self._spawn(DEVICE, options) for _ in range(self.wanted() - len(self.live()))]
        return [s for s in await asyncio.gather(*map(self._ready, new)) if s is not None]

    async def start_cpu_worker(self, cpus: float) -> Slot | None:
        """A worker for CPU endpoints, when the cluster has ``cpus`` free now (None otherwise: no waiting
        on an actor that Ray cannot place)."""
        await self.read_resources()
        if self.free_resources.get("CPU", 0) < cpus:
            return None
        return await self._ready(self._spawn(CPU, {"num_gpus": 0, "num_cpus": cpus}))

    def occupy(self, slot: Slot, job_ids: list[str]) -> None:
        """One call to ``slot`` carries these jobs."""
        slot.running.update(job_ids)
        slot.calls += 1
        slot.state = "busy"

    def vacate(self, slot: Slot, job_ids: list[str]) -> None:
        """The call that carried these jobs has ended."""
        slot.running.difference_update(job_ids)
        slot.calls -= 1
        if slot.state == "busy" and not slot.running:
            slot.state = "idle"
            slot.free_since = time.monotonic()

    def lend(self, slot: Slot, lease: Lease) -> None:
        lease.worker = slot.id
        slot.lease, slot.state = lease, "leased"

    def take_back(self, slot: Slot) -> Lease | None:
        """End the slot's lease (the worker is told to drop it); returns the lease."""
        lease, slot.lease = slot.lease, None
        if lease is not None and slot.state != "dead":
            slot.handle.drop.remote(lease.id)
            slot.state, slot.free_since = ("busy" if slot.running else "idle"), time.monotonic()
        return lease

    def mark_dead(self, slot: Slot) -> None:
        if slot.state != "dead":
            slot.state = "dead"
            slot.lease = slot.lane = None
            self.slots.pop(slot.id, None)
            self.dead = [*self.dead[-15:], slot]

    def retire(self, slot: Slot) -> None:
        """Stop a worker nobody needs (an idle CPU worker); it is not listed among the dead."""
        slot.state = "dead"
        self.slots.pop(slot.id, None)
        self.kill(slot)

    def kill(self, slot: Slot) -> None:
        """Kill a worker on purpose; what it held is handed back by the dispatcher's watchers."""
        slot.retiring = True
        ray.kill(slot.handle, no_restart=True)

    async def refresh(self) -> list[Slot]:
        """Fetch each ready worker's utilization, memory and lease counters; returns workers found dead."""
        ready = self.ready(None)
        stats = await asyncio.gather(*(s.handle.stats.remote() for s in ready), return_exceptions=True)
        lost = []
        for slot, stat in zip(ready, stats):
            if isinstance(stat, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)):
                lost.append(slot)
            elif not isinstance(stat, BaseException):
                held, lane = stat.pop("lease"), stat.pop("lane")
                slot.ran += stat.pop("ran")
                slot.stats = stat
                if slot.lease is not None and held is not None and held["id"] == slot.lease.id:
                    slot.lease.batches, slot.lease.gpu_seconds = held["batches"], held["gpu_seconds"]
                    slot.lease.idle_for, slot.lease.seen_at = held["idle_for"], time.monotonic()
                if slot.lane is not None and lane is not None and lane["token"] == slot.lane.token:
                    slot.lane.jobs, slot.lane.idle_for, slot.lane.seen_at = (lane["jobs"], lane["idle_for"],
                                                                             time.monotonic())
        return lost

    def snapshot(self, jobs: dict) -> list[dict]:
        """Workers that are up, then recently dead ones (those still starting are left out)."""
        return [s.snapshot(jobs) for s in [*self.ready(None), *self.dead]]
