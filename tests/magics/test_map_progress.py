"""``lumi.map``'s displays: the text line rewritten in place, the widget bar, and which one a shell gets."""

from __future__ import annotations

import io
import types

from lumi.runtime.fanout import MapProgress

from lumi_magics import map_progress


def test_fields_show_done_of_total_failures_rate_eta_and_cost():
    p = MapProgress(done=50, failed=2, total=200, in_flight=8, elapsed=10.0, cost=0.0000079)
    assert map_progress.line(p) == "[lumi.map] 50/200 done | 2 failed | 5.00 items/s | ETA 30 s | cost $0.0000079"
    assert map_progress.fields(MapProgress(done=1234, elapsed=1.0))["done"] == "1,234 done"  # no total: no ETA
    assert map_progress.fields(MapProgress(done=1234, elapsed=1.0))["eta"] == ""
    stopped = MapProgress(done=3, total=10, elapsed=1.0, finished=True)
    assert "stopped" in map_progress.line(stopped) and "ETA" not in map_progress.line(stopped)
    assert [map_progress.rate(r) for r in (0.421, 4.21, 42.1, 4210.0)] == ["0.42", "4.21", "42.1", "4,210"]


def test_the_text_line_waits_a_second_then_rewrites_itself_and_ends_the_line():
    out = io.StringIO()
    view = map_progress.MapLine(out)
    view(MapProgress(done=1, total=4, elapsed=0.2))
    assert out.getvalue() == "", "a quick map prints nothing"
    view(MapProgress(done=2, total=4, elapsed=1.5))
    view(MapProgress(done=3, total=4, elapsed=1.6))  # within LINE_EVERY_S: skipped
    view(MapProgress(done=4, total=4, elapsed=1.7, finished=True))
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and "4/4 done" in text and "3/4" not in text


def test_the_widget_bar_follows_done_and_marks_the_end(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    bar = map_progress.MapBar()
    assert shown == [bar.box] and "submitting" in bar.text.value
    bar(MapProgress(done=5, total=20, elapsed=1.0, cost=0.01))
    assert (bar.bar.value, bar.bar.max) == (5, 20) and "5/20 done" in bar.text.value and "$0.010" in bar.text.value
    bar(MapProgress(done=20, total=20, failed=1, elapsed=2.0, finished=True))
    assert bar.bar.value == 20 and bar.bar.bar_style == "danger" and "1 failed" in bar.text.value
    unknown = map_progress.MapBar()
    unknown(MapProgress(done=7, elapsed=1.0, finished=True))
    assert unknown.bar.layout.display == "none" and "7 done" in unknown.text.value
    assert unknown.bar.bar_style == "success"


def test_a_kernel_gets_the_widget_and_a_terminal_the_text_line(monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda *a: None)
    assert isinstance(map_progress.map_view(types.SimpleNamespace(kernel=object())), map_progress.MapBar)
    assert isinstance(map_progress.map_view(types.SimpleNamespace()), map_progress.MapLine)


def test_lumi_map_under_ipython_asks_the_notebook_for_its_display():
    from IPython.core.interactiveshell import InteractiveShell
    from lumi.runtime import fanout

    InteractiveShell.instance()
    assert isinstance(fanout.default_progress(), map_progress.MapLine)  # an InteractiveShell without a kernel
