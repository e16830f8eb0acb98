"""Schedules: ``lumi.schedule(fn, cron=...)`` runs a function, a traced graph or an endpoint on a cron
schedule, as dispatcher jobs (``client.py``: the API; ``scheduler.py``: the actor that fires the runs)."""

from .client import Schedule, listing, schedule, schedules

__all__ = ["Schedule", "listing", "schedule", "schedules"]
