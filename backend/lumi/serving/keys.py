"""API keys: ``$LUMI_HOME/keys.toml`` holds salted hashes of keys, each bound to a tenant, a tier and an admin flag.

::

    [keys.lumi_3f9a0c1d]            # the key's visible prefix, used for lookup
    hash = "sha256:<salt hex>:<digest hex>"
    tenant = "local"
    tier = "api"
    admin = true
    created_at = 1764624000.0

A key (``lumi_<8 hex>_<32 random characters>``) is shown once, when it is created; only its hash is
stored, and a presented key is compared with :func:`hmac.compare_digest`. The local admin key is
also kept in ``$LUMI_HOME/admin.key`` (mode 0600) so the gateway can advertise it to the Jupyter
server extension through ``gateway.json``. Every file here is created 0600 from the start
(:func:`write_private`). A keys.toml written by an older Lumi (plaintext keys as table names) is
rewritten with hashes the first time it is read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import LumiError
from ..runtime.config import LOCAL_TENANT, load_config, setting

PREFIX_LENGTH = len("lumi_") + 8


@dataclass(frozen=True)
class Key:
    """A key's principal: whose it is and the most it may use. Never holds the secret."""

    prefix: str
    tenant: str
    tier: str = "api"
    admin: bool = False
    created_at: float = 0.0


def keys_path(home: Path | str | None = None) -> Path:
    return Path(home or setting("LUMI_HOME")) / "keys.toml"


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, readable by its owner only from the first byte on (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise changes to keys.toml between processes."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _digest(salt: str, key: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + key.encode()).hexdigest()


def _hash(key: str) -> str:
    salt = secrets.token_hex(16)
    return f"sha256:{salt}:{_digest(salt, key)}"


def _matches(stored: str, key: str) -> bool:
    scheme, salt, digest = (stored.split(":") + ["", "", ""])[:3]
    try:
        actual = _digest(salt, key)
    except ValueError:
        return False
    return hmac.compare_digest(actual, digest) and scheme == "sha256"


def _read(path: Path) -> dict[str, dict]:
    """keys.toml as ``{prefix: entry}``; plaintext entries from an older Lumi are hashed (and saved so)."""
    try:
        table = tomllib.loads(path.read_text()).get("keys", {})
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise LumiError(f"keys.toml is not valid TOML ({e}); fix or delete it") from None
    entries, legacy = {}, False
    for name, v in table.items():
        if not isinstance(v, dict):
            continue
        entry = {"tenant": str(v.get("tenant", "local")), "tier": str(v.get("tier", "api")),
                 "admin": bool(v.get("admin", False)), "created_at": float(v.get("created_at", 0.0)),
                 "hash": str(v.get("hash", ""))}
        if not entry["hash"]:  # an old plaintext key: the table name is the key itself
            legacy = True
            entry["hash"] = _hash(name)
            name = name[:PREFIX_LENGTH]
        entries[name] = entry
    if legacy:
        _write(path, entries)
    return entries


def _write(path: Path, entries: dict[str, dict]) -> None:
    lines = ["# Lumi API keys: salted SHA-256 hashes only. Manage with `lumi keys`.\n"]
    for prefix, e in entries.items():
        lines.append(f"\n[keys.{json.dumps(prefix)}]\nhash = {json.dumps(e['hash'])}\n"
                     f"tenant = {json.dumps(e['tenant'])}\ntier = {json.dumps(e['tier'])}\n"
                     f"admin = {'true' if e['admin'] else 'false'}\ncreated_at = {float(e['created_at'])!r}\n")
    write_private(path, "".join(lines).encode())


def _new(entries: dict[str, dict], tenant: str, tier: str, admin: bool) -> str:
    load_config().tier(tier)
    while True:
        prefix = "lumi_" + secrets.token_hex(4)
        if prefix not in entries:
            break
    key = f"{prefix}_{secrets.token_urlsafe(24)}"
    entries[prefix] = {"tenant": tenant, "tier": tier, "admin": admin, "created_at": time.time(), "hash": _hash(key)}
    return key


def add_key(tenant: str, tier: str = "api", admin: bool = False, home: Path | str | None = None) -> str:
    """Create a key for ``tenant`` and return it: the only time the key itself is seen."""
    path = keys_path(home)
    with _locked(path):
        entries = _read(path)
        key = _new(entries, tenant, tier, admin)
        _write(path, entries)
    return key


def list_keys(home: Path | str | None = None) -> list[Key]:
    """Every key's principal (prefix, tenant, tier, admin, created_at); no secrets."""
    return [Key(prefix, **{k: v for k, v in e.items() if k != "hash"}) for prefix, e in _read(keys_path(home)).items()]


def _pop(entries: dict, prefix: str) -> dict:
    entry = entries.pop(prefix[:PREFIX_LENGTH], None)
    if entry is None:
        raise LumiError(f"no key with prefix {prefix[:PREFIX_LENGTH]!r}; `lumi keys list` shows them")
    return entry


def revoke_key(prefix: str, home: Path | str | None = None) -> Key:
    """Delete the key with this prefix (or the whole key); requests with it are refused at once."""
    path = keys_path(home)
    with _locked(path):
        entries = _read(path)
        entry = _pop(entries, prefix)
        _write(path, entries)
    return Key(prefix[:PREFIX_LENGTH], **{k: v for k, v in entry.items() if k != "hash"})


def rotate_key(prefix: str, home: Path | str | None = None) -> str:
    """Replace a key by a new one for the same tenant, tier and admin flag; return the new key."""
    path = keys_path(home)
    with _locked(path):
        entries = _read(path)
        old = _pop(entries, prefix)
        key = _new(entries, old["tenant"], old["tier"], old["admin"])
        _write(path, entries)
        admin_file = path.parent / "admin.key"
        if admin_file.is_file() and admin_file.read_text().strip().startswith(prefix[:PREFIX_LENGTH]):
            write_private(admin_file, key.encode())
            _rewrite_gateway_file(path.parent, key)
    return key


def _rewrite_gateway_file(home: Path, key: str) -> None:
    """Point ``gateway.json`` at a rotated admin key, so the Jupyter panel keeps working."""
    gateway = home / "gateway.json"
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(gateway.read_text())
        write_private(gateway, json.dumps({**info, "key": key}).encode())


def admin_key(home: Path | str | None = None) -> str:
    """The local admin key (tenant ``local``), kept in ``admin.key`` (0600); created when absent or revoked."""
    path = keys_path(home)
    admin_file = path.parent / "admin.key"
    with _locked(path):
        entries = _read(path)
        with contextlib.suppress(FileNotFoundError):
            key = admin_file.read_text().strip()
            entry = entries.get(key[:PREFIX_LENGTH])
            if entry and entry["admin"] and _matches(entry["hash"], key):
                return key
        key = _new(entries, LOCAL_TENANT, "api", True)
        _write(path, entries)
        write_private(admin_file, key.encode())
    return key


class Keyring:
    """Looks keys up in a keys.toml, re-read whenever the file changes."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp = None
        self._entries: dict[str, dict] = {}

    def lookup(self, key: str | None) -> Key | None:
        """The principal of a presented key, or None; compares hashes in constant time."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._entries, self._stamp = _read(self.path), stamp
        if not key:
            return None
        entry = self._entries.get(key[:PREFIX_LENGTH])
        if not _matches(entry["hash"] if entry else "sha256:00:", key) or entry is None:  # same work either way
            return None
        return Key(key[:PREFIX_LENGTH], **{k: v for k, v in entry.items() if k != "hash"})
