"""Replicas: Ray actors holding one endpoint version's graph, and the set of them the autoscaler sizes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

import numpy as np
import ray

from ..graph.fileformat import loads
from ..runtime.execute import execute
from ..runtime.worker import device_name

BATCHES_PER_REPLICA = 2  # one running, one waiting at the actor, so a replica never idles between batches


@ray.remote(max_restarts=0)
class Replica:
    """Runs one graph; loaded from its ``.lumi`` bytes (already verified by the model store)."""

    def __init__(self, data: bytes):
        self.graph = loads(data)
        self.device = device_name()

    def ready(self) -> str:
        return self.device

    def run(self, arrays: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float, str]:
        start = time.perf_counter()
        outputs = execute(self.graph, list(arrays))
        return outputs, time.perf_counter() - start, self.device


class _Slot:
    def __init__(self, actor, started: float):
        self.actor = actor
        self.started = started
        self.ready = False
        self.busy = 0
        self.draining = False
        self.failed: BaseException | None = None


class ReplicaSet:
    """The replicas of one endpoint version. ``acquire()`` waits for a free batch slot and asks for a
    replica when there are none (a cold start); ``scale_to(n)`` starts or drains replicas."""

    def __init__(self, data: bytes, gpu: str | None = None, label: str = ""):
        self.data = data
        self.gpu = gpu
        self.label = label
        self.slots: list[_Slot] = []
        self.cold_starts: list[float] = []
        self.last_busy = time.monotonic()
        self._changed = asyncio.Event()
        self._waiting = 0
        self._data_ref = None

    # -- counts ----------------------------------------------------------------------------
    @property
    def replicas(self) -> int:
        """Replicas started or starting (not draining)."""
        return sum(1 for s in self.slots if not s.draining)

    @property
    def ready(self) -> int:
        return sum(1 for s in self.slots if s.ready and not s.draining)

    @property
    def busy(self) -> int:
        return sum(s.busy for s in self.slots)

    @property
    def waiting(self) -> int:
        """Batches waiting for a slot."""
        return self._waiting

    # -- scaling ---------------------------------------------------------------------------
    def _options(self) -> dict:
        if self.gpu:
            return {"num_gpus": 1, "num_cpus": 0}
        return {"num_cpus": float(os.environ.get("LUMI_REPLICA_CPUS", 1))}

    def scale_to(self, n: int) -> None:
        live = [s for s in self.slots if not s.draining]
        for _ in range(n - len(live)):
            if self._data_ref is None:
                self._data_ref = ray.put(self.data)
            slot = _Slot(Replica.options(**self._options()).remote(self._data_ref), time.monotonic())
            self.slots.append(slot)
            asyncio.get_running_loop().create_task(self._start(slot))
        # drain the least useful first: not ready, then idle
        for slot in sorted(live, key=lambda s: (s.ready, s.busy), reverse=False)[: max(0, len(live) - n)]:
            slot.draining = True
            self._reap(slot)
        self._changed.set()

    async def _start(self, slot: _Slot) -> None:
        try:
            await slot.actor.ready.remote()
            slot.ready = True
            self.cold_starts.append(time.monotonic() - slot.started)
        except Exception as e:  # the actor died while starting: drop it; the autoscaler asks again
            slot.failed = e
            slot.draining = True
            self._reap(slot)
        self._changed.set()

    def _reap(self, slot: _Slot) -> None:
        if slot.busy == 0 and slot in self.slots:
            self.slots.remove(slot)
            ray.kill(slot.actor, no_restart=True)

    def close(self) -> None:
        for slot in list(self.slots):
            slot.draining = True
            self._reap(slot)

    # -- batches ---------------------------------------------------------------------------
    def _free(self) -> _Slot | None:
        free = [s for s in self.slots if s.ready and not s.draining and s.busy < BATCHES_PER_REPLICA]
        return min(free, key=lambda s: s.busy) if free else None

    async def acquire(self):
        """Wait for a replica slot; return ``(run, done)`` for one batch."""
        self._waiting += 1
        try:
            while (slot := self._free()) is None:
                if self.replicas == 0:
                    self.scale_to(1)  # cold start from zero: do not wait for the autoscaler's tick
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._waiting -= 1
        slot.busy += 1
        self.last_busy = time.monotonic()

        async def run(arrays):
            try:
                return await slot.actor.run.remote(arrays)
            except ray.exceptions.RayActorError:
                slot.draining = True
                raise

        def done():
            slot.busy -= 1
            self.last_busy = time.monotonic()
            if slot.draining:
                self._reap(slot)
            self._changed.set()

        return run, done
