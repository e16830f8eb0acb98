"""How Lumi shows cost, elapsed time and utilization: one set of rules, mirrored by the panel's
``extension/src/format.ts`` (tests compare the two)."""

from __future__ import annotations

import math
import time

SMALLEST_USD = 0.000001


def money(usd: float | None) -> str:
    """Dollars with two significant digits below $1 (``$0.0000079``), cents above (``$3.95``);
    ``<$0.000001`` for a tiny non-zero amount, ``$0`` for nothing."""
    if usd is None:
        return "—"
    if usd == 0:
        return "$0"
    if usd < SMALLEST_USD:
        return "<$0.000001"
    decimals = max(2, 1 - math.floor(math.log10(usd)))
    return f"${usd:.{decimals}f}"


def duration(seconds: float | None) -> str:
    """``3.5 s`` below 10 s, ``42 s``, ``2 min 05 s``, ``1 h 02 min``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(seconds, 0.0)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    whole = int(s)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def percent(fraction: float | None) -> str:
    """A utilization in [0, 1] as whole percent."""
    return "—" if fraction is None else f"{round(fraction * 100)}%"


def job_elapsed(job: dict, now: float | None = None) -> float | None:
    """A job's elapsed time on the dispatcher's clock: from submission to its end (or now)."""
    if job.get("submitted_at") is None:
        return None
    end = job.get("finished_at") or (time.time() if now is None else now)
    return end - job["submitted_at"]
