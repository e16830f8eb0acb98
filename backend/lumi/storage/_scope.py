"""Who owns a store and who is asking: names, tenants, keys, and the limits every store shares."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidName, StoreNotFound
from ..runtime.config import LOCAL_TENANT, setting

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_KEY_CHARS = 512


def check_name(what: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName(f"{what} name {name!r} is not allowed: use 1-63 letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit")
    return name


def max_value_bytes() -> int:
    return setting("LUMI_STORE_MAX_VALUE_BYTES")


def queue_maxsize() -> int:
    return setting("LUMI_QUEUE_MAXSIZE")


def default_root() -> str:
    """``$LUMI_STORE`` (any fsspec URL: ``s3://bucket/lumi``), else ``$LUMI_HOME/store``."""
    return setting("LUMI_STORE")


def default_options() -> dict:
    """fsspec storage options for the root, from ``$LUMI_STORE_OPTIONS`` (JSON: ``{"endpoint_url": ...}``)."""
    return setting("LUMI_STORE_OPTIONS")


def not_found(kind: str, name: str, caller: str) -> StoreNotFound:
    """The one answer for a missing store and another tenant's: it says nothing about which."""
    return StoreNotFound(f"no {kind} named {name!r} that tenant {caller!r} can open; create it with "
                         f"lumi.{kind}({name!r})")


@dataclass(frozen=True)
class Scope:
    """``tenant`` owns the store; ``caller`` is asking (pickled values load only when they are the same)."""

    kind: str
    name: str
    tenant: str
    caller: str


def resolve(kind: str, name: str, tenant: str | None = None, key: str | None = None) -> Scope:
    """The caller is the key's tenant, else ``$LUMI_TENANT`` (set on a worker while a job runs), else ``local``.
    A store of another tenant (``tenant=``) opens only for an admin key or the key-less ``local`` operator."""
    check_name(kind, name)
    if key is not None:
        from ..serving.keys import Keyring, keys_path

        principal = Keyring(keys_path()).lookup(key)
        if principal is None:
            raise StoreNotFound("the key is not valid; ask an admin for one (`lumi keys create TENANT`)")
        caller, admin = principal.tenant, principal.admin
    else:
        caller = setting("LUMI_TENANT") or LOCAL_TENANT
        admin = caller == LOCAL_TENANT
    owner = tenant or caller
    check_name("tenant", caller)
    check_name("tenant", owner)
    if owner != caller and not admin:
        raise not_found(kind, name, caller)
    return Scope(kind, name, owner, caller)
