"""A tier's queue, fair between its tenants: one FIFO per tenant, served round robin.

The head is the first job of the tenant whose turn it is; taking it moves that tenant to the back
of the round. So a tenant's first job waits at most one round of the tier's backlogged tenants,
however many jobs another tenant queued first. Counting, the head and taking it are O(1).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Protocol


class _Queued(Protocol):
    tenant: str


class TenantQueue:
    """Jobs of one tier: per-tenant FIFOs in round-robin order (the deque operations the scheduler uses)."""

    def __init__(self, jobs=()):
        self.tenants: OrderedDict[str, deque] = OrderedDict()  # in turn order: the first is next
        self.count = 0
        for job in jobs:
            self.append(job)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __getitem__(self, i: int):
        if i != 0 or not self.count:
            raise IndexError("a tenant queue gives only its head (index 0)")
        return next(iter(self.tenants.values()))[0]

    def append(self, job: _Queued) -> None:
        """Queue ``job`` at the back of its tenant's FIFO (a new tenant joins at the end of the round)."""
        self.tenants.setdefault(job.tenant, deque()).append(job)
        self.count += 1

    def appendleft(self, job: _Queued) -> None:
        """Put ``job`` back first: at the front of its tenant's FIFO, and that tenant's turn next."""
        self.tenants.setdefault(job.tenant, deque()).appendleft(job)
        self.tenants.move_to_end(job.tenant, last=False)
        self.count += 1

    def popleft(self):
        tenant, jobs = next(iter(self.tenants.items()))
        job = jobs.popleft()
        self.count -= 1
        if jobs:
            self.tenants.move_to_end(tenant)
        else:
            del self.tenants[tenant]
        return job

    def remove(self, job: _Queued) -> None:
        jobs = self.tenants[job.tenant]
        jobs.remove(job)
        self.count -= 1
        if not jobs:
            del self.tenants[job.tenant]

    def queued(self, tenant: str) -> int:
        jobs = self.tenants.get(tenant)
        return len(jobs) if jobs else 0

    def copy(self) -> TenantQueue:
        other = TenantQueue()
        other.tenants = OrderedDict((t, deque(q)) for t, q in self.tenants.items())
        other.count = self.count
        return other

    def __iter__(self) -> Iterator:
        """Jobs in the order this queue alone would hand them out."""
        queue = self.copy()
        while queue:
            yield queue.popleft()
