"""The Lumi panel in a real JupyterLab with no backend running: it opens from the sidebar and the
palette, says "not connected" and how to connect, polls at most every 2 s only while visible,
and follows the light and dark themes. Then, on a snapshot served by the test, what each worker
is doing: a job, an endpoint it serves (a lease), a CPU-only worker."""

from __future__ import annotations

import json
import time

import pytest
from labdriver import lab_command, open_lab, open_panel, screenshot, set_theme, sidebar_tab

REFRESH_S = 2.0


@pytest.fixture(scope="module")
def lab(plain_lab):
    return plain_lab  # no backend yet: this module runs before test_panel_flow's first %%remote starts one


@pytest.fixture(scope="module")
def page(browser, lab):
    page = open_lab(browser, lab)
    lumi_requests: list[str] = []
    page.on("request", lambda r: "/lumi/api/" in r.url and lumi_requests.append(r.url))
    page.lumi_requests = lumi_requests
    yield page
    page.context.close()


def test_panel_opens_from_the_sidebar_and_says_not_connected(page, lab):
    panel = open_panel(page)
    assert panel.locator(".lumi-Header h2").inner_text().lower() == "lumi"
    box = panel.locator(".lumi-NotConnected")
    box.wait_for(timeout=10_000)
    assert "Not connected" in box.inner_text()
    hint = box.locator("p").inner_text()
    assert str(lab.home / "gateway.json") in hint and "%%remote" in hint
    assert "not connected" in panel.locator(".lumi-Status").inner_text()


def test_palette_command_opens_the_panel(page):
    sidebar_tab(page, "filebrowser").click()
    page.locator("#lumi-panel").wait_for(state="hidden")
    lab_command(page, "apputils:activate-command-palette")
    page.keyboard.type("Lumi: Open panel")
    item = page.locator(".lm-CommandPalette-item", has_text="Lumi: Open panel")
    item.first.wait_for()
    page.keyboard.press("Enter")
    page.locator("#lumi-panel").wait_for(state="visible")


def _count(page, seconds: float) -> int:
    page.lumi_requests.clear()
    page.wait_for_timeout(seconds * 1000)
    return len(page.lumi_requests)


def test_polls_at_most_every_two_seconds_while_visible_and_not_at_all_while_hidden(page):
    open_panel(page)
    page.wait_for_timeout(500)
    window = 8.0
    visible = _count(page, window)
    assert 3 <= visible <= window / REFRESH_S + 1, f"{visible} requests in {window} s while visible"
    assert all(url.split("?")[0].endswith("/lumi/api/snapshot") for url in page.lumi_requests)

    sidebar_tab(page, "filebrowser").click()
    page.locator("#lumi-panel").wait_for(state="hidden")
    page.wait_for_timeout(500)  # a request already in flight may still land
    hidden = _count(page, 5.0)
    assert hidden == 0, f"{hidden} requests in 5 s while another sidebar tab was shown"

    open_panel(page)  # showing it again refreshes at once and resumes polling
    page.wait_for_timeout(1000)
    assert len(page.lumi_requests) >= 1


def test_panel_follows_light_and_dark_themes(page):
    panel = open_panel(page)
    backgrounds = {}
    for theme, name in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        set_theme(page, theme)
        backgrounds[name] = panel.evaluate("el => getComputedStyle(el).backgroundColor")
        screenshot(page, f"panel-not-connected-{name}.png")
    assert backgrounds["light"] != backgrounds["dark"]
    set_theme(page, "JupyterLab Light")


def _snapshot() -> dict:
    now = time.time()
    worker = {"host": "10.0.0.1", "device": "NVIDIA H100", "target": "cuda", "fallback": False, "utilization": 0.4,
              "utilization_source": "nvml", "memory_used": 2 << 30, "memory_total": 80 << 30, "running": 1}
    workers = [
        {**worker, "id": "lumi-worker-0", "role": "device", "state": "busy",
         "doing": {"kind": "job", "job": "3f2a91c0aa55", "tier": "api", "tenant": "acme", "label": "remote"},
         "activity": "job 3f2a91c0 (api, acme)"},
        {**worker, "id": "lumi-worker-1", "role": "device", "state": "leased",
         "doing": {"kind": "serving", "endpoint": "mnist", "version": 3, "tier": "api", "tenant": "acme",
                   "since": now - 60, "batches": 41, "gpu_seconds": 0.52},
         "activity": "serving mnist v3 since 12:01:07 (41 batches)"},
        {**worker, "id": "lumi-cpu-0", "role": "cpu", "device": "CPU", "target": "cpu", "state": "idle",
         "utilization_source": "busy fraction", "memory_used": None, "memory_total": None, "running": 0,
         "doing": {"kind": "idle"}, "activity": "idle"},
        # an older backend: none of the new fields
        {**worker, "id": "lumi-worker-2", "state": "idle", "running": 0},
    ]
    lease = {"id": "L1", "endpoint": "mnist", "version": 3, "tier": "api", "tenant": "acme", "worker": "lumi-worker-1",
             "since": now - 60, "batches": 41, "gpu_seconds": 0.52}
    return {"connected": True, "gateway": "http://127.0.0.1:1", "time": now, "errors": {},
            "cluster": {"workers": workers, "queue": {"api": 0}, "queue_cap": 64, "tiers": {}, "fallback": False,
                        "leases": [lease], "pending_leases": 1},
            "jobs": [], "deployments": [],
            "costs": {"total": 0, "by_tenant": {}, "by_tier": {}, "by_endpoint": {}, "series": [], "endpoints": []}}


def test_cluster_rows_say_what_each_worker_is_doing(page):
    route = "**/lumi/api/snapshot*"
    page.route(route, lambda r: r.fulfill(status=200, content_type="application/json", body=json.dumps(_snapshot())))
    try:
        panel = open_panel(page)
        cluster = panel.locator('[data-section="cluster"]')
        cluster.locator(".lumi-Worker").first.wait_for(timeout=10_000)
        job = cluster.locator('[data-worker-id="lumi-worker-0"]')
        serving = cluster.locator('[data-worker-id="lumi-worker-1"]')
        cpu = cluster.locator('[data-worker-id="lumi-cpu-0"]')
        old = cluster.locator('[data-worker-id="lumi-worker-2"]')

        activity = job.locator(".lumi-Worker-activity")
        assert activity.get_attribute("data-activity") == "job"
        assert "3f2a91c0" in activity.inner_text() and "api" in activity.inner_text()
        assert "3f2a91c0aa55" not in activity.inner_text()  # the short id, the whole one in the title

        assert "lumi-mod-leased" in serving.get_attribute("class").split()
        assert "lumi-mod-leased" not in job.get_attribute("class").split()
        text = serving.locator(".lumi-Worker-activity").inner_text()
        assert "mnist" in text and "v3" in text and "41 batches" in text
        # visibly distinct: the leased row has an accent edge the others lack
        edge = "el => getComputedStyle(el).borderLeftWidth"
        assert serving.evaluate(edge) != job.evaluate(edge)

        assert cpu.locator('.lumi-Badge[data-role="cpu"]').count() == 1
        assert job.locator('.lumi-Badge[data-role="cpu"]').count() == 0
        assert cpu.locator(".lumi-Worker-activity").count() == 0  # "idle" is already its state

        assert old.locator(".lumi-Worker-activity").count() == 0  # older backends: the row as before
        assert "1 lease (1 pending)" in cluster.locator(".lumi-Summary").inner_text()
        screenshot(page, "panel-cluster-activity-light.png")
    finally:
        page.unroute(route)


def _job(id_: str, label: str, state: str, cost: float = 0.0) -> dict:
    now = time.time()
    return {"id": id_, "tenant": "acme", "tier": "api", "state": state, "position": None, "tier_position": None,
            "submitted_at": now - 30, "started_at": now - 20, "finished_at": None if state in ("queued", "running")
            else now - 5, "gpu_seconds": 0.1, "cost": cost, "device": "CPU", "worker": None,
            "error": "fn raised ValueError: bad item" if state == "failed" else None, "attempts": 1, "label": label}


def test_a_map_with_failures_a_refused_schedule_run_and_an_older_server(page):
    """Rendering what the real-backend tests (test_panel_views.py) do not reach: failed items in a map's bar,
    a label that only looks like a map's, a schedule whose last run was refused, and a snapshot from an older
    server extension (no store or schedules in it: those sections are left out, the rest still shows)."""
    now = time.time()
    prefix = "lumi.map score (0123abcd)"
    jobs = [_job(f"m{i}", f"{prefix} #{i}", state, 0.25) for i, state in
            enumerate(["running", "failed", "done", "done"])] + [_job("x1", "lumi.map score #3", "done")]
    run = {"at": now - 60, "job": None, "state": "refused", "seconds": 0.0, "cost": 0.0,
           "error": "tier 'api' is over its quota"}
    schedule = {"name": "nightly", "tenant": "acme", "cron": "0 3 * * *", "state": "active", "next_run": now + 3725,
                "target": "endpoint scorer", "tier": "api", "missed": "once", "runs": [run]}
    snap = {**_snapshot(), "jobs": jobs, "schedules": {"schedules": [schedule]},
            "store": {"dicts": [], "queues": [], "volumes": []}}
    older = {k: v for k, v in snap.items() if k not in ("store", "schedules")}
    route = "**/lumi/api/snapshot*"
    shown = "#lumi-panel [data-section=\"schedules\"]"
    for answer, ready in ((snap, f"!!document.querySelector('{shown} [data-schedule=\"nightly\"]')"),
                          (older, f"!document.querySelector('{shown}')")):
        page.route(route, _serve(answer))
        try:
            panel = open_panel(page)
            page.wait_for_function(ready, timeout=10_000)
            queue = panel.locator('[data-section="queue"]')
            row = queue.locator(f'.lumi-Map[data-map="{prefix}"]')
            assert row.get_attribute("data-state") == "running"
            assert [row.get_attribute(f"data-{k}") for k in ("seen", "done", "failed", "running", "queued")] == [
                "4", "2", "1", "1", "0"]
            assert row.locator('[data-stat="finished"]').inner_text() == "3/4"
            assert row.locator(".lumi-Cost").inner_text() == "$1.00"
            assert _fraction(row.locator(".lumi-Progress-done")) == pytest.approx(0.5, abs=0.02)
            assert _fraction(row.locator(".lumi-Progress-failed")) == pytest.approx(0.25, abs=0.02)
            assert queue.locator('.lumi-Job[data-job-id="x1"]').count() == 1  # not a map's label: a job row
            assert queue.locator(".lumi-Job").count() == 1
            if answer is snap:
                nightly = panel.locator('[data-section="schedules"] .lumi-Schedule[data-schedule="nightly"]')
                assert nightly.locator('[data-stat="next"]').inner_text() == "next in 1 h 02 min"
                assert nightly.locator(".lumi-State.lumi-mod-refused").count() == 1
                assert "over its quota" in nightly.locator(".lumi-Error").inner_text()
                assert nightly.locator('[data-stat="runs"]').inner_text() == "1 run"
                assert "endpoint scorer" in nightly.inner_text()
                assert "Nothing stored yet" in panel.locator('[data-section="store"]').inner_text()
            else:
                assert panel.locator('[data-section="store"]').count() == 0
                assert panel.locator('[data-section="cluster"] .lumi-Worker').count() == 4
        finally:
            page.unroute(route)


def _fraction(bar_part) -> float:
    """How much of its progress bar a segment fills."""
    return bar_part.evaluate("el => el.offsetWidth / el.parentElement.clientWidth")


def _serve(snapshot: dict):
    """A route handler answering ``snapshot``."""
    body = json.dumps(snapshot)
    return lambda route: route.fulfill(status=200, content_type="application/json", body=body)
