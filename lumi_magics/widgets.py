"""The live job panel in a cell's output (ipywidgets), updated from the kernel's own thread."""

from __future__ import annotations

import html

from .progress import Progress, fields

_ROW = "<tr><td style='padding-right:1em;color:var(--jp-ui-font-color2)'>{}</td><td>{}</td></tr>"
_BAR = ("<span style='display:inline-block;vertical-align:middle;width:8em;height:0.7em;margin-right:0.5em;"
        "background:var(--jp-layout-color3)'><span style='display:block;height:100%;width:{:.0%};"
        "background:var(--jp-brand-color1)'></span></span>")
_LABELS = {"state": "state", "position": "queue", "elapsed": "elapsed", "device": "device",
           "utilization": "utilization", "cost": "cost so far"}


def frontend_available(shell) -> bool:
    """Whether widgets can render: a Jupyter kernel is running this shell (not terminal IPython or a script)."""
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def render(info: dict | None, elapsed: float, note: str | None = None) -> str:
    """The panel's HTML: one aligned table, utilization as a bar with its reading."""
    shown = fields(info, elapsed, note)
    worker = info and info["worker"]
    cells = {k: html.escape(v) for k, v in shown.items() if v}
    if worker and "utilization" in cells:
        cells["utilization"] = _BAR.format(min(max(worker["utilization"], 0.0), 1.0)) + cells["utilization"]
    return "<table>" + "".join(_ROW.format(_LABELS[k], v) for k, v in cells.items()) + "</table>"


class JobPanel:
    """State, queue position, elapsed time, device, utilization and cost so far, as one HTML widget.

    Its first frame is already complete (state "submitting"); the magic sets its value between
    ``ray.wait(..., timeout=0.25)`` calls, so updates reach the frontend while the cell blocks.
    """

    def __init__(self):
        import ipywidgets as widgets
        from IPython.display import display

        self.table = widgets.HTML(render(None, 0.0))
        display(self.table)

    def show(self, info: dict | None, elapsed: float, note: str | None = None, final: bool = False) -> None:
        self.table.value = render(info, elapsed, note)

    def make_room(self) -> None:
        """Nothing to clear: text printed while the job runs goes below the widget."""

    def close(self) -> None:
        pass


def job_view(shell) -> JobPanel | Progress:
    """The widget panel under a Jupyter kernel, else the one-line text display."""
    return JobPanel() if frontend_available(shell) else Progress()
