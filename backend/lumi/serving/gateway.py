"""The HTTP gateway: FastAPI on uvicorn, running in the detached Ray actor ``"lumi-gateway"``.

Routes: Lumi's ``/v1`` (endpoints, deploy, infer, rollback, scale, jobs, cluster, costs, store, schedules), the
Open Inference Protocol's ``/v2`` (health, model metadata, readiness, infer), ``/openapi.json``.
Every ``/v1`` route and the ``/v2/models`` routes need ``Authorization: Bearer <key>``; keys (hashed in
``$LUMI_HOME/keys.toml``) map to a tenant and the highest tier it may use. Another tenant's objects
answer 404 like missing ones; bodies are pydantic models (422), checked for size and nesting before
parsing; errors never name server paths (docs/security.md). :func:`ensure_gateway` starts the gateway
if needed and writes ``$LUMI_HOME/gateway.json`` (0600) = ``{"url", "key", "key_file"}``.

In this module, top to bottom: body and error helpers, the auth dependency (``Auth``) and the service
dependency (``Served``: the :class:`Service` in ``app.state``), the ``v1`` router (endpoints, inference,
jobs, cluster, costs, store, schedules), the ``v2`` router (the Open Inference Protocol), :func:`create_app` (state,
exception handlers, the OpenAPI document, both routers), then the actor and :func:`ensure_gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Annotated, TypeVar

import httpx
import ray
import uvloop
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from ..cron import listing as schedule_rows
from ..errors import (
    Busy,
    ExecutionError,
    Forbidden,
    LumiError,
    NotFound,
    QuotaExceeded,
    TamperedModel,
    TooLarge,
    Unavailable,
)
from ..graph.fileformat import parse_json
from ..runtime.cluster import NAMESPACE, ensure_connected, on_the_head
from ..runtime.config import SETTINGS, load_config, lumi_environment, setting
from ..runtime.head import gateway_file
from ..storage.catalog import stores
from ..version import __version__
from . import codec, listener
from .keys import Key, Keyring, admin_key, keys_path, write_private
from .service import Service
from .store import ModelStore

ACTOR_NAME = "lumi-gateway"
MAX_BODY_BYTES = SETTINGS["LUMI_MAX_BODY_BYTES"].default
MAX_MODEL_BYTES = 2 << 30
MAX_CONTROL_BYTES = 64 << 10  # rollback and scale bodies
AUTH_FAILURES = (20, 60.0)  # wrong keys allowed per client address per window (seconds)
BODY_MODELS: tuple[type[BaseModel], ...] = (codec.InferRequest, codec.V2InferRequest, codec.RollbackRequest,
                                            codec.ScaleRequest)
log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

_bearer = HTTPBearer(auto_error=False, description="A Lumi API key (`lumi keys create TENANT --tier TIER`)")


def _error(e: Exception) -> HTTPException:
    """The HTTP status for a Lumi error."""
    if isinstance(e, Unavailable):
        return HTTPException(503, str(e), headers={"Retry-After": str(max(1, round(e.retry_after)))})
    if isinstance(e, Busy):
        return HTTPException(429, str(e), headers={"Retry-After": str(max(1, round(e.retry_after)))})
    statuses = ((NotFound, 404), (Forbidden | QuotaExceeded, 403), (TooLarge, 413),
                (ExecutionError | TamperedModel, 500), (LumiError, 400))
    return HTTPException(next(code for kind, code in statuses if isinstance(e, kind)), str(e))


async def _body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is {int(declared)} bytes; the limit is {limit} bytes (split the batch)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is over the {limit}-byte limit (split the batch)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: Request, model: type[M], optional: bool = False) -> M:
    """A small JSON body: size and nesting checked before parsing, then validated by ``model`` (422)."""
    data = await _body(request, MAX_CONTROL_BYTES)
    if optional and not data.strip():
        return model()
    return model.model_validate(parse_json(data, "the body", LumiError))


def _json_schema(model: type[BaseModel], required: bool = True, **more) -> dict:
    """``openapi_extra`` naming ``model``'s schema (kept in the document's components) as the JSON body."""
    ref = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    return {"requestBody": {"required": required, "content": {"application/json": ref, **more}}}


class AuthThrottle:
    """Counts wrong keys per client address; past ``limit`` in ``window`` seconds, that address waits."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.failures.get(address, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: now)."""
        now = time.monotonic()
        times = self._recent(address, now)
        return self.window - (now - times[0]) if len(times) >= self.limit else 0.0

    def fail(self, address: str) -> None:
        now = time.monotonic()
        if len(self.failures) > 10_000:  # forget quiet addresses so the table stays small
            self.failures = {a: t for a, t in self.failures.items() if self._recent(a, now)}
        self.failures[address] = self._recent(address, now)
        self.failures[address].append(now)


async def _auth(request: Request,
                credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Key:
    throttle: AuthThrottle = request.app.state.auth_throttle
    address = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(address)
    if wait > 0:
        raise HTTPException(429, f"too many wrong keys from {address}; try again in {wait:.0f} s",
                            headers={"Retry-After": str(max(1, round(wait)))})
    key = request.app.state.keyring.lookup(credentials.credentials if credentials else None)
    if key is None:
        if credentials:
            throttle.fail(address)
        raise HTTPException(401, "missing or unknown key: send Authorization: Bearer <key> (an admin creates keys "
                            "with `lumi keys create`)", headers={"WWW-Authenticate": "Bearer"})
    return key


Auth = Annotated[Key, Depends(_auth)]


def get_service(request: Request) -> Service:
    """The :class:`Service` that :func:`create_app` put in ``app.state``: every route's one way to it."""
    return request.app.state.service


Served = Annotated[Service, Depends(get_service)]


# -- /v1 endpoints ---------------------------------------------------------------------------------
v1 = APIRouter(prefix="/v1")


@v1.get("/endpoints", tags=["endpoints"])
async def list_endpoints(key: Auth, service: Served) -> list[dict]:
    return [service.describe(r) for r in service.records(key)]


@v1.get("/endpoints/{name}", tags=["endpoints"])
async def get_endpoint(name: str, key: Auth, service: Served) -> dict:
    return service.describe(service.record(name, key))


@v1.put("/endpoints/{name}", tags=["endpoints"], openapi_extra={"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def deploy(name: str, request: Request, key: Auth, service: Served,
                 gpu: Annotated[str | None, Query(max_length=32)] = None,
                 min_replicas: Annotated[int | None, Query(ge=0, le=1024)] = None,
                 max_replicas: Annotated[int | None, Query(ge=1, le=1024)] = None,
                 max_batch: Annotated[int | None, Query(ge=1, le=65536)] = None,
                 max_wait_ms: Annotated[float | None, Query(ge=0, le=60_000, allow_inf_nan=False)] = None,
                 scaledown_window: Annotated[float | None, Query(ge=0, le=7 * 86400, allow_inf_nan=False)] = None,
                 tier: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """Deploy a `.lumi` file (the body) as a new version of `name`, or reactivate an identical one.
    `tier` may be the key's own tier or a lower one (any for an admin key)."""
    if tier is not None:
        load_config().tier(tier)
    data = await _body(request, MAX_MODEL_BYTES)
    options = dict(gpu=gpu, min_replicas=min_replicas, max_replicas=max_replicas, max_batch=max_batch,
                   max_wait_ms=max_wait_ms, scaledown_window=scaledown_window, tier=tier)
    return service.deploy(name, data, key, {k: v for k, v in options.items() if v is not None})


@v1.post("/endpoints/{name}/rollback", tags=["endpoints"],
         openapi_extra=_json_schema(codec.RollbackRequest, required=False))
async def rollback(name: str, request: Request, key: Auth, service: Served) -> dict:
    """Make a version active (body `{"version": n}`; default: the one before the active version)."""
    body = await _json_body(request, codec.RollbackRequest, optional=True)
    return service.rollback(name, key, body.version)


@v1.post("/endpoints/{name}/scale", tags=["endpoints"], openapi_extra=_json_schema(codec.ScaleRequest))
async def scale(name: str, request: Request, key: Auth, service: Served) -> dict:
    """Set the replica count now (body `{"replicas": n}`); the autoscaler carries on from there."""
    body = await _json_body(request, codec.ScaleRequest)
    return service.scale(name, key, body.replicas)


@v1.delete("/endpoints/{name}", tags=["endpoints"])
async def delete(name: str, key: Auth, service: Served) -> dict:
    service.delete(name, key)
    return {"deleted": name}


async def _infer_v1(service: Service, name: str, request: Request, key: Key, version: int | None) -> Response:
    data = await _body(request, request.app.state.max_body)
    live = service.resolve(name, key, version)
    binary = codec.is_safetensors(request.headers.get("content-type"))
    arrays = codec.decode_safetensors(data, live.graph) if binary else codec.decode_json(data, live.graph)
    result = await service.infer(live, key, arrays)
    headers = {"X-Lumi-Version": str(live.version["version"]), "X-Lumi-Batch-Requests":
               str(result.batch_requests)}
    if binary or codec.is_safetensors(request.headers.get("accept")):
        return Response(codec.encode_safetensors(live.graph, result.outputs), headers=headers,
                        media_type="application/octet-stream")
    return JSONResponse(codec.encode_json(live.graph, result.outputs, model=name,
                                          version=live.version["version"]), headers=headers)


_INFER_DOC = _json_schema(codec.InferRequest, **{"application/octet-stream": {"schema": {
    "type": "string", "format": "binary", "description": "safetensors, one tensor per input"}}})


@v1.post("/endpoints/{name}/infer", tags=["inference"], openapi_extra=_INFER_DOC)
async def infer(name: str, request: Request, key: Auth, service: Served) -> Response:
    """Run the active version on a JSON body `{"inputs": {name: nested lists}}` or a safetensors body.
    Non-finite outputs are written "NaN", "Infinity", "-Infinity" (as proto3's JSON mapping does)."""
    return await _infer_v1(service, name, request, key, None)


@v1.post("/endpoints/{name}/versions/{version}/infer", tags=["inference"], openapi_extra=_INFER_DOC)
async def infer_version(name: str, version: int, request: Request, key: Auth, service: Served) -> Response:
    """Run a specific version (active or not)."""
    return await _infer_v1(service, name, request, key, version)


# -- /v1 jobs, cluster, costs (the dispatcher's views) ---------------------------------------------
def _own(items: list[dict], key: Key) -> list[dict]:
    return [j for j in items if key.admin or j.get("tenant") == key.tenant]


@v1.get("/jobs", tags=["jobs"])
async def jobs(key: Auth, service: Served, limit: Annotated[int, Query(ge=1, le=2000)] = 200) -> list[dict]:
    return _own(await service.ask(service.dispatcher().jobs.remote(limit)), key)


async def _owned_job(service: Service, job_id: str, key: Key) -> dict:
    try:
        job = await service.ask(service.dispatcher().status.remote(job_id))
    except ray.exceptions.RayTaskError:
        job = None
    if not job or not (key.admin or job.get("tenant") == key.tenant):  # another tenant's job: as if missing
        raise HTTPException(404, f"no job {job_id[:64]!r}")
    return job


@v1.get("/jobs/{job_id}", tags=["jobs"])
async def job(job_id: str, key: Auth, service: Served) -> dict:
    return await _owned_job(service, job_id, key)


@v1.post("/jobs/{job_id}/cancel", tags=["jobs"])
async def cancel(job_id: str, key: Auth, service: Served) -> dict:
    await _owned_job(service, job_id, key)
    return await service.ask(service.dispatcher().cancel.remote(job_id))


@v1.get("/cluster", tags=["cluster"])
async def cluster(key: Auth, service: Served) -> dict:
    """Admins: every worker, queue and tier. Others: aggregate capacity and their own active jobs."""
    snapshot = await service.ask(service.dispatcher().cluster.remote())
    if key.admin:
        return snapshot
    workers = [w for w in snapshot["workers"] if w.get("state") != "dead"]
    active = [j for j in _own(await service.ask(service.dispatcher().jobs.remote(2000)), key)
              if j.get("state") in ("queued", "running")]
    return {"capacity": {"workers": len(workers), "busy": sum(w.get("state") != "idle" for w in workers),
                         "fallback": snapshot["fallback"]}, "jobs": active}


@v1.get("/costs", tags=["cluster"])
async def costs(key: Auth, service: Served) -> dict:
    report = await service.ask(service.dispatcher().costs.remote())
    if key.admin:
        return report
    records = _own(report.get("records", []), key)
    mine = lambda field: {k: v for k, v in report.get(field, {}).items()  # noqa: E731
                          if any(r.get(field.removeprefix("by_")) == k for r in records)}
    return {"total": sum(r.get("cost", 0.0) for r in records), "by_tenant": mine("by_tenant"),
            "by_tier": {}, "by_endpoint": mine("by_endpoint"), "records": records}


# -- /v1 store, schedules (the panel's other views) --------------------------------------------------
def _stores(tenant: str | None) -> dict:
    return {f"{kind}s": stores(kind, tenant=tenant) for kind in ("dict", "queue", "volume")}


@v1.get("/store", tags=["store"])
async def store(key: Auth) -> dict:
    """`{"dicts", "queues", "volumes"}`: one row per store (name, tenant, keys / length and maxsize / files,
    bytes), read from the store's folder in a thread. Admins: every tenant's; others: their own."""
    return await asyncio.to_thread(_stores, None if key.admin else key.tenant)


@v1.get("/schedules", tags=["schedules"])
async def schedules(key: Auth) -> dict:
    """`{"schedules"}`: every schedule (cron, state, next run, target, its last runs). Admins: every tenant's;
    others: their own."""
    return {"schedules": await asyncio.to_thread(schedule_rows, None if key.admin else key.tenant)}


# -- /v2: the Open Inference Protocol ---------------------------------------------------------------
v2 = APIRouter(prefix="/v2")


@v2.get("/health/live", tags=["v2"])
async def live() -> dict:
    return {"live": True}


@v2.get("/health/ready", tags=["v2"])
async def ready() -> dict:
    return {"ready": True}


@v2.get("", tags=["v2"])
async def server_metadata() -> dict:
    return {"name": "lumi", "version": __version__, "extensions": ["binary_tensor_data"]}


def _metadata(service: Service, name: str, key: Key, version: int | None) -> dict:
    record = service.record(name, key)
    graph = service.live(record, version).graph
    return {"name": name, "versions": [str(v["version"]) for v in record["versions"]], "platform": "lumi",
            "inputs": [codec.v2_tensor_spec(*s) for s in graph.input_specs()],
            "outputs": [codec.v2_tensor_spec(*s) for s in graph.output_specs()]}


@v2.get("/models/{name}", tags=["v2"])
async def model_metadata(name: str, key: Auth, service: Served) -> dict:
    return _metadata(service, name, key, None)


@v2.get("/models/{name}/versions/{version}", tags=["v2"])
async def model_version_metadata(name: str, version: int, key: Auth, service: Served) -> dict:
    return _metadata(service, name, key, version)


def _model_ready(service: Service, name: str, key: Key, version: int | None) -> dict:
    record = service.record(name, key)
    service.store.version(record, version)
    return {"name": name, "ready": True}  # scaled to zero is still ready: the next request starts a replica


@v2.get("/models/{name}/ready", tags=["v2"])
async def ready_model(name: str, key: Auth, service: Served) -> dict:
    return _model_ready(service, name, key, None)


@v2.get("/models/{name}/versions/{version}/ready", tags=["v2"])
async def ready_model_version(name: str, version: int, key: Auth, service: Served) -> dict:
    return _model_ready(service, name, key, version)


async def _infer_v2(service: Service, name: str, request: Request, key: Key, version: int | None) -> Response:
    data = await _body(request, request.app.state.max_body)
    live = service.resolve(name, key, version)
    length = codec.header_length(request.headers.get(codec.HEADER_LENGTH), len(data))
    arrays, doc = codec.decode_v2(data, length, live.graph)
    result = await service.infer(live, key, arrays)
    body, head = codec.encode_v2(live.graph, result.outputs, doc, name, live.version["version"])
    if head is None:
        return Response(body, media_type="application/json")
    return Response(body, media_type="application/octet-stream", headers={codec.HEADER_LENGTH: str(head)})


_V2_INFER_DOC = _json_schema(codec.V2InferRequest, **{"application/octet-stream": {"schema": {
    "type": "string", "format": "binary", "description": "Triton's binary tensor extension: a JSON header of "
    "Inference-Header-Content-Length bytes, then the tensors"}}})


@v2.post("/models/{name}/infer", tags=["v2"], openapi_extra=_V2_INFER_DOC)
async def v2_infer(name: str, request: Request, key: Auth, service: Served) -> Response:
    return await _infer_v2(service, name, request, key, None)


@v2.post("/models/{name}/versions/{version}/infer", tags=["v2"], openapi_extra=_V2_INFER_DOC)
async def v2_infer_version(name: str, version: int, request: Request, key: Auth, service: Served) -> Response:
    return await _infer_v2(service, name, request, key, version)


# -- the app -----------------------------------------------------------------------------------------
async def _lumi_error(request: Request, e: LumiError) -> JSONResponse:
    h = _error(e)
    return JSONResponse({"detail": h.detail}, h.status_code, headers=h.headers)


async def _invalid_body(request: Request, e: ValidationError) -> Response:
    """A body that a route validated itself answers 422 as FastAPI's own request validation does."""
    return await request.app.exception_handlers[RequestValidationError](
        request, RequestValidationError(e.errors(include_url=False, include_input=False, include_context=False)))


async def _internal_error(request: Request, e: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error ({type(e).__name__}); the gateway's log has the details"}, 500)


def create_app(service: Service, keyring: Keyring, max_body: int | None = None,
               auth_failures: tuple[int, float] = AUTH_FAILURES) -> FastAPI:
    """The gateway's FastAPI application over a :class:`Service`: the ``/v1`` and ``/v2`` routers."""
    app = FastAPI(title="Lumi gateway", version=__version__,
                  description="Serverless endpoints for Lumi graphs: Lumi's /v1 API and the Open Inference "
                              "Protocol (KServe v2) under /v2.")
    app.state.service = service
    app.state.keyring = keyring
    app.state.auth_throttle = AuthThrottle(*auth_failures)
    app.state.max_body = max_body or setting("LUMI_MAX_BODY_BYTES")
    app.add_exception_handler(LumiError, _lumi_error)
    app.add_exception_handler(ValidationError, _invalid_body)
    app.add_exception_handler(Exception, _internal_error)

    def openapi() -> dict:
        """FastAPI's schema plus the request body models that routes validate themselves."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            _, defs = models_json_schema([(m, "validation") for m in BODY_MODELS],
                                         ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    app.include_router(v1)
    app.include_router(v2)
    return app


@ray.remote(num_cpus=0, max_restarts=-1)
class GatewayActor:
    """Serves the HTTP API from a thread of its own: uvicorn, and the service's batchers and autoscaler, on that
    thread's event loop. ``__init__`` starts it, so a gateway that Ray restarts (it died) serves again on its
    own, at the port it had: the one configured, else the one ``gateway.json`` records."""

    def __init__(self, home: str, store_url: str, host: str, port: int, cluster_mode: bool, env: dict):
        os.environ.update(env)  # the creator's LUMI_* settings (replica CPUs, limits) apply here
        self.home, self.store_url, self.host, self.port = home, store_url, host, port
        self.cluster_mode = cluster_mode
        self.url: str | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        threading.Thread(target=self._serve, name="lumi-gateway", daemon=True).start()

    def start(self) -> str:
        """The gateway's URL, once it listens."""
        if not self.ready.wait(START_TIMEOUT_S):
            raise LumiError(f"the gateway did not start listening within {START_TIMEOUT_S:g} s")
        if self.error is not None:
            raise self.error
        return self.url

    def _serve(self) -> None:
        try:  # on uvloop, as uvicorn itself would run it (uvicorn[standard])
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._main())
        except BaseException as e:  # reported by start()
            self.error = e
            self.ready.set()

    async def _main(self) -> None:
        import uvicorn

        # embedded: the local backend's daemon holds the socket, so the port stays open while Ray restarts us
        sock = None if self.cluster_mode else listener.receive(self.home)
        sock = sock or _listen(self.host, self.port, recorded_port(Path(self.home) / "gateway.json"))
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        self.url = f"http://{shown}:{sock.getsockname()[1]}"
        service = Service(ModelStore(self.store_url), self.url, self.cluster_mode)
        service.start()
        app = create_app(service, Keyring(keys_path(self.home)))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.02)
        self.ready.set()
        await serving


START_TIMEOUT_S = 60.0


def recorded_port(path: Path) -> int | None:
    """The port of the gateway ``gateway.json`` names (an earlier start of this backend's gateway), if any."""
    try:
        return int(json.loads(path.read_text())["url"].rsplit(":", 1)[1].split("/")[0])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def gateway_socket() -> socket.socket:
    """A socket for the gateway of this ``LUMI_HOME``, bound as :func:`_listen` says, for the local backend's
    daemon to hold (``serving/listener.py``)."""
    return _listen(setting("LUMI_GATEWAY_HOST"), setting("LUMI_GATEWAY_PORT"), recorded_port(gateway_file()))


def _listen(host: str, port: int, recorded: int | None) -> socket.socket:
    """A socket bound to ``port`` (configured: it must be free), else to the recorded one when it is free (so
    printed URLs and ``lumi.Endpoint`` handles keep working across restarts), else to any free port."""
    if port:
        try:
            return _bound(host, port)
        except OSError as e:
            raise LumiError(f"the gateway cannot listen on {host}:{port} (LUMI_GATEWAY_PORT): {e}") from None
    if recorded:
        with contextlib.suppress(OSError):  # taken by something else since: another port, and gateway.json says so
            return _bound(host, recorded)
    return _bound(host, 0)


def _bound(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def gateway_info() -> dict | None:
    """``gateway.json`` if it names a gateway that answers, else None."""
    try:
        info = json.loads(gateway_file().read_text())
        r = httpx.get(f"{info['url']}/v2", timeout=2.0)
        if r.status_code == 200 and r.json().get("name") == "lumi":
            return info
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        pass
    return None


def _in_this_cluster(info: dict) -> bool:
    """Whether a recorded gateway runs in the Ray cluster this process is connected to (if it is)."""
    return not ray.is_initialized() or info.get("cluster") in (None, ray.get_runtime_context().gcs_address)


def ensure_gateway() -> dict:
    """Start the gateway in this Ray cluster if none answers; return ``{"url", "key"}``.

    Also writes ``$LUMI_HOME/gateway.json`` (``url``, ``key``, ``key_file``) for other processes
    (the Jupyter server, the ``lumi`` CLI, clients).
    """
    info = gateway_info()
    if info is not None and _in_this_cluster(info):
        return {"url": info["url"], "key": info["key"]}
    ensure_connected()
    config = load_config()
    home = str(config.home)
    key = admin_key(home)
    actor = GatewayActor.options(name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", **on_the_head(),
                                 get_if_exists=True).remote(
        home, setting("LUMI_MODEL_STORE"), setting("LUMI_GATEWAY_HOST"), setting("LUMI_GATEWAY_PORT"),
        bool(setting("LUMI_RAY_ADDRESS")), lumi_environment())
    url = ray.get(actor.start.remote())
    path = gateway_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    cluster = ray.get_runtime_context().gcs_address
    write_private(path, json.dumps({"url": url, "key": key, "key_file": str(keys_path(home)),  # 0600
                                    "cluster": cluster}).encode())
    return {"url": url, "key": key}
