"""API keys: ``$LUMI_HOME/keys.toml`` maps each key to a tenant, a tier and an admin flag.

::

    [keys."lumi_3x..."]
    tenant = "local"
    tier = "api"
    admin = true

The embedded default creates one admin key for tenant ``local`` the first time the gateway starts.
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import LumiError
from ..runtime.config import load_config


@dataclass(frozen=True)
class Key:
    key: str
    tenant: str
    tier: str = "api"
    admin: bool = False


def keys_path(home: Path | str | None = None) -> Path:
    return Path(home or load_config().home) / "keys.toml"


def load_keys(path: Path) -> dict[str, Key]:
    """All keys in a keys.toml (empty when the file is absent)."""
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text()).get("keys", {})
    except tomllib.TOMLDecodeError as e:
        raise LumiError(f"{path} is not valid TOML ({e}); fix or delete it") from None
    return {k: Key(k, str(v.get("tenant", "local")), str(v.get("tier", "api")), bool(v.get("admin", False)))
            for k, v in table.items()}


def add_key(tenant: str, tier: str = "api", admin: bool = False, home: Path | str | None = None) -> str:
    """Create a key for ``tenant`` in keys.toml (readable by its owner only) and return it."""
    load_config().tier(tier)
    path = keys_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "lumi_" + secrets.token_urlsafe(24)
    entry = (f"\n[keys.{json.dumps(key)}]\ntenant = {json.dumps(tenant)}\ntier = {json.dumps(tier)}\n"
             f"admin = {'true' if admin else 'false'}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(entry)
    return key


def admin_key(home: Path | str | None = None) -> str:
    """The first admin key for tenant ``local``, created if keys.toml holds none."""
    path = keys_path(home)
    for k in load_keys(path).values():
        if k.admin and k.tenant == "local":
            return k.key
    return add_key("local", "api", admin=True, home=home)


class Keyring:
    """Keys from a keys.toml, re-read whenever the file changes."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp = None
        self._keys: dict[str, Key] = {}

    def lookup(self, key: str | None) -> Key | None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._keys, self._stamp = load_keys(self.path), stamp
        return self._keys.get(key) if key else None
