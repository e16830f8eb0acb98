"""Tenant fairness inside a tier: the queue alone (pure), then on a real dispatcher."""

from __future__ import annotations

from dataclasses import dataclass

import ray
from dispatchers import sleeper, wait_all, wait_ready
from lumi.runtime.queues import TenantQueue


@dataclass(eq=False)
class Job:
    tenant: str
    n: int


def test_round_robin_between_tenants_keeps_each_tenants_order():
    q = TenantQueue([Job("a", i) for i in range(5)] + [Job("b", i) for i in range(2)] + [Job("c", 0)])
    assert len(q) == 8 and q.queued("a") == 5 and q[0].tenant == "a"
    order = [(j.tenant, j.n) for j in q]  # iterating does not consume
    assert order == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2), ("a", 3), ("a", 4)]
    assert len(q) == 8
    first = q.popleft()
    q.appendleft(first)  # a job put back (its worker died) goes first again
    assert [(j.tenant, j.n) for j in q] == order
    b0 = next(j for j in q if (j.tenant, j.n) == ("b", 0))
    q.remove(b0)
    assert b0 not in list(q) and q.queued("b") == 1 and len(q) == 7


def test_a_late_tenant_waits_one_round_not_for_the_backlog(make_dispatcher):
    """Tenant A submits 80 jobs, then B submits 4: B's four finish within the next 18 completions."""
    d = make_dispatcher(workers=1)
    wait_ready(d, 1)
    a = [ray.get(d.submit.remote(sleeper(0.02, "api", estimate=0.02, tenant="a")))["id"] for _ in range(80)]
    b = [ray.get(d.submit.remote(sleeper(0.02, "api", estimate=0.02, tenant="b")))["id"] for _ in range(4)]
    b_submitted = max(ray.get(d.status.remote(i))["submitted_at"] for i in b)
    done = wait_all(d, a + b, timeout=240)
    later = sorted((j for j in done.values() if j["finished_at"] > b_submitted), key=lambda j: j["finished_at"])
    ranks = [i for i, j in enumerate(later) if j["tenant"] == "b"]
    assert len(ranks) == 4 and max(ranks) < 18, [j["tenant"] for j in later[:20]]
