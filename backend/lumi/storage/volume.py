"""``lumi.Volume``: files shared by the notebook and workers, in the store folder through fsspec
(``$LUMI_HOME/store/volumes/<tenant>/<name>/files/`` by default, ``s3://`` on a cluster). No actor."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import time
from pathlib import Path

from ..errors import InvalidName, PathNotFound
from ..runtime.config import load_config
from ._persist import Folder
from ._scope import default_options, default_root, not_found, resolve


def _clean(path: str, root_ok: bool = False) -> str:
    """A relative path inside the volume ('' for its root); absolute paths and '..' are refused."""
    if not isinstance(path, str) or "\x00" in path or path.startswith("/") or "\\" in path:
        raise InvalidName(f"Volume path {path!r} is not allowed: use a relative path with '/' between folders")
    clean = posixpath.normpath(path) if path else "."
    if clean == ".." or clean.startswith("../"):
        raise InvalidName(f"Volume path {path!r} leaves the volume")
    if clean == "." and not root_ok:
        raise InvalidName("a Volume path names a file: give one, like 'data/train.bin'")
    return "" if clean == "." else clean


class Volume:
    """``lumi.Volume(name)``: ``put(local, path)``, ``get(path, local)``, ``read_bytes``, ``read_text``,
    ``write_bytes``, ``write_text``, ``listdir``, ``exists``, ``remove``, and ``local_path(path)`` (a file to
    open on this machine: the file itself on a local root, a cached copy of a remote one). Tenant, ``create``,
    ``root`` and ``storage_options`` are as for ``lumi.Dict``."""

    def __init__(self, name: str, *, tenant: str | None = None, key: str | None = None, create: bool = True,
                 root: str | None = None, storage_options: dict | None = None):
        self.scope = resolve("Volume", name, tenant, key)
        self.name, self.tenant = name, self.scope.tenant
        self.folder = Folder(root or default_root(), default_options() if storage_options is None else storage_options)
        self.base = f"volumes/{self.tenant}/{name}"
        try:
            meta = json.loads(self.folder.read(f"{self.base}/meta.json"))
        except FileNotFoundError:
            if not create:
                raise not_found("Volume", name, self.scope.caller) from None
            meta = {"tenant": self.tenant, "name": name, "created_at": time.time()}
            self.folder.write(f"{self.base}/meta.json", json.dumps(meta).encode())
        if meta.get("tenant") != self.tenant:
            raise not_found("Volume", name, self.scope.caller)
        self.url = self.folder.path(f"{self.base}/files")

    def _rel(self, path: str, root_ok: bool = False) -> str:
        clean = _clean(path, root_ok)
        return f"{self.base}/files/{clean}" if clean else f"{self.base}/files"

    def _missing(self, path: str) -> PathNotFound:
        return PathNotFound(f"Volume {self.name!r} has no file {path!r}; volume.listdir() shows what it holds")

    def _file_info(self, path: str) -> dict:
        try:
            info = self.folder.info(self._rel(path))
        except FileNotFoundError:
            raise self._missing(path) from None
        if info.get("type") == "directory":
            raise PathNotFound(f"{path!r} in Volume {self.name!r} is a folder, not a file")
        return info

    def write_bytes(self, path: str, data: bytes) -> None:
        self.folder.write(self._rel(path), bytes(data))

    def write_text(self, path: str, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(path, text.encode(encoding))

    def read_bytes(self, path: str) -> bytes:
        try:
            return self.folder.read(self._rel(path))
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(path) from None

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(path).decode(encoding)

    def put(self, local: str | os.PathLike, path: str | None = None) -> str:
        """Upload a local file (or a folder, recursively) to ``path`` (default: its own name); returns ``path``."""
        local = Path(local)
        path = _clean(path if path is not None else local.name)
        if local.is_dir():
            for file in sorted(p for p in local.rglob("*") if p.is_file()):
                self.folder.upload(str(file), self._rel(posixpath.join(path, file.relative_to(local).as_posix())))
        elif local.is_file():
            self.folder.upload(str(local), self._rel(path))
        else:
            raise PathNotFound(f"no local file or folder {str(local)!r} to put in Volume {self.name!r}")
        return path

    def get(self, path: str, local: str | os.PathLike) -> str:
        """Download the file at ``path`` to ``local`` (into it, when ``local`` is a folder); returns where."""
        self._file_info(path)
        local = Path(local)
        target = local / posixpath.basename(_clean(path)) if local.is_dir() else local
        self.folder.download(self._rel(path), str(target))
        return str(target)

    def listdir(self, path: str = "") -> list[str]:
        """Names directly under ``path`` (the volume's root by default), folders ending in '/'."""
        rel = self._rel(path, root_ok=True)
        entries = self.folder.entries(rel)
        if not entries and _clean(path, root_ok=True) and not self.folder.exists(rel):
            raise PathNotFound(f"Volume {self.name!r} has no folder {path!r}")
        return sorted(e["name"] + ("/" if e.get("type") == "directory" else "") for e in entries)

    def exists(self, path: str) -> bool:
        return self.folder.exists(self._rel(path))

    def remove(self, path: str, recursive: bool = False) -> None:
        """Delete a file (a folder and all in it with ``recursive=True``)."""
        rel = self._rel(path)
        if not self.folder.exists(rel):
            raise self._missing(path)
        if self.folder.info(rel).get("type") == "directory" and not recursive:
            raise InvalidName(f"{path!r} in Volume {self.name!r} is a folder: remove(path, recursive=True)")
        self.folder.remove(rel, recursive=recursive)

    def local_path(self, path: str) -> str:
        """A local file holding ``path``: the file itself on a local root; for a remote root, a copy cached under
        ``$LUMI_HOME/cache/volumes`` and fetched again when the remote file changes (ETag, size, mtime)."""
        info = self._file_info(path)
        if self.folder.local:
            return self.folder.path(self._rel(path))
        stamp = json.dumps([path, info.get("ETag") or info.get("etag"), info.get("size"),
                            str(info.get("LastModified") or info.get("mtime"))])
        digest = hashlib.sha256(stamp.encode()).hexdigest()[:32]
        target = load_config().home / "cache" / "volumes" / self.tenant / self.name / digest / posixpath.basename(path)
        if not target.is_file():
            self.folder.download(self._rel(path), str(target))
        return str(target)

    def __repr__(self) -> str:
        return f"lumi.Volume({self.name!r}, tenant={self.tenant!r})"
