"""The Lumi panel in a real JupyterLab with no backend running: it opens from the sidebar and the
palette, says "not connected" and how to connect, polls at most every 2 s only while visible,
and follows the light and dark themes."""

from __future__ import annotations

import pytest
from labdriver import lab_command, open_lab, open_panel, screenshot, set_theme, sidebar_tab, start_lab, stop_lab

REFRESH_S = 2.0


@pytest.fixture(scope="module")
def lab(module_tmp):
    lab = start_lab(module_tmp)
    yield lab
    stop_lab(lab)


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
    window = 10.0
    visible = _count(page, window)
    assert 3 <= visible <= window / REFRESH_S + 1, f"{visible} requests in {window} s while visible"
    assert all(url.split("?")[0].endswith("/lumi/api/snapshot") for url in page.lumi_requests)

    sidebar_tab(page, "filebrowser").click()
    page.locator("#lumi-panel").wait_for(state="hidden")
    page.wait_for_timeout(500)  # a request already in flight may still land
    hidden = _count(page, 8.0)
    assert hidden == 0, f"{hidden} requests in 8 s while another sidebar tab was shown"

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
