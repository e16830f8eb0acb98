"""The model store: immutable, content-addressed graph versions and per-endpoint history, via fsspec.

Layout under the root (a local directory by default, ``s3://bucket/prefix`` through s3fs)::

    blobs/<sha256>.lumi        the exported file; its name is the SHA-256 of its bytes, never rewritten
    graphs/<graph hash>        the blob holding that graph (so identical graphs dedupe to one blob)
    endpoints/<name>.json      {"name", "tenant", "active_version", "versions": [...], "config": {...}}

A version is ``{"version", "sha256", "graph_hash", "created_at"}``; versions are numbered from 1
per endpoint and never change. Rollback moves ``active_version``. Reading a blob whose bytes no
longer hash to its name is refused with :class:`~lumi.errors.TamperedModel` (a ``FormatError``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path

import fsspec

from ..errors import LumiError, NotFound, TamperedModel
from ..graph.fileformat import dumps, loads
from ..graph.ir import Graph
from ..runtime.config import setting
from .keys import write_private

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise LumiError(
            f"endpoint name {name!r} is not allowed: use 1-63 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit"
        )
    return name


def default_root() -> str:
    """``$LUMI_MODEL_STORE`` if set, else ``$LUMI_HOME/models``."""
    return setting("LUMI_MODEL_STORE")


class ModelStore:
    """Versions of exported graphs in object storage. ``ModelStore("s3://bucket/models", endpoint_url=...)``."""

    def __init__(self, root: str | None = None, **storage_options):
        self.url = root or default_root()
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = self.root.rstrip("/")
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        self._local = "file" in protocols
        if self._local:  # the store is private to its owner: 0700 folders, 0600 files
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.chmod(self.root, 0o700)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _read_json(self, path: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def _write(self, path: str, data: bytes) -> None:
        if not self._local:
            self.fs.pipe_file(path, data)  # an object store's PUT is atomic already
            return
        write_private(Path(path), data)

    # -- blobs ------------------------------------------------------------------------------
    def put(self, graph: Graph | bytes) -> str:
        """Store a graph (or ``.lumi`` bytes) once; return the SHA-256 naming its blob."""
        if isinstance(graph, bytes | bytearray):
            data = bytes(graph)
            graph = loads(data)
        else:
            data = None
        index = self._path("graphs", graph.hash)
        with contextlib.suppress(FileNotFoundError, NotFound, TamperedModel):  # else new, or damaged: store afresh
            sha = self.fs.cat_file(index).decode().strip()
            self.read_bytes(sha)
            return sha
        data = data if data is not None else dumps(graph)
        sha = hashlib.sha256(data).hexdigest()
        blob = self._path("blobs", f"{sha}.lumi")
        try:
            self.read_bytes(sha)
        except (NotFound, TamperedModel):
            self._write(blob, data)
        self._write(index, sha.encode())
        return sha

    def read_bytes(self, sha: str) -> bytes:
        """A blob's bytes, refused when they no longer hash to its name."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise NotFound(f"{sha!r} is not a SHA-256 digest")
        try:
            data = self.fs.cat_file(self._path("blobs", f"{sha}.lumi"))
        except FileNotFoundError:
            raise NotFound(f"no stored model {sha[:12]}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise TamperedModel(
                f"stored model {sha[:12]} was modified (its bytes hash to {actual[:12]}); refusing "
                "to serve it. Redeploy the model to store a fresh copy."
            )
        return data

    def size(self, sha: str) -> int:
        """Bytes of a stored blob (0 when it is gone)."""
        try:
            return int(self.fs.size(self._path("blobs", f"{sha}.lumi")))
        except FileNotFoundError:
            return 0

    def get(self, sha: str) -> Graph:
        return loads(self.read_bytes(sha))

    # -- endpoints --------------------------------------------------------------------------
    def endpoint(self, name: str) -> dict | None:
        """The endpoint's record, or None."""
        return self._read_json(self._path("endpoints", f"{check_name(name)}.json"))

    def require(self, name: str) -> dict:
        record = self.endpoint(name)
        if record is None:
            raise NotFound(f"no endpoint named {name!r}; deploy one with %%deploy {name} or `lumi deploy`")
        return record

    def endpoints(self) -> list[dict]:
        folder = self._path("endpoints")
        self.fs.invalidate_cache(folder)
        try:
            paths = sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".json"))
        except FileNotFoundError:
            return []
        return [r for r in map(self._read_json, paths) if r is not None]

    def save_endpoint(self, record: dict) -> dict:
        self._write(self._path("endpoints", f"{check_name(record['name'])}.json"),
                    json.dumps(record, indent=1).encode())
        return record

    def deploy(self, name: str, graph: Graph | bytes, tenant: str = "local", config: dict | None = None,
               ) -> tuple[dict, dict, bool]:
        """Add a version (or reuse an identical one) and make it active.

        Returns ``(record, version, created)``; ``created`` is False when the graph equals an
        existing version of this endpoint, which then becomes active again.
        """
        check_name(name)
        sha = self.put(graph)
        record = self.endpoint(name) or {"name": name, "tenant": tenant, "active_version": None, "versions": [],
                                         "config": {}}
        if record["tenant"] != tenant:
            raise LumiError(f"endpoint {name!r} belongs to tenant {record['tenant']!r}; pick another name")
        record["config"] = {**record["config"], **(config or {})}
        same = [v for v in record["versions"] if v["sha256"] == sha]
        if same:
            version, created = same[0], False
        else:
            graph_hash = (graph if isinstance(graph, Graph) else loads(bytes(graph))).hash
            version = {"version": len(record["versions"]) + 1, "sha256": sha, "graph_hash": graph_hash,
                       "created_at": time.time()}
            record["versions"].append(version)
            created = True
        record["active_version"] = version["version"]
        return self.save_endpoint(record), version, created

    def version(self, record: dict, number: int | None = None) -> dict:
        """A version of the endpoint (the active one by default)."""
        number = record["active_version"] if number is None else int(number)
        for v in record["versions"]:
            if v["version"] == number:
                return v
        raise NotFound(f"endpoint {record['name']!r} has no version {number}; versions are "
                       f"{[v['version'] for v in record['versions']]}")

    def rollback(self, name: str, version: int | None = None) -> dict:
        """Make ``version`` active (default: the version before the active one)."""
        record = self.require(name)
        if version is None:
            older = [v["version"] for v in record["versions"] if v["version"] < record["active_version"]]
            if not older:
                raise LumiError(f"endpoint {name!r} has no version before {record['active_version']} to roll back to")
            version = max(older)
        target = self.version(record, version)
        self.read_bytes(target["sha256"])  # never point at a file that was modified
        record["active_version"] = target["version"]
        return self.save_endpoint(record)

    def delete(self, name: str) -> None:
        """Forget the endpoint; blobs stay (they are immutable and may be shared)."""
        self.require(name)
        self.fs.rm(self._path("endpoints", f"{name}.json"))
