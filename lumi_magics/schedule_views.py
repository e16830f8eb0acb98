"""``%lumi schedules``: each schedule with its next run and last runs, as a DataFrame; ``--runs NAME`` shows one
schedule's history. Read from the store's folder: listing starts no actor."""

from __future__ import annotations

import pandas as pd
from lumi.cron import listing
from lumi.errors import ScheduleNotFound

from .line import command

COLUMNS = ["name", "tenant", "cron", "state", "next_run", "target", "tier", "last_state", "last_seconds",
           "last_cost", "runs", "cost"]
RUN_COLUMNS = ["at", "state", "seconds", "cost", "job", "error"]


def _when(t: float | None) -> pd.Timestamp | None:
    """Epoch seconds as a local time."""
    return None if t is None else pd.Timestamp.fromtimestamp(t)


def schedule_frame(tenant: str | None = None) -> pd.DataFrame:
    """One row per schedule: its cron, state, next run, target and tier, its last run's state, execution
    seconds and cost, and the runs and cost of the history kept."""
    rows = []
    for r in listing(tenant):
        ran = [run for run in r["runs"] if run["job"]]
        last = ran[-1] if ran else {}
        rows.append({**{k: r[k] for k in ("name", "tenant", "cron", "state", "target", "tier")},
                     "next_run": _when(r["next_run"]), "last_state": last.get("state"),
                     "last_seconds": last.get("seconds"), "last_cost": last.get("cost"), "runs": len(ran),
                     "cost": sum(run["cost"] for run in ran)})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["tenant", "name"], kind="stable", ignore_index=True)


def runs_frame(name: str, tenant: str | None = None) -> pd.DataFrame:
    """The last runs of schedule ``name``, oldest first (missed and skipped firings included)."""
    found = [r for r in listing(tenant) if r["name"] == name]
    if not found:
        raise ScheduleNotFound(f"no schedule named {name!r}; %lumi schedules lists them")
    frame = pd.DataFrame(found[0]["runs"], columns=RUN_COLUMNS)
    frame["at"] = [_when(t) for t in frame["at"]]
    return frame


def _options(parser) -> None:
    parser.add_argument("--tenant", default=None, help="only this tenant's (default: every tenant's)")
    parser.add_argument("--runs", metavar="NAME", default=None, help="the last runs of schedule NAME")


@command("schedules", "lumi.schedule()s: cron, state, next run, last run's state, seconds and cost", _options)
def schedules(args, shell):
    return schedule_frame(args.tenant) if args.runs is None else runs_frame(args.runs, args.tenant)
