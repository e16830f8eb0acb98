"""The worker actors one dispatcher owns: starting them, their slots, health and utilization."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import ray

from .utilization import BUSY_FRACTION
from .worker import Worker

FALLBACK_WORKERS = 2  # CPU-fallback workers share the host's cores: more than two rarely helps


@dataclass
class Slot:
    """One worker actor as the dispatcher sees it."""

    id: str
    handle: object
    state: str = "starting"  # starting | idle | busy | dead
    host: str = ""
    device: str = ""
    target: str = ""
    fallback: bool = True
    running: set[str] = field(default_factory=set)
    stats: dict = field(default_factory=lambda: {"utilization": 0.0, "utilization_source": BUSY_FRACTION,
                                                 "memory_used": None, "memory_total": None})
    retiring: bool = False  # killed on purpose (a cancel or a resize): its jobs go back without a charged attempt

    def snapshot(self) -> dict:
        return {"id": self.id, "host": self.host, "device": self.device, "target": self.target,
                "fallback": self.fallback, **self.stats, "running": len(self.running), "state": self.state}


class Pool:
    """Worker actors under a dispatch limit; ``target`` workers are kept alive, dead ones replaced."""

    def __init__(self, dispatch_limit: int, worker_gpus: float, target: int | None):
        self.dispatch_limit = dispatch_limit
        self.worker_gpus = worker_gpus
        self.target = target  # None: one per GPU slot, or FALLBACK_WORKERS on the CPU fallback
        self.slots: dict[str, Slot] = {}
        self.dead: list[Slot] = []

    def live(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.state != "dead"]

    def ready(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.state in ("idle", "busy")]

    def free(self) -> list[Slot]:
        """Ready workers below the dispatch limit, least loaded first."""
        return sorted((s for s in self.ready() if len(s.running) < self.dispatch_limit), key=lambda s: len(s.running))

    def fallback(self) -> bool:
        ready = self.ready()
        return not ready or all(s.fallback for s in ready)

    def wanted(self) -> int:
        if self.target is not None:
            return self.target
        slots = int(ray.cluster_resources().get("GPU", 0) / self.worker_gpus) or 1
        return min(slots, FALLBACK_WORKERS) if self.fallback() else slots

    async def grow(self) -> list[Slot]:
        """Start workers up to the wanted number and wait for them; returns those that came up."""
        new = []
        # A cluster without GPU slots (a plain `ray start`, a CPU-only KubeRay) gets CPU-fallback
        # workers; asking for a GPU there would leave the worker, and every job, waiting forever.
        has_gpus = ray.cluster_resources().get("GPU", 0) >= self.worker_gpus
        for _ in range(self.wanted() - len(self.live())):
            name = f"lumi-worker-{uuid.uuid4().hex[:8]}"
            slot = Slot(name, Worker.options(name=name, num_gpus=self.worker_gpus if has_gpus else 0).remote())
            self.slots[name] = slot
            new.append(slot)
        infos = await asyncio.gather(*(s.handle.info.remote() for s in new), return_exceptions=True)
        up = []
        for slot, info in zip(new, infos):
            if isinstance(info, BaseException):
                self.mark_dead(slot)
                continue
            slot.host, slot.device, slot.target = info["host"], info["device"], info["target"]
            slot.fallback, slot.state = info["fallback"], "idle"
            up.append(slot)
        return up

    def occupy(self, slot: Slot, job_id: str) -> None:
        slot.running.add(job_id)
        slot.state = "busy"

    def vacate(self, slot: Slot, job_id: str) -> None:
        slot.running.discard(job_id)
        if slot.state == "busy" and not slot.running:
            slot.state = "idle"

    def mark_dead(self, slot: Slot) -> None:
        if slot.state != "dead":
            slot.state = "dead"
            self.slots.pop(slot.id, None)
            self.dead = [*self.dead[-15:], slot]

    def kill(self, slot: Slot) -> None:
        """Kill a worker on purpose; what it held is handed back by the dispatcher's watchers."""
        slot.retiring = True
        ray.kill(slot.handle, no_restart=True)

    async def refresh(self) -> None:
        """Fetch each ready worker's utilization and memory."""
        ready = self.ready()
        stats = await asyncio.gather(*(s.handle.stats.remote() for s in ready), return_exceptions=True)
        for slot, stat in zip(ready, stats):
            if not isinstance(stat, BaseException):
                slot.stats = stat

    def snapshot(self) -> list[dict]:
        """Workers that are up, then recently dead ones (those still starting are left out)."""
        return [s.snapshot() for s in [*self.ready(), *self.dead]]
