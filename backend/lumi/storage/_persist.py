"""A folder of files through fsspec (a local directory, or ``s3://``): what the stores persist to."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import fsspec

from ..serving.keys import write_private


class Folder:
    """Files under ``url``, addressed by relative ``a/b/c`` paths. Local writes are atomic (a temporary
    file renamed into place, 0600); an object store's PUT is atomic already."""

    def __init__(self, url: str, options: dict | None = None):
        self.url, self.options = url, dict(options or {})
        self.fs, root = fsspec.core.url_to_fs(url, **self.options)
        self.root = root.rstrip("/")
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        self.local = "file" in protocols

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def read(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def write(self, rel: str, data: bytes) -> None:
        if self.local:
            write_private(Path(self.path(rel)), data)
        else:
            self.fs.pipe_file(self.path(rel), data)

    def upload(self, local: str, rel: str) -> None:
        if not self.local:
            self.fs.put_file(local, self.path(rel))
            return
        target = Path(self.path(rel))
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(fd)
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def download(self, rel: str, local: str) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=Path(local).parent, prefix=f".{Path(local).name}.")
        os.close(fd)
        try:
            self.fs.get_file(self.path(rel), tmp)
            os.replace(tmp, local)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def remove(self, rel: str, recursive: bool = False) -> None:
        self.fs.rm(self.path(rel), recursive=recursive)

    def info(self, rel: str) -> dict:
        self._fresh(rel)
        return self.fs.info(self.path(rel))

    def exists(self, rel: str) -> bool:
        self._fresh(rel)
        return self.fs.exists(self.path(rel))

    def entries(self, rel: str) -> list[dict]:
        """``[{"name": basename, "size", "type"}]`` directly under ``rel``; ``[]`` when it does not exist."""
        self._fresh(rel)
        try:
            found = self.fs.ls(self.path(rel), detail=True)
        except FileNotFoundError:
            return []
        base = self.path(rel).rstrip("/")
        return [{**e, "name": e["name"].rstrip("/").rsplit("/", 1)[-1]} for e in found
                if e["name"].rstrip("/") != base]

    def names(self, rel: str, files_only: bool = False) -> list[str]:
        """Sorted names under ``rel``; ``files_only`` skips folders and the dot-files of unfinished writes."""
        return sorted(e["name"] for e in self.entries(rel)
                      if not files_only or (e.get("type") != "directory" and not e["name"].startswith(".")))

    def files(self, rel: str) -> dict[str, int]:
        """Every file under ``rel`` (recursively) and its size in bytes."""
        self._fresh(rel)
        try:
            found = self.fs.find(self.path(rel), detail=True)
        except FileNotFoundError:
            return {}
        return {name: int(e.get("size") or 0) for name, e in found.items() if e.get("type") != "directory"}

    def _fresh(self, rel: str) -> None:
        """Forget cached listings: other processes write here too."""
        self.fs.invalidate_cache(self.path(rel))
        self.fs.invalidate_cache(self.path(rel).rsplit("/", 1)[0])
