"""``lumi.map``'s live progress: one progress bar under a Jupyter kernel, else a text line rewritten in place.

The runtime calls the view with a :class:`lumi.runtime.fanout.MapProgress` after every change; the
views throttle themselves and always draw the last state.
"""

from __future__ import annotations

import html
import sys
import time
from typing import TYPE_CHECKING

from .numbers import duration, money
from .progress import SHOW_AFTER_S
from .widgets import frontend_available

if TYPE_CHECKING:
    from lumi.runtime.fanout import MapProgress

BAR_EVERY_S = 0.1
LINE_EVERY_S = 0.25


def rate(items_per_s: float) -> str:
    """``0.42``, ``4.2``, ``42``, ``4,200`` items/s."""
    if items_per_s >= 100:
        return f"{items_per_s:,.0f}"
    return f"{items_per_s:.1f}" if items_per_s >= 10 else f"{items_per_s:.2f}"


def fields(p: MapProgress) -> dict[str, str]:
    """Done (of the total, when known), failures, rate, ETA and cost so far, as display text."""
    done = f"{p.done:,}/{p.total:,} done" if p.total is not None else f"{p.done:,} done"
    running = p.total is None or p.done < p.total
    return {"done": done, "failed": f"{p.failed:,} failed" if p.failed else "",
            "rate": f"{rate(p.rate)} items/s" if p.done else "",
            "eta": f"ETA {duration(p.eta)}" if p.eta is not None and running and not p.finished else "",
            "stopped": "stopped" if p.finished and p.total is not None and running else "",
            "cost": f"cost {money(p.cost)}"}


def line(p: MapProgress) -> str:
    return "[lumi.map] " + " | ".join(v for v in fields(p).values() if v)


class MapLine:
    """The text display: one line rewritten in place, shown once the map has run ``SHOW_AFTER_S``."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.width = 0
        self.last = 0.0

    def __call__(self, p: MapProgress) -> None:
        now = time.monotonic()
        if (not self.width and p.elapsed < SHOW_AFTER_S) or (not p.finished and now - self.last < LINE_EVERY_S):
            return
        self.last = now
        text = line(p)
        self.stream.write("\r" + text.ljust(self.width) + ("\n" if p.finished else ""))
        self.width = len(text)
        self.stream.flush()


class MapBar:
    """The widget display: an ``IntProgress`` (hidden when the total is unknown) beside the same fields."""

    def __init__(self):
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="lumi.map")
        self.text = widgets.HTML()
        self.box = widgets.HBox([self.bar, self.text])
        self.last = 0.0
        self.draw(None)
        display(self.box)

    def __call__(self, p: MapProgress) -> None:
        now = time.monotonic()
        if p.finished or now - self.last >= BAR_EVERY_S:
            self.last = now
            self.draw(p)

    def draw(self, p: MapProgress | None) -> None:
        if p is None:
            self.text.value = "&nbsp;submitting"
            return
        if p.total is None:
            self.bar.layout.display = "none"
        else:
            self.bar.max = max(p.total, 1)
            self.bar.value = min(p.done, p.total)
        if p.finished:
            self.bar.bar_style = "danger" if p.failed else "success" if p.total in (None, p.done) else "warning"
        shown = [html.escape(v) for v in fields(p).values() if v]
        self.text.value = "&nbsp;" + " &middot; ".join(shown)


def map_view(shell) -> MapBar | MapLine:
    """The progress bar under a Jupyter kernel, else the text line."""
    return MapBar() if frontend_available(shell) else MapLine()
