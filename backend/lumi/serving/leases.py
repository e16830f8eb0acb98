"""An endpoint version's replicas: leases on the dispatcher's workers, asked for and given back as
the autoscaler sizes them. Batches go straight to the leased worker; the dispatcher is asked only
for leases, never per request."""

from __future__ import annotations

import asyncio
import time

import ray

from ..errors import Busy, ExecutionError, LeaseRevoked, LumiError

BATCHES_PER_REPLICA = 2  # one running, one waiting at the worker, so a lease never idles between batches
LEASE_WAIT_S = 5.0  # how long an ask waits for a worker to free up before the endpoint answers 429
RETRIES = 2  # a batch whose lease was reclaimed, or whose worker died, runs again on another lease


def _cause(error: BaseException) -> BaseException:
    """The LumiError a Ray call raised on the other side, where there is one."""
    return getattr(error, "cause", None) or error


class _Held:
    def __init__(self, lease: str, worker, device: str):
        self.lease = lease
        self.worker = worker
        self.device = device
        self.busy = 0
        self.draining = False


class LeaseSet:
    """The leases of one endpoint version. ``acquire()`` waits for a lease able to take a batch and
    asks for one when there are none (a cold start); ``scale_to(n)`` asks for or gives back leases.
    When the dispatcher has no worker to lend (every one runs jobs or serves other endpoints), an
    endpoint without leases refuses with :class:`Busy` (HTTP 429 and Retry-After)."""

    def __init__(self, dispatcher, ask: dict, data: bytes):
        self.dispatcher = dispatcher
        self.ask = dict(ask)  # endpoint, version, tier, tenant, gpu, cpus, window, grow
        self.data = data
        self.held: list[_Held] = []
        self.asking = 0
        self.target = 0
        self.cold_starts: list[float] = []
        self.last_busy = time.monotonic()
        self.refusal: LumiError | None = None  # why the last ask failed, for requests while there is no lease
        self.refused_at = 0.0
        self.closed = False
        self._changed = asyncio.Event()
        self._data_ref = None

    # -- counts ----------------------------------------------------------------------------
    @property
    def replicas(self) -> int:
        """Leases held or asked for (not being given back)."""
        return sum(not h.draining for h in self.held) + self.asking

    @property
    def ready(self) -> int:
        return sum(not h.draining for h in self.held)

    # -- scaling ---------------------------------------------------------------------------
    def scale_to(self, n: int) -> None:
        """Ask for leases up to ``n``, or give back the least busy ones past it (asks in flight are kept;
        what they bring past the target goes back when it arrives)."""
        self.target = n
        for _ in range(n - self.replicas):
            asyncio.get_running_loop().create_task(self._lease())
        live = sorted((h for h in self.held if not h.draining), key=lambda h: h.busy)
        for held in live[: max(0, len(live) - n)]:
            held.draining = True
            self._give_back(held)
        self._changed.set()

    async def _lease(self) -> None:
        self.asking += 1
        started = time.monotonic()
        try:
            if self._data_ref is None:
                self._data_ref = ray.put(self.data)
            granted = await self.dispatcher.lease.remote({**self.ask, "wait_s": LEASE_WAIT_S,
                                                          "data": [self._data_ref]})
            held = _Held(granted["lease"], granted["worker"], granted["device"])
            self.held.append(held)  # before waking the waiters, so that they find it
            self.refusal = None
            self.cold_starts.append(time.monotonic() - started)
            if self.closed or self.ready > self.target:
                held.draining = True
                self._give_back(held)
        except Exception as e:
            cause = _cause(e)
            self.refusal = cause if isinstance(cause, LumiError) else \
                Busy(f"the dispatcher is not answering ({type(e).__name__}); retry shortly", retry_after=2.0)
            self.refused_at = time.monotonic()
        finally:
            self.asking -= 1
            self._changed.set()

    def _give_back(self, held: _Held) -> None:
        """Drop a lease once its batches are done, and tell the dispatcher (a no-op where it took it back)."""
        if held.busy == 0 and held in self.held:
            self.held.remove(held)
            self.dispatcher.unlease.remote(held.lease)

    def close(self) -> None:
        self.closed = True
        for held in list(self.held):
            held.draining = True
            self._give_back(held)

    # -- batches ---------------------------------------------------------------------------
    def _free(self) -> _Held | None:
        free = [h for h in self.held if not h.draining and h.busy < BATCHES_PER_REPLICA]
        return min(free, key=lambda h: h.busy) if free else None

    async def acquire(self, retries: int = RETRIES):
        """Wait for a lease able to take a batch; return ``(run, done)`` for one batch."""
        while (held := self._free()) is None:
            if self.replicas == 0:
                if self.refusal is not None and time.monotonic() - self.refused_at < LEASE_WAIT_S:
                    refusal, self.refusal = self.refusal, None
                    raise refusal
                self.scale_to(max(1, self.target))  # cold start from zero: do not wait for the autoscaler's tick
            self._changed.clear()
            await self._changed.wait()
        held.busy += 1
        self.last_busy = time.monotonic()

        async def run(arrays):
            try:
                reading, outputs = await held.worker.run_batch.remote(held.lease, arrays)
                return outputs, reading["seconds"], reading["device"]
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                lost = isinstance(e, ray.exceptions.RayActorError) or isinstance(_cause(e), LeaseRevoked)
                if not lost:
                    raise
                held.draining = True  # reclaimed, or its worker died: run the batch on another lease
                if retries == 0:
                    raise ExecutionError(f"the workers serving {self.ask['endpoint']!r} kept going away "
                                         f"({type(_cause(e)).__name__}); retry the request") from None
            other_run, other_done = await self.acquire(retries - 1)
            try:
                return await other_run(arrays)
            finally:
                other_done()

        def done():
            held.busy -= 1
            self.last_busy = time.monotonic()
            if held.draining:
                self._give_back(held)
            self._changed.set()

        return run, done
