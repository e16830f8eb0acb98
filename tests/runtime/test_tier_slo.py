"""Wait targets: while a tier's head job has waited past its tier's wait target, only tiers with overdue heads
are served (by the weighted round robin), so no tier starves. Checked on the scheduler alone, with a clock
of its own, and on a dispatcher with five tiers backlogged, from the jobs' own timestamps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import ray
from dispatchers import sleeper, wait_all, wait_ready
from lumi.runtime import jobs
from lumi.runtime.config import DEFAULT_TIERS
from lumi.runtime.dispatcher import DeficitRoundRobin
from lumi.runtime.queues import TenantQueue

pytestmark = pytest.mark.timeout(240)
WEIGHTS = {tier: weight for tier, (weight, _, _) in DEFAULT_TIERS.items()}
ROUND = sum(WEIGHTS.values()) / min(WEIGHTS.values())  # jobs one round dispatches when estimates are equal


@dataclass(eq=False)
class Queued:
    tier: str
    submitted_at: float
    tenant: str = "t"
    estimate: float = 1.0


def schedule(targets: dict[str, float], per_tier: int = 40) -> list[Queued]:
    """Dispatch five backlogged tiers, one job per tick of a clock; the dispatch order."""
    queues = {tier: TenantQueue(Queued(tier, 0.0) for _ in range(per_tier)) for tier in WEIGHTS}
    drr, order = DeficitRoundRobin(WEIGHTS), []

    def overdue(job: Queued) -> bool:  # the clock: one tick per dispatch
        return len(order) - job.submitted_at > targets[job.tier]

    while (job := drr.pick(queues, overdue=overdue)) is not None:
        order.append(job)
    return order


def test_without_overdue_jobs_the_tiers_share_by_weight():
    order = schedule(dict.fromkeys(WEIGHTS, 1e9))
    first_round = [job.tier for job in order[:int(ROUND)]]
    assert {tier: first_round.count(tier) for tier in WEIGHTS} == {t: int(w) for t, w in WEIGHTS.items()}


def test_a_tier_charged_down_to_its_debt_floor_still_sends_a_job_on_its_next_visit():
    # enterprise (weight 8) ran far over its estimates: correct() leaves it at the floor quantum - credit, and its
    # next visit must afford a quantum-sized head (floating point once made that 0.009999999999999995 < 0.01)
    weights = {"enterprise": 8, "light": 1}
    queues = {tier: TenantQueue(Queued(tier, 0.0, estimate=0.01) for _ in range(4)) for tier in weights}
    drr = DeficitRoundRobin(weights)
    assert drr.pick(queues).tier == "enterprise"
    drr.correct("enterprise", overrun=10.0, backlogged=True)
    drr.cursor, drr.credited = 1, False  # its visit is over: light's turn, then enterprise's again
    assert [drr.pick(queues).tier for _ in range(2)] == ["light", "enterprise"]


def test_an_overdue_tier_goes_first_and_no_tier_starves():
    # free's wait target is 10 ticks, every other tier's a thousand: after tick 10 free is overdue and alone is
    # served until it is empty; then the weights again; and once the others pass their target too, they share
    targets = {**dict.fromkeys(WEIGHTS, 1000.0), "free": 10.0}
    order = schedule(targets)
    tiers = [job.tier for job in order]
    first_free_late = next(i for i, job in enumerate(order) if i > targets["free"])
    assert set(tiers[first_free_late:first_free_late + 30]) == {"free"}  # its remaining backlog, in one go
    assert tiers.count("free") == 40
    for tier in WEIGHTS:  # no starvation: while a tier has jobs, it waits at most two rounds and free's backlog
        assert max_gap(tiers, tier) <= 2 * ROUND + 40, (tier, max_gap(tiers, tier))


def max_gap(tiers: list[str], tier: str) -> int:
    """The most dispatches between two of ``tier``'s (or before its first)."""
    places = [-1] + [i for i, t in enumerate(tiers) if t == tier]
    return max(b - a for a, b in zip(places, places[1:]))


def test_overdue_tiers_share_by_weight_between_them():
    # every tier is overdue from the start: the round robin decides between them, with its weights
    order = schedule(dict.fromkeys(WEIGHTS, 0.5))
    first_round = [job.tier for job in order[:int(ROUND)]]
    assert {tier: first_round.count(tier) for tier in WEIGHTS} == {t: int(w) for t, w in WEIGHTS.items()}


def test_five_backlogged_tiers_follow_the_wait_targets(make_dispatcher):
    """From the jobs' timestamps: no on-time job starts while another tier has an overdue job waiting, and
    every tier's jobs all run."""
    env = {"LUMI_TIER_FREE_WAIT_S": "0.3", "LUMI_QUEUE_CAP": "1000", "LUMI_DISPATCH_LIMIT": "1",
           **{f"LUMI_TIER_{t.upper()}_WAIT_S": "300" for t in WEIGHTS if t != "free"},
           **{f"LUMI_TIER_{t.upper()}_CAP": "100" for t in WEIGHTS}, **{f"LUMI_QUOTA_{t.upper()}_JOBS": "100"
                                                                     for t in WEIGHTS}}
    d = make_dispatcher(env=env, workers=2)
    wait_ready(d, 2)
    gates = [jobs.submit_spec(sleeper(4.0, "enterprise", estimate=0.05, tenant="gate"), d) for _ in range(2)]
    submitted = [jobs.submit_spec(sleeper(0.05, tier, estimate=0.05, tenant=f"team-{tier}"), d)
                 for _ in range(10) for tier in WEIGHTS]  # queued behind the gates: five tiers backlogged
    wait_all(d, [job.id for job in gates], timeout=60)
    records = list(wait_all(d, [job.id for job in submitted], timeout=180).values())
    assert {r["state"] for r in records} == {"done"}
    targets = {tier: x["wait_target_s"] for tier, x in ray.get(d.cluster.remote())["tiers"].items()}
    margin = 0.05  # the dispatcher reads its clock once per dispatch pass
    violations = []
    for job in records:
        t = job["started_at"]
        waiting_late = [r for r in records if r["tier"] != job["tier"] and r["submitted_at"] + targets[r["tier"]]
                        < t - margin and r["started_at"] > t]
        on_time = job["submitted_at"] + targets[job["tier"]] > t + margin
        if waiting_late and on_time:
            violations.append((job["tier"], t, [r["tier"] for r in waiting_late]))
    assert not violations, violations[:5]
    by_start = sorted(records, key=lambda r: r["started_at"])
    last_free = max(i for i, r in enumerate(by_start) if r["tier"] == "free")
    last_light = max(i for i, r in enumerate(by_start) if r["tier"] == "light")
    assert last_free < last_light  # the same weight, and the round robin visits light first: free's target won
