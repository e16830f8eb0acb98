"""Jupyter server extension behind the Lumi panel: authenticated ``/lumi/api/…`` handlers that
proxy to the Lumi gateway named in ``$LUMI_HOME/gateway.json``. When the server starts it also
starts the machine's local backend (``lumi serve``, in a subprocess: this process never imports
Ray), unless ``LUMI_AUTOSTART=0``.

With no gateway file, or a gateway that does not answer, every route answers 200 with
``{"connected": false, "hint": "<how to connect>"}`` so the panel can say so plainly.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from lumi.errors import LumiError, NotConnected
from lumi.runtime.config import setting
from lumi.runtime.head import gateway_file
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

# panel section -> gateway route (the gateway contract in docs/architecture.md)
SECTIONS = {"cluster": "/v1/cluster", "jobs": "/v1/jobs", "deployments": "/v1/endpoints", "costs": "/v1/costs",
            "store": "/v1/store", "schedules": "/v1/schedules"}
COST_SERIES_POINTS = 120
_CONNECT_TIMEOUT_S = 2.0
_REQUEST_TIMEOUT_S = 10.0
_START_HINT = ("Start the local backend with `lumi serve` in a terminal, or in a notebook run `%load_ext lumi_magics` "
               "and a `%%remote` cell; this panel connects on its own.")


@dataclass(frozen=True)
class Gateway:
    url: str
    key: str


def read_gateway(path: Path | None = None) -> Gateway:
    """The gateway's url and admin key, or ``NotConnected`` saying how to start one."""
    path = path or gateway_file()
    try:
        info = json.loads(path.read_text())
        return Gateway(url=info["url"].rstrip("/"), key=info["key"])
    except FileNotFoundError:
        raise NotConnected(f"No Lumi backend is running (there is no {path}). {_START_HINT}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise NotConnected(f"{path} is unreadable ({e!r}); it should hold {{\"url\", \"key\"}}. "
                            f"Delete it and start the backend again. {_START_HINT}") from None


async def _call(gateway: Gateway, method: str, route: str, body: Any = None) -> tuple[int, Any]:
    """One gateway request: ``(status, decoded JSON)``; ``NotConnected`` when nothing answers."""
    request = HTTPRequest(
        gateway.url + route,
        method=method,
        headers={"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"},
        body=None if method == "GET" else json.dumps(body if body is not None else {}),
        connect_timeout=_CONNECT_TIMEOUT_S,
        request_timeout=_REQUEST_TIMEOUT_S,
    )
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except (OSError, HTTPClientError) as e:
        raise NotConnected(f"The Lumi gateway at {gateway.url} (from {gateway_file()}) does not answer ({e}); "
                            f"its backend has probably stopped. {_START_HINT}") from None
    if response.code == 401:
        raise NotConnected(f"The Lumi gateway at {gateway.url} refused the admin key in {gateway_file()}; "
                            "restart the backend so it writes a fresh one.")
    try:
        payload = json.loads(response.body) if response.body else None
    except ValueError:
        payload = response.body.decode(errors="replace")
    return response.code, payload


def _message(status: int, payload: Any) -> str:
    detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
    return f"gateway answered {status}: {detail}"


def cost_series(records: list[dict], points: int = COST_SERIES_POINTS) -> list[list[float]]:
    """Cumulative cost over time, ``[[t, total so far], …]``, thinned to at most ``points`` (last kept)."""
    total, series = 0.0, []
    for record in sorted(records, key=lambda r: r["t"]):
        total += record["cost"]
        series.append([record["t"], total])
    if len(series) <= points:
        return series
    step = (len(series) - 1) / (points - 1)
    return [series[round(i * step)] for i in range(points)]


async def snapshot(sections: tuple[str, ...] = tuple(SECTIONS)) -> dict:
    """What the panel shows: each section's gateway data, or why it is missing."""
    try:
        gateway = read_gateway()
        answers = await asyncio.gather(*(_call(gateway, "GET", SECTIONS[s]) for s in sections))
    except NotConnected as e:
        return {"connected": False, "hint": str(e)}
    out: dict[str, Any] = {"connected": True, "gateway": gateway.url, "time": time.time(), "errors": {}}
    for section, (status, payload) in zip(sections, answers, strict=True):
        if status == 200:
            out[section] = payload
        else:
            out["errors"][section] = _message(status, payload)
    if isinstance(out.get("costs"), dict):
        costs = dict(out["costs"])
        costs["series"] = cost_series(costs.pop("records", []))
        out["costs"] = costs
    return out


class SnapshotHandler(APIHandler):
    """``GET /lumi/api/snapshot``: every section (cluster, jobs, deployments, costs, store, schedules) in one answer."""

    @tornado.web.authenticated
    async def get(self):
        self.finish(json.dumps(await snapshot()))


class SectionHandler(APIHandler):
    """``GET /lumi/api/{cluster,jobs,deployments,costs,store,schedules}``: one section."""

    @tornado.web.authenticated
    async def get(self, section: str):
        self.finish(json.dumps(await snapshot((section,))))


class ActionHandler(APIHandler):
    """``POST /lumi/api/jobs/{id}/cancel``, ``/lumi/api/deployments/{name}/{rollback,scale}``."""

    @tornado.web.authenticated
    async def post(self, kind: str, ident: str, action: str):
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, "the request body must be JSON") from None
        route = f"/v1/{'jobs' if kind == 'jobs' else 'endpoints'}/{quote(ident, safe='')}/{action}"
        try:
            status, payload = await _call(read_gateway(), "POST", route, body)
        except NotConnected as e:
            self.finish(json.dumps({"connected": False, "hint": str(e)}))
            return
        if status >= 400:
            self.set_status(status)
            self.finish(json.dumps({"connected": True, "error": _message(status, payload)}))
            return
        self.finish(json.dumps({"connected": True, "result": payload}))


def start_backend(log) -> threading.Thread:
    """Run ``lumi serve`` in the background: it starts the local backend, or finds it running."""

    def serve() -> None:
        done = subprocess.run([sys.executable, "-m", "lumi.cli", "serve"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if done.returncode == 0:
            log.info("%s", done.stdout.strip())
        else:
            log.warning("Lumi could not start its local backend: %s", (done.stderr or done.stdout).strip()[-2000:])

    thread = threading.Thread(target=serve, name="lumi-serve", daemon=True)
    thread.start()
    return thread


def _load_jupyter_server_extension(server_app) -> None:
    """Register the ``/lumi/api`` handlers on the Jupyter server and start the local backend."""
    base = url_path_join(server_app.web_app.settings["base_url"], "lumi", "api")
    sections = "|".join(SECTIONS)
    server_app.web_app.add_handlers(".*$", [
        (url_path_join(base, "snapshot"), SnapshotHandler),
        (url_path_join(base, f"({sections})"), SectionHandler),
        (url_path_join(base, r"(jobs)/([^/]+)/(cancel)"), ActionHandler),
        (url_path_join(base, r"(deployments)/([^/]+)/(rollback|scale)"), ActionHandler),
    ])
    server_app.log.info("Lumi panel API at %s (gateway from %s)", base, gateway_file())
    try:
        autostart = setting("LUMI_AUTOSTART")
    except LumiError as e:  # the panel still comes up, and says why no backend started
        server_app.log.warning("Lumi does not start the local backend: %s", e)
        autostart = False
    if autostart:
        start_backend(server_app.log)
