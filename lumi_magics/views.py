"""``%lumi jobs``, ``%lumi costs``, ``%lumi cluster``: the dispatcher's records as DataFrames or plotly charts."""

from __future__ import annotations

import pandas as pd
from lumi.runtime.dispatcher import get_dispatcher
from lumi.runtime.jobs import call

from .line import command
from .numbers import money

_TIME_COLUMNS = ("submitted_at", "started_at", "finished_at", "t")


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


@command("costs", "metered execution (seconds x price) per job and request; --plot: cost over time by tier",
         _plot_option)
def costs(args, shell):
    ledger = call(get_dispatcher().costs.remote())
    frame = _frame(ledger["records"], COST_COLUMNS)
    if not args.plot:
        return frame
    import plotly.express as px

    frame = frame.sort_values("t")
    frame["cumulative cost"] = frame.groupby("tier")["cost"].cumsum()
    return px.line(frame, x="t", y="cumulative cost", color="tier", markers=True,
                   title=f"Cost over time by tier (total {money(ledger['total'])})")


WORKER_COLUMNS = ["id", "host", "device", "target", "fallback", "state", "running", "utilization",
                  "utilization_source", "memory_used", "memory_total"]


@command("cluster", "workers (device, execution target, utilization) and queue depths; --plot: utilization",
         _plot_option)
def cluster(args, shell):
    info = call(get_dispatcher().cluster.remote())
    frame = _frame(info["workers"], WORKER_COLUMNS)
    if not args.plot:
        queued = ", ".join(f"{tier} {n}" for tier, n in info["queue"].items())
        print(f"queued: {queued} (cap {info['queue_cap']})" + (" | CPU fallback: no GPU" if info["fallback"] else ""))
        return frame
    import plotly.express as px

    return px.bar(frame, x="id", y="utilization", color="device", range_y=[0, 1], hover_data=["utilization_source"],
                  title="Utilization per worker" + (" (busy fraction, CPU fallback)" if info["fallback"] else ""))
