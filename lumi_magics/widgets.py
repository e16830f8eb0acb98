"""The live job panel in a cell's output (ipywidgets), updated from the kernel's own thread."""

from __future__ import annotations

import html

from .progress import Progress, fields

_ROW = "<tr><td style='padding-right:1em;color:var(--jp-ui-font-color2)'>{}</td><td>{}</td></tr>"
_LABELS = {"state": "state", "position": "queue", "elapsed": "elapsed", "device": "device", "cost": "cost so far"}


def frontend_available(shell) -> bool:
    """Whether widgets can render: a Jupyter kernel is running this shell (not terminal IPython or a script)."""
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class JobPanel:
    """State, queue position, elapsed time, device utilization and cost so far, as a widget.

    The magic sets its traits between ``ray.wait(..., timeout=0.25)`` calls, so updates reach the
    frontend while the cell blocks.
    """

    def __init__(self):
        import ipywidgets as widgets
        from IPython.display import display

        self.table = widgets.HTML()
        self.utilization = widgets.FloatProgress(min=0.0, max=1.0, description="utilization",
                                                 layout=widgets.Layout(width="20em"))
        self.box = widgets.VBox([self.table, self.utilization])
        display(self.box)

    def show(self, info: dict | None, elapsed: float, note: str | None = None, final: bool = False) -> None:
        shown = fields(info, elapsed, note)
        self.table.value = "<table>" + "".join(
            _ROW.format(_LABELS[k], html.escape(v)) for k, v in shown.items() if v) + "</table>"
        worker = info and info["worker"]
        self.utilization.value = worker["utilization"] if worker else 0.0
        if worker:
            self.utilization.description = "busy (CPU fallback)" if worker["fallback"] else "GPU utilization"
        if final:
            self.utilization.layout.display = "none"

    def close(self) -> None:
        pass


def job_view(shell) -> JobPanel | Progress:
    """The widget panel under a Jupyter kernel, else the one-line text display."""
    return JobPanel() if frontend_available(shell) else Progress()
