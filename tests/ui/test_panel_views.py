"""The panel's Store and Schedules sections and its one row per ``lumi.map``, in a real JupyterLab on a real
local backend: a notebook makes a Dict, a Queue and a Volume and the Store section counts them; a running map
over items that sleep is one row whose bar fills as items finish; a schedule shows its cron and next run,
then its runs, then that it is paused."""

from __future__ import annotations

import re
import time

import nbformat
import pytest
from labdriver import (
    cell_outputs,
    open_lab,
    open_notebook,
    open_panel,
    output_text,
    run_cell,
    screenshot,
    start_cell,
    write_notebooks,
)

NOTEBOOK = "views.ipynb"
ITEMS = 16
CELLS = [
    "%load_ext lumi_magics\nimport lumi, numpy as np",
    # the store: 3 keys, 4 items of at most 50, 2 files (2048 + 5 bytes)
    'd = lumi.Dict("panel-dict")\nd["a"], d["b"], d["c"] = 1, np.ones(1000, np.float32), "x"\n'
    'lumi.Queue("panel-queue", maxsize=50).put_many([1, 2, 3, 4])\n'
    'v = lumi.Volume("panel-volume")\nv.write_bytes("a.bin", b"\\0" * 2048)\nv.write_text("b/c.txt", "hello")\n'
    'print(len(d), "stored")',
    # a map whose items take a while each
    f"def slow(i):\n    import time\n    time.sleep(3)\n    return i * i\n\n"
    f"print(sum(lumi.map(slow, range({ITEMS}), progress=False)))",
    # a schedule every 2 seconds (six fields: seconds last)
    'def tick():\n    return 1\n\nsched = lumi.schedule(tick, cron="* * * * * */2", name="panel-tick")',
    "sched.pause()\nprint(sched.state)",
    "sched.delete()",
]

# a map row's counts and figures in one read (the panel re-renders every 2 s)
MAP_READING = """el => [
    Object.fromEntries(['seen', 'done', 'failed', 'running', 'queued'].map(k => [k, +el.dataset[k]])),
    Object.fromEntries([...el.querySelectorAll('[data-stat]')].map(e => [e.dataset.stat, e.innerText.trim()]))]"""


@pytest.fixture(scope="module")
def lab(autostart_lab):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    write_notebooks(autostart_lab.root, {NOTEBOOK: nb})
    return autostart_lab


@pytest.fixture(scope="module")
def page(browser, lab):
    page = open_lab(browser, lab)
    open_notebook(page, NOTEBOOK)
    yield page
    page.context.close()


def _cost(text: str) -> float:
    """A cost as the panel shows it (``$0.0012``, ``<$0.000001``: then its bound)."""
    return float(re.fullmatch(r"<?\$([0-9.]+)", text.strip()).group(1))


def _stats(row) -> dict[str, str]:
    """A row's figures, by ``data-stat``."""
    return {e.get_attribute("data-stat"): e.inner_text().strip() for e in row.locator("[data-stat]").all()}


def _cells(table, name: str) -> dict[str, str]:
    """The cells of the row named ``name`` in one of the store's tables, by column."""
    row = table.locator(f'tr[data-name="{name}"]')
    row.wait_for(timeout=20_000)
    return {td.get_attribute("data-col"): td.inner_text().strip() for td in row.locator("td").all()}


@pytest.mark.timeout(600)
def test_store_section_counts_a_real_dict_queue_and_volume(page, lab):
    panel = open_panel(page)
    page.locator("#lumi-panel.lumi-mod-connected").wait_for(timeout=180_000)  # the server extension's backend
    store = panel.locator('[data-section="store"]')
    assert "Nothing stored yet" in store.locator(".lumi-Empty").inner_text()
    assert "No schedules yet" in panel.locator('[data-section="schedules"] .lumi-Empty').inner_text()

    run_cell(page, NOTEBOOK, 0)
    assert output_text(run_cell(page, NOTEBOOK, 1)).strip() == "3 stored"
    dicts = _cells(store.locator('[data-store="dicts"]'), "panel-dict")
    assert (dicts["tenant"], dicts["keys"]) == ("local", "3")
    assert re.fullmatch(r"[0-9.]+ KiB", dicts["size"]), dicts  # the 4000-byte array and the rest
    queues = _cells(store.locator('[data-store="queues"]'), "panel-queue")
    assert (queues["tenant"], queues["length"]) == ("local", "4/50")
    volumes = _cells(store.locator('[data-store="volumes"]'), "panel-volume")
    assert (volumes["tenant"], volumes["files"], volumes["size"]) == ("local", "2", "2.0 KiB")
    assert store.locator(".lumi-Empty").count() == 0
    screenshot(page, "panel-store-light.png")


@pytest.mark.timeout(600)
def test_a_running_map_is_one_row_with_its_progress(page):
    start_cell(page, NOTEBOOK, 2)
    panel = open_panel(page)
    queue = panel.locator('[data-section="queue"]')
    row = queue.locator('.lumi-Map[data-state="running"]')
    row.wait_for(timeout=120_000)
    prefix = row.get_attribute("data-map")
    assert re.fullmatch(r"lumi\.map slow \([0-9a-f]{8}\)", prefix), prefix
    assert row.locator(".lumi-Row-name").inner_text() == prefix
    assert row.locator('.lumi-Progress[role="progressbar"]').count() == 1

    # while it runs: one row for the map however many of its items are out, and some finished, some not
    partial, deadline = None, time.monotonic() + 240
    while partial is None and time.monotonic() < deadline:
        assert queue.locator(".lumi-Map").count() == 1
        assert queue.locator(".lumi-Job", has_text="lumi.map").count() == 0  # no item job listed on its own
        counts, stats = queue.locator(".lumi-Map").evaluate(MAP_READING)
        if 0 < counts["done"] < ITEMS and counts["running"] + counts["queued"] > 0:
            partial = (counts, stats)
        page.wait_for_timeout(250)
    assert partial is not None, "the panel never showed the map part done"
    counts, stats = partial
    assert counts["seen"] == counts["done"] + counts["failed"] + counts["running"] + counts["queued"]
    assert stats["finished"] == f"{counts['done'] + counts['failed']}/{counts['seen']}"
    assert (stats["done"], stats["running"]) == (f"{counts['done']} done", f"{counts['running']} running")

    assert output_text(cell_outputs(page, NOTEBOOK, 2, wait_s=300)).strip() == str(sum(i * i for i in range(ITEMS)))
    done = queue.locator(f'.lumi-Map[data-map="{prefix}"][data-state="done"][data-done="{ITEMS}"]')
    done.wait_for(timeout=20_000)
    assert queue.locator(".lumi-Map").count() == 1
    stats = _stats(done)
    assert [stats[k] for k in ("finished", "done", "failed", "running", "queued")] == [
        f"{ITEMS}/{ITEMS}", f"{ITEMS} done", "0 failed", "0 running", "0 queued"]
    assert "cancelled" not in stats
    assert done.locator(".lumi-Progress-done").evaluate("el => el.offsetWidth === el.parentElement.clientWidth")
    assert _cost(done.locator(".lumi-Cost").inner_text()) > 0
    screenshot(page, "panel-map-light.png")


@pytest.mark.timeout(600)
def test_a_schedule_shows_its_next_run_its_runs_and_when_it_is_paused(page):
    run_cell(page, NOTEBOOK, 3)
    panel = open_panel(page)
    row = panel.locator('[data-section="schedules"] .lumi-Schedule[data-schedule="panel-tick"]')
    row.wait_for(timeout=20_000)
    assert row.locator(".lumi-Cron").inner_text() == "* * * * * */2"
    assert row.get_attribute("data-state") == "active" and row.locator(".lumi-mod-paused").count() == 0
    # relative to the server's clock: "in 1.2 s", or just after it was due and before the scheduler fired, "0.3 s ago"
    next_run = row.locator('[data-stat="next"]').inner_text()
    assert re.fullmatch(r"next (in [0-9.]+ s|[0-9.]+ s ago)", next_run), row.inner_text()
    assert "function tick · local · api" in row.inner_text()

    ran = panel.locator('.lumi-Schedule[data-schedule="panel-tick"]', has=page.locator(".lumi-State.lumi-mod-done"))
    ran.wait_for(timeout=120_000)  # a run went through the dispatcher and finished
    last = ran.locator('[data-stat="last"]').text_content()  # as written (the state is shown in capitals)
    assert re.fullmatch(r"last done [0-9.]+ s · <?\$[0-9.]+", last), last
    assert int(ran.get_attribute("data-runs")) >= 1
    assert re.fullmatch(r"[0-9]+ runs?", ran.locator('[data-stat="runs"]').inner_text())
    screenshot(page, "panel-schedules-light.png")

    assert output_text(run_cell(page, NOTEBOOK, 4)).strip() == "paused"
    paused = panel.locator('.lumi-Schedule[data-schedule="panel-tick"][data-state="paused"]')
    paused.wait_for(timeout=20_000)
    assert paused.locator(".lumi-Badge.lumi-mod-paused").inner_text() == "paused"
    assert paused.locator('[data-stat="next"]').inner_text() == "paused"

    run_cell(page, NOTEBOOK, 5)
    panel.locator('[data-section="schedules"] .lumi-Empty').wait_for(timeout=20_000)
