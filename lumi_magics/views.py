"""``%lumi jobs``, ``%lumi costs``, ``%lumi cluster``: the dispatcher's records as DataFrames or plotly charts.

The commands ask the dispatcher; the functions that turn its answers into frames and summary lines
(``worker_frame``, ``lease_frame``, ``endpoint_cost_frame``, ``cluster_summary``, ``costs_summary``) are pure.
"""

from __future__ import annotations

import pandas as pd
from lumi.runtime.dispatcher import get_dispatcher
from lumi.runtime.jobs import call

from .line import command
from .numbers import money

_TIME_COLUMNS = ("submitted_at", "started_at", "finished_at", "t", "since")


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for column in _TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], unit="s")
    return frame


def _plot_option(parser) -> None:
    parser.add_argument("--plot", action="store_true", help="show a plotly chart instead of the table")


JOB_COLUMNS = ["id", "label", "tenant", "tier", "state", "position", "tier_position", "submitted_at", "started_at",
               "finished_at", "gpu_seconds", "cost", "device", "worker", "attempts", "error"]


@command("jobs", "recent jobs on the cluster (newest first); --plot: a timeline by tier",
         lambda p: (_plot_option(p), p.add_argument("--limit", type=int, default=200)))
def jobs(args, shell):
    frame = _frame(call(get_dispatcher().jobs.remote(limit=args.limit)), JOB_COLUMNS)
    if not args.plot:
        return frame
    import plotly.express as px

    ran = frame.dropna(subset=["started_at", "finished_at"])
    return px.timeline(ran, x_start="started_at", x_end="finished_at", y="worker", color="tier",
                       hover_data=["id", "label", "tenant", "gpu_seconds", "cost"], title="Jobs by worker and tier")


COST_COLUMNS = ["t", "tenant", "tier", "endpoint", "device", "seconds", "cost", "job_id"]
ENDPOINT_COST_COLUMNS = ["endpoint", "tenant", "gpu_seconds", "cost", "runs"]


def endpoint_cost_frame(ledger: dict) -> pd.DataFrame:
    """One row per endpoint and tenant (``ledger["endpoints"]``), costliest first; empty, with the
    columns, when nothing was served or the dispatcher does not report it."""
    frame = _frame(ledger.get("endpoints") or [], ENDPOINT_COST_COLUMNS)
    return frame.sort_values("cost", ascending=False, kind="stable", ignore_index=True)


def costs_summary(ledger: dict) -> str:
    """The line ``%lumi costs`` prints above its records."""
    line = f"total {money(ledger['total'])} in {len(ledger['records'])} records"
    if "endpoints" in ledger:
        line += " | per endpoint and tenant: %lumi costs --endpoints"
    return line


def _costs_options(parser) -> None:
    _plot_option(parser)
    parser.add_argument("--endpoints", action="store_true",
                        help="the cost per endpoint and tenant (GPU seconds the workers measured, cost, runs), "
                             "costliest first; with --plot, a bar per endpoint by tenant")


@command("costs", "metered execution (seconds x price) per job and request; --plot: cost over time by tier; "
         "--endpoints: per endpoint and tenant", _costs_options)
def costs(args, shell):
    ledger = call(get_dispatcher().costs.remote())
    if args.endpoints:
        if "endpoints" not in ledger:
            print("this dispatcher does not report the cost per endpoint (an older Lumi backend)")
        frame = endpoint_cost_frame(ledger)
        if not args.plot:
            return frame
        import plotly.express as px

        return px.bar(frame, x="endpoint", y="cost", color="tenant", hover_data=["gpu_seconds", "runs"],
                      title="Cost per endpoint by tenant")
    frame = _frame(ledger["records"], COST_COLUMNS)
    if not args.plot:
        print(costs_summary(ledger))
        return frame
    import plotly.express as px

    frame = frame.sort_values("t")
    frame["cumulative cost"] = frame.groupby("tier")["cost"].cumsum()
    return px.line(frame, x="t", y="cumulative cost", color="tier", markers=True,
                   title=f"Cost over time by tier (total {money(ledger['total'])})")


WORKER_COLUMNS = ["id", "role", "state", "activity", "host", "device", "target", "fallback", "running", "utilization",
                  "utilization_source", "memory_used", "memory_total"]
LEASE_COLUMNS = ["id", "endpoint", "version", "tier", "tenant", "worker", "since", "batches", "gpu_seconds"]


def worker_frame(workers: list[dict]) -> pd.DataFrame:
    """One row per worker: who it is, what it is doing (``activity``), then its device and readings."""
    return _frame(workers, WORKER_COLUMNS)


def lease_frame(leases: list[dict]) -> pd.DataFrame:
    """One row per endpoint replica leased on a worker (``since`` as a timestamp)."""
    return _frame(leases, LEASE_COLUMNS)


def cluster_summary(info: dict) -> str:
    """The line ``%lumi cluster`` prints above its workers."""
    queued = ", ".join(f"{tier} {n}" for tier, n in info["queue"].items())
    line = f"queued: {queued} (cap {info['queue_cap']})"
    if "leases" in info:
        pending = info.get("pending_leases") or 0
        line += f" | leases: {len(info['leases'])}" + (f" ({pending} pending)" if pending else "")
        line += " (%lumi cluster --leases)"
    return line + (" | CPU fallback: no GPU" if info["fallback"] else "")


def _cluster_options(parser) -> None:
    views = parser.add_mutually_exclusive_group()
    _plot_option(views)
    views.add_argument("--leases", action="store_true",
                       help="the endpoint replicas leased on workers (endpoint, version, tier, tenant, worker, "
                            "since, batches, GPU seconds) instead of the workers")


@command("cluster", "workers (what each is doing, device, utilization) and queue depths; --plot: utilization; "
         "--leases: endpoint replicas on workers", _cluster_options)
def cluster(args, shell):
    info = call(get_dispatcher().cluster.remote())
    if args.leases:
        if "leases" not in info:
            print("this dispatcher does not report leases (an older Lumi backend)")
        pending = info.get("pending_leases") or 0
        if pending:
            print(f"{pending} lease(s) waiting for a worker")
        return lease_frame(info.get("leases") or [])
    frame = worker_frame(info["workers"])
    if not args.plot:
        print(cluster_summary(info))
        return frame
    import plotly.express as px

    return px.bar(frame, x="id", y="utilization", color="device", range_y=[0, 1],
                  hover_data=["utilization_source", "activity"],
                  title="Utilization per worker" + (" (busy fraction, CPU fallback)" if info["fallback"] else ""))
