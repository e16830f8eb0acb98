"""What the gateway serves: live endpoint versions (batcher + leases + autoscaler), admission, metering.

Everything here runs on the gateway's asyncio loop. The model store is the source of truth for
endpoints and versions, so a restarted gateway serves the same endpoints (replicas start lazily).
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import ray

from ..compiler import check_budget
from ..errors import Busy, ExecutionError, Forbidden, LumiError, NotFound, QuotaExceeded, TooLarge, Unavailable
from ..graph.fileformat import loads
from ..graph.ir import Graph
from ..runtime.cluster import actor_state
from ..runtime.config import load_config, setting
from .autoscaler import Autoscaler, Load, Policy
from .batching import Batcher, BatchPlan, Result, batch_plan
from .coalesce import Coalescer
from .keys import Key
from .leases import BATCHES_PER_REPLICA, LeaseSet
from .store import ModelStore

DEFAULTS = {"gpu": None, "min_replicas": 0, "max_replicas": 4, "max_batch": 32, "max_wait_ms": 5.0,
            "scaledown_window": 60.0, "tier": None, "max_queued": 1024}
TICK_S = 0.25
T = TypeVar("T")
DISPATCHER_PATIENCE_S = 0.5  # a dispatcher call slower than this makes the gateway look whether it is restarting
RESTART_RETRY_AFTER_S = 2.0


def _answered(future: asyncio.Future, abandoned: Callable | None) -> None:
    """A dispatcher call the gateway gave up on has its answer: hand it to ``abandoned`` (errors are dropped)."""
    if not future.cancelled() and future.exception() is None and abandoned is not None:
        abandoned(future.result())


def may_use(key: Key, tier: str) -> bool:
    """A key may use its own tier and those below it; an admin key any tier."""
    config = load_config()
    return key.admin or config.rank(tier) <= config.rank(key.tier)


def check_tier(key: Key, tier: str | None) -> str:
    """The tier a key's work runs in: ``tier`` when the key may use it, else :class:`Forbidden`."""
    if tier is None:
        return key.tier
    if not may_use(key, tier):
        raise Forbidden(f"this key's tier is {key.tier!r}; it cannot use tier {tier!r} (ask an admin for a key of "
                        "that tier)")
    return tier


def output_bytes(graph: Graph, bindings: dict[str, int]) -> int | None:
    """Bytes of all outputs for these symbol bindings, or None where an output's shape is unknown."""
    total = 0
    for _, shape, dtype in graph.output_specs():
        if any(isinstance(d, str) and d not in bindings for d in shape):
            return None
        total += math.prod(bindings[d] if isinstance(d, str) else d for d in shape) * np.dtype(dtype).itemsize
    return total


def endpoint_config(**options) -> dict:
    """Deploy options checked and filled with defaults."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise LumiError(f"unknown deploy options {sorted(unknown)}; options are {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    c["min_replicas"], c["max_replicas"], c["max_batch"] = int(c["min_replicas"]), int(c["max_replicas"]), \
        int(c["max_batch"])
    if not 0 <= c["min_replicas"] <= c["max_replicas"] or c["max_replicas"] < 1:
        raise LumiError(f"need 0 <= min_replicas ({c['min_replicas']}) <= max_replicas ({c['max_replicas']}), "
                        "and max_replicas >= 1")
    if c["max_batch"] < 1 or float(c["max_wait_ms"]) < 0 or float(c["scaledown_window"]) < 0:
        raise LumiError("max_batch must be at least 1; max_wait_ms and scaledown_window at least 0")
    return c


@dataclass
class Stats:
    """Per endpoint: requests, recent latencies, cost."""

    requests: int = 0
    errors: int = 0
    cost: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=2000))  # (finished at, seconds)

    def record(self, seconds: float) -> None:
        self.requests += 1
        self.recent.append((time.time(), seconds))

    def summary(self) -> dict:
        now = time.time()
        window = [s for t, s in self.recent if now - t <= 60]
        lat = np.array([s for _, s in self.recent]) * 1000 if self.recent else None
        return {"requests": self.requests, "rps": len(window) / 60.0,
                "p50_ms": None if lat is None else float(np.percentile(lat, 50)),
                "p99_ms": None if lat is None else float(np.percentile(lat, 99)), "cost": self.cost}


def lease_owner() -> str:
    """Who this service's leases belong to: the gateway actor's id, which stays the same when Ray restarts it
    (else this process)."""
    return ray.get_runtime_context().get_actor_id() or f"pid {os.getpid()} on {socket.gethostname()}"


class Live:
    """One endpoint version being served: its replicas are leases on the dispatcher's workers."""

    def __init__(self, name: str, version: dict, data: bytes, config: dict, tenant: str, dispatcher,
                 cluster_mode: bool, graph: Graph | None = None, owner: str = ""):
        self.name = name
        self.version = version
        self.graph: Graph = graph if graph is not None else loads(data)
        self.plan: BatchPlan = batch_plan(self.graph)
        self.config = config
        ask = {"endpoint": name, "version": version["version"], "tier": config["tier"] or "api", "tenant": tenant,
               "gpu": config["gpu"], "cpus": setting("LUMI_REPLICA_CPUS"),
               "window": float(config["scaledown_window"]), "grow": cluster_mode, "owner": owner}
        self.replicas = LeaseSet(dispatcher, ask, data)
        self.batcher = Batcher(self.plan, self.replicas.acquire, config["max_batch"], config["max_wait_ms"])
        self.autoscaler = Autoscaler(Policy(config["min_replicas"], config["max_replicas"], config["max_batch"],
                                            float(config["scaledown_window"]),
                                            batches_per_replica=BATCHES_PER_REPLICA))

    def load(self) -> Load:
        r = self.replicas
        return Load(self.batcher.queued, self.batcher.in_flight, self.batcher.oldest_wait(), r.replicas,
                    r.replicas - r.ready, time.monotonic() - r.last_busy)

    def tick(self) -> None:
        target = self.autoscaler.decide(self.load(), time.monotonic())
        if target != self.replicas.replicas:
            self.replicas.scale_to(target)

    async def infer(self, arrays: list[np.ndarray]) -> Result:
        if self.batcher.queued >= int(self.config["max_queued"]):
            raise Busy(f"endpoint {self.name!r} has {self.batcher.queued} requests queued; try again shortly",
                       retry_after=1.0)
        timeout = setting("LUMI_REQUEST_TIMEOUT_S")
        try:
            return await asyncio.wait_for(self.batcher.submit(arrays), timeout)
        except TimeoutError:
            raise Busy(f"endpoint {self.name!r} found no replica within {timeout:g} s (is the cluster "
                       "full?); try again later", retry_after=5.0) from None
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, LumiError) else ExecutionError(f"the replica failed: {e.cause!r}")
            raise cause from None
        except ray.exceptions.RayActorError as e:
            raise ExecutionError(f"the worker serving {self.name!r} died ({e}); retry the request") from None

    def describe(self) -> dict:
        return {"replicas": self.replicas.replicas, "ready_replicas": self.replicas.ready,
                "queued": self.batcher.queued, "batches": self.batcher.batches,
                "mean_batch_size": self.batcher.mean_batch_size,
                "batch_sizes": {str(n): k for n, k in sorted(self.batcher.batch_sizes.items())},
                "cold_starts_s": list(self.replicas.cold_starts[-10:]), "batching": self.plan.enabled,
                "batching_reason": self.plan.reason}

    def close(self) -> None:
        self.batcher.close()
        self.replicas.close()


class Service:
    """Endpoints, versions and their live replicas, behind admission and metering."""

    def __init__(self, store: ModelStore, base_url: str = "", cluster_mode: bool = False,
                 max_output_bytes: int | None = None):
        self.store = store
        self.max_output_bytes = max_output_bytes or setting("LUMI_MAX_OUTPUT_BYTES")
        self.base_url = base_url
        self.cluster_mode = cluster_mode
        self.lives: dict[tuple[str, str], Live] = {}
        self.stats: dict[str, Stats] = {}
        self._records: dict[str, dict] = {}  # endpoint records read once; refreshed by this service's own changes
        self._dispatcher = None
        self._loop_task: asyncio.Task | None = None
        self.owner = lease_owner()
        # one admission and one metering call to the dispatcher per round trip, however many requests
        self._admission = Coalescer(lambda asks: self.dispatcher().acquire_many.remote(asks))
        self._metering = Coalescer(lambda items: self.dispatcher().release_many.remote(items))

    # -- ownership ----------------------------------------------------------------------------
    def _endpoint(self, name: str) -> dict | None:
        """The endpoint's record, from the store on first use (this service is the only one changing it)."""
        if name not in self._records:
            record = self.store.endpoint(name)
            if record is None:
                return None
            self._records[name] = record
        return self._records[name]

    def record(self, name: str, key: Key) -> dict:
        record = self._endpoint(name)
        if record is None or (record["tenant"] != key.tenant and not key.admin):  # the same answer: nothing to probe
            raise NotFound(f"no endpoint named {name!r}; deploy one with %%deploy {name} or `lumi deploy`")
        return record

    def records(self, key: Key) -> list[dict]:
        return [r for r in self.store.endpoints() if key.admin or r["tenant"] == key.tenant]

    # -- deploy, rollback, scale, delete ------------------------------------------------------
    def deploy(self, name: str, data: bytes, key: Key, options: dict) -> dict:
        existing = self._endpoint(name)
        if existing is not None and existing["tenant"] != key.tenant and not key.admin:
            raise Forbidden(f"the endpoint name {name!r} is not available; pick another")
        check_tier(key, options.get("tier"))
        config = endpoint_config(**{**(existing or {}).get("config", {}), **options})
        self._check_quota(key, name, config, data)
        limits = load_config()
        graph = loads(data)  # parsed once: the budget, the store and the live version share it
        check_budget(graph, max_nodes=limits.max_graph_nodes, max_seconds=limits.max_compile_s)
        record, version, created = self.store.deploy(name, graph, existing["tenant"] if existing else key.tenant,
                                                     config)
        self._records[name] = record
        live = self.live(record, graph=graph)
        if config["min_replicas"]:
            live.replicas.scale_to(config["min_replicas"])
        return {**self.describe(record), "version": version["version"], "sha256": version["sha256"],
                "created": created}

    def _check_quota(self, key: Key, name: str, config: dict, data: bytes) -> None:
        """Refuse a deploy that would take the tenant past its tier's quota (admins have none)."""
        if key.admin:
            return
        quota = load_config().quota(key.tier)
        mine = [r for r in self.store.endpoints() if r["tenant"] == key.tenant]
        others = [endpoint_config(**r["config"]) for r in mine if r["name"] != name]
        held = {v["sha256"] for r in mine for v in r["versions"]}
        usage = {
            "endpoints": (len(others) + 1, "endpoints"),
            "replicas": (sum(c["max_replicas"] for c in [*others, config]), "max_replicas summed over endpoints"),
            "gpus": (sum(c["max_replicas"] for c in [*others, config] if c["gpu"]), "GPU replicas (max_replicas "
                     "summed over GPU endpoints)"),
            "store_bytes": (sum(map(self.store.size, held)) + len(data), "bytes of stored versions"),
        }
        for field_name, (used, what) in usage.items():
            allowed = getattr(quota, field_name)
            if used > allowed:
                raise QuotaExceeded(f"quota {field_name!r} exceeded: tier {key.tier!r} allows {allowed}"
                                    f" {what} per tenant and this would make {used}; lower it, delete an endpoint, "
                                    "or use a key of a higher tier", field_name)

    def rollback(self, name: str, key: Key, version: int | None) -> dict:
        self.record(name, key)
        record = self._records[name] = self.store.rollback(name, version)
        return self.describe(record)

    def scale(self, name: str, key: Key, replicas: int) -> dict:
        record = self.record(name, key)
        live = self.live(record)
        replicas = max(0, min(int(replicas), live.config["max_replicas"]))
        if not key.admin:
            quota = load_config().quota(key.tier).replicas
            running = sum(lv.replicas.replicas for (n, _), lv in self.lives.items() if n != name
                          and (self._endpoint(n) or {}).get("tenant") == key.tenant)
            if running + replicas > quota:
                raise QuotaExceeded(f"quota 'replicas' exceeded: tier {key.tier!r} allows {quota} replicas per tenant;"
                                    f" {running} run already, so at most {max(0, quota - running)} here", "replicas")
        live.replicas.scale_to(replicas)
        return self.describe(record)

    def delete(self, name: str, key: Key) -> None:
        self.record(name, key)
        for k in [k for k in self.lives if k[0] == name]:
            self.lives.pop(k).close()
        self.store.delete(name)
        self._records.pop(name, None)
        self.stats.pop(name, None)

    # -- serving ------------------------------------------------------------------------------
    def live(self, record: dict, version: int | None = None, graph: Graph | None = None) -> Live:
        """The live version (the active one by default), loaded from the store on first use."""
        v = self.store.version(record, version)
        key = (record["name"], v["sha256"])
        live = self.lives.get(key)
        if live is None:
            config = endpoint_config(**record["config"])
            live = self.lives[key] = Live(record["name"], v, self.store.read_bytes(v["sha256"]), config,
                                          record["tenant"], self.dispatcher(), self.cluster_mode, graph, self.owner)
        return live

    def resolve(self, name: str, key: Key, version: int | None = None) -> Live:
        """What a request runs: the endpoint's record and its live version, looked up once per request."""
        return self.live(self.record(name, key), version)

    def dispatcher(self):
        if self._dispatcher is None:
            from ..runtime.dispatcher import get_dispatcher

            self._dispatcher = get_dispatcher()
        return self._dispatcher

    async def ask(self, call: Awaitable[T], abandoned: Callable[[T], None] | None = None) -> T:
        """Await a call to the dispatcher; while Ray restarts it, raise Unavailable (503 with Retry-After) rather
        than keep the client waiting. A call given up on still completes; ``abandoned`` gets its answer then."""
        future = asyncio.ensure_future(call)
        while True:
            done, _ = await asyncio.wait({future}, timeout=DISPATCHER_PATIENCE_S)
            if done:
                return future.result()
            if await asyncio.to_thread(actor_state, self.dispatcher()) == "RESTARTING" and not future.done():
                future.add_done_callback(lambda f: _answered(f, abandoned))
                raise Unavailable("Lumi's dispatcher is restarting (it keeps every accepted job); retry in "
                                  f"{RESTART_RETRY_AFTER_S:g} s", retry_after=RESTART_RETRY_AFTER_S)

    async def infer(self, live: Live, key: Key, arrays: list[np.ndarray]) -> Result:
        """Run one request on a resolved live version (its inputs are checked here, once)."""
        name = live.name
        tier = live.config["tier"] or key.tier
        tier = tier if may_use(key, tier) else key.tier  # never above the caller's own
        size = output_bytes(live.graph, live.graph.bind_inputs(arrays)[1])
        if size is not None and size > self.max_output_bytes:
            raise TooLarge(f"the answer would be {size} bytes, past the {self.max_output_bytes}-byte output limit; "
                           "send fewer rows per request")
        admitted = (key.tenant, tier)
        token = await self.ask(self._admission(admitted),
                               abandoned=lambda token: self._release(token, None, "CPU", name, admitted))
        start = time.perf_counter()
        stats = self.stats.setdefault(name, Stats())
        try:
            result = await live.infer(arrays)
        except BaseException:
            stats.errors += 1
            self._release(token, 0.0, "CPU", name, admitted)
            raise
        stats.record(time.perf_counter() - start)
        self._release(token, result.seconds, result.device, name, admitted)
        if size is None and sum(o.nbytes for o in result.outputs) > self.max_output_bytes:
            raise TooLarge(f"the answer is {sum(o.nbytes for o in result.outputs)} bytes, past the "
                           f"{self.max_output_bytes}-byte output limit; send fewer rows per request")
        return result

    def _release(self, token, seconds: float | None, device: str, name: str, admitted: tuple[str, str]) -> None:
        async def release():
            try:
                receipt = await self._metering((token, seconds, device, name, admitted))
                self.stats.setdefault(name, Stats()).cost += float(receipt.get("cost", 0.0))
            except Exception:  # metering must never fail a request that already ran
                pass

        asyncio.get_running_loop().create_task(release())

    # -- views ----------------------------------------------------------------------------------
    def describe(self, record: dict) -> dict:
        name = record["name"]
        config = endpoint_config(**record["config"])
        lives = [lv for (n, _), lv in self.lives.items() if n == name]
        active = next((lv for lv in lives if lv.version["version"] == record["active_version"]), None)
        return {
            "name": name, "tenant": record["tenant"], "url": f"{self.base_url}/v1/endpoints/{name}/infer",
            "active_version": record["active_version"],
            "versions": [{k: v[k] for k in ("version", "sha256", "created_at")} for v in record["versions"]],
            "replicas": sum(lv.replicas.replicas for lv in lives),
            "min_replicas": config["min_replicas"], "max_replicas": config["max_replicas"],
            **self.stats.get(name, Stats()).summary(),
            "config": config, **(active.describe() if active else {}),
        }

    # -- the autoscaling loop ---------------------------------------------------------------------
    def start(self) -> None:
        """Start autoscaling; first give back the leases this gateway held before Ray restarted it."""
        if self._loop_task is None:
            self.dispatcher().drop_leases.remote(self.owner)
            self._loop_task = asyncio.get_running_loop().create_task(self._autoscale())

    async def _autoscale(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for key, live in list(self.lives.items()):
                try:
                    record = self._records.get(live.name)
                    active = record is not None and record["active_version"] == live.version["version"]
                    load = live.load()
                    if not active and not load.queued and not load.in_flight \
                            and load.idle_for >= float(live.config["scaledown_window"]):
                        self.lives.pop(key).close()  # an old version nobody asked for during a whole window
                    else:
                        live.tick()
                except (NotFound, LumiError, OSError):
                    continue
