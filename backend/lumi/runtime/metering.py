"""Cost math and records: execution seconds times the device's price; queued and idle time are free.

Also the work estimate the scheduler charges before a job has run: seconds on a device from the
graph's FLOP and byte counts, replaced by measured runtimes of the same graph once there are some.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass

# Rough sustained rates used only to order and weigh work before it has been measured.
_RATES = {  # device class: (FLOP/s, bytes/s, seconds of overhead per op)
    "gpu": (5e13, 1.5e12, 10e-6),
    "cpu": (2e10, 8e9, 20e-6),
}
MIN_ESTIMATE_S = 1e-4
MEASURED_WEIGHT = 0.5  # how much a new measurement moves the running estimate of a graph


def device_class(device: str) -> str:
    return "cpu" if device.upper() == "CPU" else "gpu"


def estimate_seconds(flops: float, nbytes: float, ops: int, device: str = "CPU") -> float:
    """Estimated execution seconds of a graph with these counts on ``device`` (roofline plus launch cost)."""
    flop_rate, byte_rate, per_op = _RATES[device_class(device)]
    return max(MIN_ESTIMATE_S, max(flops / flop_rate, nbytes / byte_rate) + ops * per_op)


def refine(previous: float | None, measured: float) -> float:
    """Blend a new measured runtime into the running estimate for a graph hash."""
    return measured if previous is None else previous + MEASURED_WEIGHT * (measured - previous)


def cost(seconds: float, price_per_second: float) -> float:
    """What ``seconds`` of execution cost at this price."""
    return max(0.0, seconds) * price_per_second


@dataclass(frozen=True)
class Record:
    t: float
    tenant: str
    tier: str
    endpoint: str | None
    device: str
    seconds: float
    cost: float
    job_id: str | None


@dataclass
class _Usage:
    gpu_seconds: float = 0.0
    cost: float = 0.0
    runs: int = 0


class Ledger:
    """Exact running totals by tenant, tier, endpoint and (endpoint, tenant), plus the most recent records."""

    def __init__(self, keep: int = 10_000):
        self.total = 0.0
        self.by_tenant: dict[str, float] = {}
        self.by_tier: dict[str, float] = {}
        self.by_endpoint: dict[str, float] = {}
        self.endpoint_use: dict[tuple[str, str], _Usage] = {}
        self.records: deque[Record] = deque(maxlen=keep)

    def add(self, tenant: str, tier: str, device: str, seconds: float, price: float,
            job_id: str | None = None, endpoint: str | None = None) -> Record:
        return self.restore(Record(time.time(), tenant, tier, endpoint, device, seconds, cost(seconds, price), job_id))

    def restore(self, record: Record) -> Record:
        """Count a record made before (read back from the journal) as :meth:`add` counted it."""
        tenant, tier, endpoint, seconds = record.tenant, record.tier, record.endpoint, record.seconds
        self.records.append(record)
        self.total += record.cost
        self.by_tenant[tenant] = self.by_tenant.get(tenant, 0.0) + record.cost
        self.by_tier[tier] = self.by_tier.get(tier, 0.0) + record.cost
        if endpoint is not None:
            self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0.0) + record.cost
            use = self.endpoint_use.setdefault((endpoint, tenant), _Usage())
            use.gpu_seconds, use.cost, use.runs = use.gpu_seconds + seconds, use.cost + record.cost, use.runs + 1
        return record

    def snapshot(self, limit: int | None = None) -> dict:
        records = list(self.records)[-limit:] if limit else list(self.records)
        return {
            "total": self.total,
            "by_tenant": dict(self.by_tenant),
            "by_tier": dict(self.by_tier),
            "by_endpoint": dict(self.by_endpoint),
            "endpoints": [{"endpoint": e, "tenant": t, **asdict(u)} for (e, t), u in sorted(self.endpoint_use.items())],
            "records": [asdict(r) for r in records],
        }
