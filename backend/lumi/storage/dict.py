"""``lumi.Dict``: a named dictionary shared by notebooks, jobs and workers, kept by a detached Ray actor and
written through to the store folder on every change (one file per key), so it survives the actor's restart."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import ray

from ..errors import InvalidName, MissingKey
from . import _codec
from ._actor import base, open_actor, read_meta
from ._persist import Folder
from ._scope import MAX_KEY_CHARS, default_options, default_root, max_value_bytes, resolve

_MISSING = object()


def _file(key: str | int) -> str:
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:40]


class DictActor:
    """Holds the items in memory as ``key -> (kind, bytes)``; it never decodes them (so never unpickles)."""

    def __init__(self, tenant: str, name: str, url: str, options: dict):
        self.folder, self.base = Folder(url, options), f"dicts/{tenant}/{name}"
        self.meta = read_meta(self.folder, self.base, tenant, name)
        found = []
        for entry in self.folder.names(f"{self.base}/items", files_only=True):
            header, _, data = self.folder.read(f"{self.base}/items/{entry}").partition(b"\n")
            header = json.loads(header)
            found.append((header["seq"], header["key"], header["kind"], data))
        found.sort(key=lambda item: item[0])
        self.items = {key: (seq, kind, data) for seq, key, kind, data in found}
        self.seq = max((item[0] for item in found), default=-1) + 1

    def stat(self) -> dict:
        return {"name": self.meta["name"], "tenant": self.meta["tenant"], "keys": len(self.items),
                "bytes": sum(len(item[2]) for item in self.items.values())}

    def get(self, key):
        item = self.items.get(key)
        return None if item is None else item[1:]

    def contains(self, key) -> bool:
        return key in self.items

    def keys(self) -> list:
        return list(self.items)

    def set(self, key, kind: str, data: bytes) -> None:
        seq = self.items[key][0] if key in self.items else self.seq
        self.seq = max(self.seq, seq + 1)
        header = json.dumps({"key": key, "kind": kind, "seq": seq}).encode()
        self.folder.write(f"{self.base}/items/{_file(key)}", header + b"\n" + data)
        self.items[key] = (seq, kind, data)

    def pop(self, key, arrays_only: bool = False):
        """The item, removed; None when missing. With ``arrays_only`` (a caller of another tenant) a pickled value
        stays: its kind comes back without its bytes, and the caller refuses it."""
        if key not in self.items:
            return None
        if arrays_only and self.items[key][1] == "pickle":
            return "pickle", b""
        self.folder.remove(f"{self.base}/items/{_file(key)}")
        return self.items.pop(key)[1:]


_Actor = ray.remote(DictActor)


def _check_key(key) -> str | int:
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise InvalidName(f"Dict keys are str or int, not {type(key).__name__}")
    if isinstance(key, str) and len(key) > MAX_KEY_CHARS:
        raise InvalidName(f"Dict key of {len(key)} characters is too long: at most {MAX_KEY_CHARS}")
    return key


class Dict:
    """``lumi.Dict(name)``: ``d[k]``, ``d[k] = v``, ``del d[k]``, ``k in d``, ``len(d)``, ``keys()``, ``get``,
    ``pop``. Keys are str or int; arrays are stored as safetensors, other values by cloudpickle.

    The tenant is the key's (``key=``), else ``$LUMI_TENANT``, else ``local``; ``tenant=`` opens another
    tenant's Dict for an admin only. ``create=False`` opens only a Dict that exists. ``root`` and
    ``storage_options`` say where it persists (default ``$LUMI_STORE``, else ``$LUMI_HOME/store``) when it is
    created."""

    def __init__(self, name: str, *, tenant: str | None = None, key: str | None = None, create: bool = True,
                 root: str | None = None, storage_options: dict | None = None):
        self.scope = resolve("Dict", name, tenant, key)
        self.name, self.tenant = name, self.scope.tenant
        folder = Folder(root or default_root(), default_options() if storage_options is None else storage_options)
        self._actor = open_actor(_Actor, self.scope, folder, create)
        self.url = folder.path(base(self.scope))

    def _decode(self, key, item):
        return _codec.decode(*item, trusted=self.scope.caller == self.tenant, what=f"Dict {self.name!r} key {key!r}")

    def __getitem__(self, key):
        item = ray.get(self._actor.get.remote(_check_key(key)))
        if item is None:
            raise MissingKey(f"Dict {self.name!r} has no key {key!r}")
        return self._decode(key, item)

    def get(self, key, default=None):
        """``d[key]``, or ``default`` when the key is missing."""
        item = ray.get(self._actor.get.remote(_check_key(key)))
        return default if item is None else self._decode(key, item)

    def __setitem__(self, key, value) -> None:
        kind, data = _codec.encode(value, f"the value for Dict {self.name!r} key {key!r}", max_value_bytes())
        ray.get(self._actor.set.remote(_check_key(key), kind, data))

    def __delitem__(self, key) -> None:
        if ray.get(self._actor.pop.remote(_check_key(key))) is None:
            raise MissingKey(f"Dict {self.name!r} has no key {key!r}")

    def pop(self, key, default=_MISSING):
        """Remove ``key`` and return its value (or ``default``; without one a missing key raises ``MissingKey``)."""
        item = ray.get(self._actor.pop.remote(_check_key(key), self.scope.caller != self.tenant))
        if item is None:
            if default is _MISSING:
                raise MissingKey(f"Dict {self.name!r} has no key {key!r}")
            return default
        return self._decode(key, item)

    def __contains__(self, key) -> bool:
        return ray.get(self._actor.contains.remote(_check_key(key)))

    def __len__(self) -> int:
        return ray.get(self._actor.stat.remote())["keys"]

    def keys(self) -> list:
        """The keys, in insertion order."""
        return ray.get(self._actor.keys.remote())

    def __iter__(self) -> Iterator:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"lumi.Dict({self.name!r}, tenant={self.tenant!r})"
