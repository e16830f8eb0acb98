"""``lumi.Endpoint``: a deployed endpoint's handle in any Python process, and ``deploy`` over HTTP."""

from __future__ import annotations

import time

import httpx
import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..errors import Busy, LumiError, NotFound, ShapeError
from ..graph.fileformat import dumps
from ..graph.ir import Graph

TIMEOUT_S = 120.0
RECONNECT_S = 30.0  # how long a handle retries a gateway that does not answer (or answers 503)


def raise_for(r: httpx.Response) -> httpx.Response:
    """Turn a gateway error into the matching Lumi error."""
    if r.status_code < 400:
        return r
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        detail = r.text
    if r.status_code == 429:
        raise Busy(f"the endpoint is busy: {detail}", float(r.headers.get("Retry-After", 1)))
    if r.status_code == 404:
        raise NotFound(detail)
    if r.status_code == 400:
        raise ShapeError(detail)
    raise LumiError(f"the gateway answered {r.status_code}: {detail}")


def unreachable(base: str, error: Exception, what: str = "the Lumi gateway") -> LumiError:
    """A gateway that does not answer, in Lumi's words: what is down and how to start it."""
    return LumiError(f"{what} at {base} does not answer ({type(error).__name__}): the Lumi backend that served it "
                     "has stopped. Start it with `lumi serve` (or run a %%remote cell); endpoints are kept in the "
                     "model store, so the new gateway serves them again.")


def _gateway(url: str | None, key: str | None) -> tuple[str, str]:
    if url is not None and key is not None:
        return url, key
    from .gateway import ensure_gateway, gateway_info

    info = gateway_info() or ensure_gateway()
    return url or info["url"], key or info["key"]


class Endpoint:
    """A deployed endpoint: ``handle(x)`` runs it and returns NumPy arrays (a tuple for several outputs).

    ``url`` may be the gateway's base URL or the endpoint's infer URL; without ``url``/``key``
    the local gateway (``$LUMI_HOME/gateway.json``) and its admin key are used. A gateway that does not
    answer is retried for ``reconnect_s`` seconds before the call fails.
    """

    def __init__(self, name: str, url: str | None = None, key: str | None = None, reconnect_s: float = RECONNECT_S):
        if url is not None and "/v1/endpoints/" in url:
            url = url.split("/v1/endpoints/")[0]
        self.name = name
        self._follows_local = url is None  # follow the local backend's gateway when it restarts elsewhere
        self.base, self.key = _gateway(url, key)
        self.base = self.base.rstrip("/")
        self._client = httpx.Client(timeout=TIMEOUT_S)
        self.reconnect_s = reconnect_s

    def _request(self, method: str, path: str, headers: dict | None = None, **kw) -> httpx.Response:
        """One gateway call; every call here is idempotent (inference runs pure graphs), so a gateway that does
        not answer, or answers 503, is retried with backoff for ``reconnect_s`` (it restarts on its own, at the
        same address); then it is a ``LumiError``. A handle on the local gateway follows ``gateway.json`` where
        it names a new one (the backend was restarted elsewhere)."""
        deadline, pause = time.monotonic() + self.reconnect_s, 0.25
        while True:
            try:
                r = self._client.request(method, self.base + path, headers={**self.headers, **(headers or {})}, **kw)
                if r.status_code != 503 or time.monotonic() > deadline:
                    return raise_for(r)
                wait = float(r.headers.get("Retry-After") or pause)
            except httpx.TransportError as e:
                from .gateway import gateway_info

                moved = gateway_info() if self._follows_local else None
                if moved is not None and moved["url"].rstrip("/") != self.base:
                    self.base, self.key = moved["url"].rstrip("/"), moved["key"]
                    continue
                if time.monotonic() > deadline:
                    raise unreachable(self.base, e, f"the gateway of endpoint {self.name!r}") from None
                wait = pause
            time.sleep(min(wait, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 2.0)

    @property
    def url(self) -> str:
        """The infer URL (POST JSON or safetensors here)."""
        return f"{self.base}/v1/endpoints/{self.name}/infer"

    @property
    def headers(self) -> dict:
        """The auth header this handle sends."""
        return {"Authorization": f"Bearer {self.key}"}

    def info(self) -> dict:
        """The endpoint as ``GET /v1/endpoints/{name}`` describes it."""
        return self._request("GET", f"/v1/endpoints/{self.name}").json()

    @property
    def version(self) -> int:
        """The active version."""
        return self.info()["active_version"]

    def __call__(self, *arrays, **named):
        """Run the endpoint on arrays (positionally in input order, or by input name)."""
        names = [i["name"] for i in self._inputs()]
        if len(arrays) > len(names):
            raise ShapeError(f"endpoint {self.name!r} takes {len(names)} inputs ({', '.join(names)}), "
                             f"got {len(arrays)}")
        tensors = {**dict(zip(names, arrays)), **named}
        body = st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
        r = self._request("POST", f"/v1/endpoints/{self.name}/infer", content=body,
                          headers={"Content-Type": "application/octet-stream"})
        received = st_load(r.content)
        outputs = [received[o["name"]] for o in self._outputs()]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _metadata(self) -> dict:
        if not hasattr(self, "_meta"):
            self._meta = self._request("GET", f"/v2/models/{self.name}").json()
        return self._meta

    def _inputs(self) -> list[dict]:
        return self._metadata()["inputs"]

    def _outputs(self) -> list[dict]:
        return self._metadata()["outputs"]

    def rollback(self, version: int | None = None) -> dict:
        """Make ``version`` active (default: the previous one)."""
        body = {} if version is None else {"version": version}
        self._meta_reset()
        return self._request("POST", f"/v1/endpoints/{self.name}/rollback", json=body).json()

    def _meta_reset(self) -> None:
        self.__dict__.pop("_meta", None)

    def __repr__(self) -> str:  # never the key: reprs end up in saved notebook outputs
        return f"<lumi.Endpoint {self.name} at {self.url}>"


def deploy(graph: Graph | bytes, name: str, url: str | None = None, key: str | None = None, **options) -> dict:
    """Upload a graph (or ``.lumi`` bytes) as a version of endpoint ``name``; returns the gateway's answer
    (``version``, ``url``, ``batching``, ...). Options: gpu, min_replicas, max_replicas, max_batch,
    max_wait_ms, scaledown_window, tier."""
    base, key = _gateway(url, key)
    data = graph if isinstance(graph, bytes) else dumps(graph)
    params = {k: v for k, v in options.items() if v is not None}
    start = time.monotonic()
    try:
        r = raise_for(httpx.put(f"{base.rstrip('/')}/v1/endpoints/{name}", content=data, params=params,
                                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"},
                                timeout=TIMEOUT_S))
    except httpx.TransportError as e:
        raise unreachable(base, e) from None
    return {**r.json(), "upload_s": time.monotonic() - start}
