"""What a waiting cell shows, as fields, and the one-line text display used without a widget frontend."""

from __future__ import annotations

import sys
import time

from .numbers import duration, job_elapsed, money, percent

SHOW_AFTER_S = 1.0


def fields(info: dict | None, elapsed: float, note: str | None = None) -> dict[str, str]:
    """State, queue position, elapsed time, device, utilization and cost so far, as display text.

    ``info`` is ``Job.progress()``: the job record, its worker (or None) and the price per second.
    Once the job exists its elapsed time is the dispatcher's (from submission, as the panel shows it);
    before that, ``elapsed`` (the cell's wait so far).
    """
    if info is None:
        return {"state": note or "submitting", "position": "", "elapsed": duration(elapsed), "device": "",
                "utilization": "", "cost": money(0)}
    job, worker = info["job"], info["worker"]
    position = ""
    if job["state"] == "queued" and job["position"]:
        position = f"#{job['position']} in queue, #{job['tier_position']} in {job['tier']}"
    device = utilization = ""
    if worker:
        device = "CPU fallback" if worker["fallback"] else worker["device"]
        source = "busy fraction" if worker["utilization_source"] != "nvml" else "GPU utilization"
        utilization = f"{percent(worker['utilization'])} {source}"
    elif job["device"]:
        device = "CPU fallback" if job["device"] == "CPU" else job["device"]
    if job["state"] in ("done", "failed", "cancelled") or job["started_at"] is None:
        cost = job["cost"]
    else:
        cost = max(0.0, time.time() - job["started_at"]) * info["price"]
    state = note or job["state"] + (f" ({job['error']})" if job["error"] else "")
    return {"state": state, "position": position, "elapsed": duration(job_elapsed(job)), "device": device,
            "utilization": utilization, "cost": money(cost)}


class Progress:
    """One compact line, rewritten in place; shown once a wait passes ``SHOW_AFTER_S`` seconds."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.shown = False
        self.width = 0

    def show(self, info: dict | None, elapsed: float, note: str | None = None, final: bool = False) -> None:
        if elapsed < SHOW_AFTER_S and not self.shown:
            return
        self.shown = True
        line = "[lumi] " + " | ".join(v for v in fields(info, elapsed, note).values() if v)
        self.stream.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.stream.flush()

    def make_room(self) -> None:
        """Clear the line, so that text written next starts at its beginning (the next frame redraws it)."""
        if self.shown and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
