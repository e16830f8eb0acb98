"""Opening the detached, named Ray actor behind a Dict or Queue (namespace ``lumi``, restarted by Ray)."""

from __future__ import annotations

import json
import time

import ray

from ..runtime.cluster import NAMESPACE, ensure_connected
from ._persist import Folder
from ._scope import Scope, not_found


def actor_name(scope: Scope) -> str:
    return f"lumi-{scope.kind.lower()}:{scope.tenant}:{scope.name}"


def base(scope: Scope) -> str:
    """Where the store persists, relative to the root: ``dicts/<tenant>/<name>``."""
    return f"{scope.kind.lower()}s/{scope.tenant}/{scope.name}"


def open_actor(cls: type, scope: Scope, folder: Folder, create: bool, *args):
    """The store's actor, started (it loads what was persisted) when none runs; with ``create=False`` only a
    store that exists (running, or persisted) opens. Ray restarts the actor when it dies, and retries the
    calls it was running, so a call made across a restart is at least once."""
    ensure_connected()
    name = actor_name(scope)
    if not create:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            if not folder.exists(f"{base(scope)}/meta.json"):
                raise not_found(scope.kind, scope.name, scope.caller) from None
    handle = cls.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, max_restarts=-1,
                         max_task_retries=-1, num_cpus=0).remote(scope.tenant, scope.name, folder.url,
                                                                 folder.options, *args)
    if ray.get(handle.stat.remote())["tenant"] != scope.tenant:  # the actor records its owner
        raise not_found(scope.kind, scope.name, scope.caller)
    return handle


def read_meta(folder: Folder, rel: str, tenant: str, name: str, **fields) -> dict:
    """The store's ``meta.json`` (its owner and settings), written on first start."""
    try:
        return json.loads(folder.read(f"{rel}/meta.json"))
    except FileNotFoundError:
        meta = {"tenant": tenant, "name": name, "created_at": time.time(), **fields}
        folder.write(f"{rel}/meta.json", json.dumps(meta).encode())
        return meta
