"""Launch day: 1,000 users in five tiers arrive in a burst of five times capacity, 10,000 jobs in all, on a local
two-node Ray cluster with logical GPUs (``ray.cluster_utils.Cluster``): a main node and a node labelled as burst
capacity (``LUMI_BURST_POOL``). Users whose submit is refused with ``lumi.Busy`` retry after its ``retry_after``,
up to five times, then give up.

Reports, per tier: jobs accepted, refusals (Busy), users' jobs given up, wait p50/p99 (queued until started),
and Jain's fairness index over the mean waits of the tier's tenants; the longest wait of any tenant; and the
burst group's use over time, as a plotly chart saved next to the report.

    python benchmarks/launch.py [--users 1000] [--jobs 10000] [--job-ms 20] [--out docs/launch-day]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict

import plotly.graph_objects as go
import ray
from _machine import cpu_model
from lumi.errors import Busy
from lumi.runtime import jobs
from lumi.runtime.dispatcher import start_dispatcher
from ray.cluster_utils import Cluster

TIERS = {"enterprise": 0.05, "api": 0.15, "unlimited": 0.10, "light": 0.30, "free": 0.40}  # share of the users
BURST_LABEL = ("lumi.io/pool", "burst")
RETRIES = 5
SUBMITTERS = 24


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when every value is equal, 1/n when one tenant has it all."""
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if values and any(values) else 1.0


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def users(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``(tenant, tier)`` for each simulated user, the tiers in their shares."""
    tiers = rng.choices(list(TIERS), weights=list(TIERS.values()), k=n)
    return [(f"{tier}-{i:04d}", tier) for i, tier in enumerate(tiers)]


def calibrate(d, job_s: float, seconds: float = 6.0) -> float:
    """Jobs/s through the main workers for 16 clients each submitting a job and waiting for it (the capacity
    the burst is five times)."""
    source = f"import time\ntime.sleep({job_s})"
    stop = time.monotonic() + seconds
    done = []

    def loop():
        while time.monotonic() < stop:
            jobs.submit_spec(jobs.python_spec(source, {}, [], tier="enterprise", tenant="calibration"), d).result()
            done.append(1)

    threads = [threading.Thread(target=loop) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(done) / seconds


class Arrivals:
    """The users' submits as a timed heap; ``SUBMITTERS`` threads send each one when it is due, and put a
    refused one back for its ``retry_after``."""

    def __init__(self, d, events: list[tuple[float, int, str, str]], source: str):
        self.d, self.source = d, source
        self.heap = list(events)
        heapq.heapify(self.heap)
        self.lock = threading.Condition()
        self.accepted: list[jobs.Job] = []
        self.refused, self.gave_up = Counter(), Counter()
        self.start = time.monotonic()

    def run(self) -> None:
        threads = [threading.Thread(target=self._submitter) for _ in range(SUBMITTERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _next(self):
        with self.lock:
            while True:
                if not self.heap:
                    return None
                due = self.heap[0][0] - (time.monotonic() - self.start)
                if due <= 0:
                    return heapq.heappop(self.heap)
                self.lock.wait(min(due, 0.05))

    def _submitter(self) -> None:
        while (event := self._next()) is not None:
            at, attempt, tenant, tier = event
            spec = jobs.python_spec(self.source, {}, [], tier=tier, tenant=tenant, label="launch")
            try:
                job = jobs.submit_spec(spec, self.d)
            except Busy as e:
                self.refused[tier] += 1
                if attempt + 1 >= RETRIES:
                    self.gave_up[tier] += 1
                    continue
                again = time.monotonic() - self.start + e.retry_after
                with self.lock:
                    heapq.heappush(self.heap, (again, attempt + 1, tenant, tier))
                    self.lock.notify()
                continue
            with self.lock:
                self.accepted.append(job)


def watch(d, stop: threading.Event, samples: list, finished: dict) -> None:
    """Every 0.5 s: the workers by group and the queue depth (for the chart), and the records of jobs that
    ended (the dispatcher keeps only the last 2,000 finished ones, so they are collected as they end)."""
    start = time.monotonic()
    while not stop.is_set():
        snapshot = ray.get(d.cluster.remote())
        workers = [w for w in snapshot["workers"] if w["state"] != "dead"]
        samples.append({"t": time.monotonic() - start, "burst": sum(w["role"] == "burst" for w in workers),
                         "main": sum(w["role"] == "device" for w in workers),
                         "queued": sum(snapshot["queue"].values())})
        for record in ray.get(d.jobs.remote(limit=2000)):
            if record["state"] in ("done", "failed", "cancelled"):
                finished[record["id"]] = record
        stop.wait(0.5)


def markdown(report: dict, name: str) -> str:
    """The report as a page: the run, a table per tier, the longest wait, the burst group's use."""
    samples, counters, longest = report["burst"], report["counters"], report["longest_wait"]
    used = [s["t"] for s in samples if s["burst"]]
    burst = (f"in use from {min(used):.0f} s to {max(used):.0f} s, at most {max(x['burst'] for x in samples)} at once"
             if used else "never needed")
    lines = [
        "# Launch day, simulated", "",
        f"`python benchmarks/launch.py` on {report['machine']}: a local two-node Ray cluster (a main node with two",
        "logical GPUs, a burst node labelled `lumi.io/pool=burst` with two), CPU-fallback workers, jobs of 20 ms.",
        f"Capacity measured first, as 16 clients each submitting a job and waiting for it: "
        f"{report['capacity_jobs_s']:.0f} jobs/s. Arrivals were planned at "
        f"{report['arrival_jobs_s']:.0f} jobs/s (five times capacity) over {report['window_s']:.0f} s; the submits "
        f"took {report['submitted_s']:.0f} s (refused ones retried after their `retry_after`, five tries at most) and "
        f"the last job ended at {report['drained_s']:.0f} s.", "",
        "| tier | users | jobs accepted | refusals (Busy) | jobs given up | wait p50 | wait p99 | Jain's index |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r['tier']} | {r['users']} | {r['accepted']} | {r['refused']} | {r['gave_up']} | "
          f"{r['wait_p50_s']:.2f} s | {r['wait_p99_s']:.2f} s | {r['jain']:.3f} |" for r in report["tiers"]), "",
        "Jain's index is over the mean waits of the tier's tenants (1: all waited alike).", "",
        f"Longest wait of any tenant: {longest['seconds']:.2f} s ({longest['tenant']}).",
        f"Burst workers: {counters['burst_started']} started, {counters['burst_released']} released; {burst}.",
        f"The chart of workers and queue depth over time: [{name}-burst.html]({name}-burst.html) (plotly).", "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--job-ms", type=float, default=20.0, help="how long each job runs (a sleep)")
    parser.add_argument("--out", default="docs/launch-day", help="writes OUT.md, OUT.json and OUT-burst.html")
    args = parser.parse_args()
    rng = random.Random(7)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=1, num_gpus=2, labels={BURST_LABEL[0]: BURST_LABEL[1]})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="lumi", log_to_driver=False)
    # wait targets scaled to these 20 ms jobs (the defaults, 10 s to 600 s, suit jobs of seconds to minutes)
    env = {"LUMI_HOME": tempfile.mkdtemp(prefix="lumi-launch-"), "LUMI_BURST_POOL": "=".join(BURST_LABEL),
           "LUMI_WORKERS": "2", "LUMI_TIER_ENTERPRISE_WAIT_S": "0.5", "LUMI_TIER_API_WAIT_S": "1",
           "LUMI_TIER_UNLIMITED_WAIT_S": "2", "LUMI_TIER_LIGHT_WAIT_S": "4", "LUMI_TIER_FREE_WAIT_S": "8"}
    d = start_dispatcher("lumi-launch", env=env)
    job_s = args.job_ms / 1000
    capacity = calibrate(d, job_s)
    population = users(args.users, rng)
    rate = 5 * capacity
    window = args.jobs / rate
    per_user = args.jobs // len(population)
    events = sorted((rng.uniform(0, window), 0, tenant, tier) for tenant, tier in population for _ in range(per_user))
    print(f"capacity {capacity:.0f} jobs/s (2 main workers, 1 node); arrivals at {rate:.0f} jobs/s for {window:.0f} s; "
          f"{len(population)} users, {len(events)} jobs", flush=True)

    samples, finished, stop = [], {}, threading.Event()
    watcher = threading.Thread(target=watch, args=(d, stop, samples, finished))
    watcher.start()
    arrivals = Arrivals(d, events, f"import time\ntime.sleep({job_s})")
    arrivals.run()
    submitted_s = time.monotonic() - arrivals.start
    ids = {job.id for job in arrivals.accepted}
    while not ids <= finished.keys():
        time.sleep(0.5)
    drained_s = time.monotonic() - arrivals.start
    time.sleep(8.0)  # the burst workers' release, on the chart
    stop.set()
    watcher.join()
    records = [finished[i] for i in ids]

    by_tier = defaultdict(list)
    for r in records:
        by_tier[r["tier"]].append(r)
    rows = []
    for tier in TIERS:
        waits = [r["started_at"] - r["submitted_at"] for r in by_tier[tier] if r["started_at"]]
        per_tenant = defaultdict(list)
        for r in by_tier[tier]:
            if r["started_at"]:
                per_tenant[r["tenant"]].append(r["started_at"] - r["submitted_at"])
        rows.append({"tier": tier, "users": sum(t == tier for _, t in population), "accepted": len(by_tier[tier]),
                     "done": sum(r["state"] == "done" for r in by_tier[tier]), "refused": arrivals.refused[tier],
                     "gave_up": arrivals.gave_up[tier], "wait_p50_s": quantile(waits, 0.5),
                     "wait_p99_s": quantile(waits, 0.99),
                     "jain": jain([statistics.fmean(w) for w in per_tenant.values()])})
    longest = max((r["started_at"] - r["submitted_at"], r["tenant"]) for r in records if r["started_at"])
    report = {"machine": f"{cpu_model()}, ray {ray.__version__}", "capacity_jobs_s": capacity, "arrival_jobs_s": rate,
              "window_s": window, "submitted_s": submitted_s, "drained_s": drained_s, "tiers": rows,
              "longest_wait": {"seconds": longest[0], "tenant": longest[1]},
              "counters": ray.get(d.counters.remote()), "burst": samples}
    with open(f"{args.out}.json", "w") as f:
        json.dump(report, f, indent=1)
    with open(f"{args.out}.md", "w") as f:
        f.write(markdown(report, args.out.rsplit("/", 1)[-1]))
    lines = (("main", "main workers"), ("burst", "burst workers"), ("queued", "jobs queued"))
    figure = go.Figure([go.Scatter(x=[s["t"] for s in samples], y=[s[k] for s in samples], name=name, mode="lines",
                                   yaxis="y2" if k == "queued" else "y") for k, name in lines])
    figure.update_layout(title="Launch day: workers and queue over time", xaxis_title="seconds",
                         yaxis_title="workers", yaxis2={"title": "jobs queued", "overlaying": "y", "side": "right"})
    figure.write_html(f"{args.out}-burst.html", include_plotlyjs="cdn")
    print(json.dumps({k: v for k, v in report.items() if k != "burst"}, indent=1))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
