"""``--gpu``, ``--tier`` and ``--tenant`` as magic arguments (declared once in :mod:`lumi.runtime.options`),
and the notebook's key, whose tier and tenant are their defaults."""

from __future__ import annotations

import os

from IPython.core.magic_arguments import argument
from lumi.errors import LumiError
from lumi.runtime.config import LOCAL_TENANT
from lumi.runtime.options import DEFAULT_TIER, PLACEMENT_ARGUMENTS


def placement_arguments():
    """A decorator adding ``--gpu``, ``--tier`` and ``--tenant`` to a magic, at the place it is written
    among the ``@argument`` lines (below ``@magic_arguments()``)."""

    def decorate(func):
        # magic_arguments adds arguments in the reverse of the order they were applied: apply the last first
        for flags, kwargs in reversed(PLACEMENT_ARGUMENTS):
            func = argument(*flags, **kwargs)(func)
        return func

    return decorate


def key_principal(key: str | None):
    """The tenant and tier of one of this machine's keys (a ``lumi.serving.keys.Key``), or None."""
    from lumi.serving import keys

    try:
        return keys.Keyring(keys.keys_path()).lookup(key)
    except (LumiError, OSError):
        return None


def notebook_placement(tier: str | None, tenant: str | None) -> tuple[str, str]:
    """``%%remote``'s tier and tenant: the given ones, else those of the notebook's key (this machine's
    local admin key, as ``%%deploy`` and the panel use; tier ``api``, tenant ``local``), else api and local."""
    if tier and tenant:
        return tier, tenant
    principal = _local_principal()
    return (tier or (principal.tier if principal else DEFAULT_TIER),
            tenant or (principal.tenant if principal else LOCAL_TENANT))


_known: tuple[tuple, object] | None = None  # (the key files' paths and stamps, the admin key's principal)


def _local_principal():
    """The local admin key's principal, read again only when the key files have changed (a cell reads it)."""
    global _known
    from lumi.serving import keys

    path = keys.keys_path()
    if _known is not None and _known[0] == _stamps(path):
        return _known[1]
    try:
        principal = key_principal(keys.admin_key())
    except (LumiError, OSError):
        return None
    _known = (_stamps(path), principal)
    return principal


def _stamps(keys_file) -> tuple:
    def stamp(path):
        try:
            status = os.stat(path)
        except OSError:
            return None
        return status.st_ino, status.st_mtime_ns, status.st_size

    return str(keys_file), stamp(keys_file), stamp(keys_file.parent / "admin.key")
