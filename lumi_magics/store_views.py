"""``%lumi dicts``, ``%lumi queues``, ``%lumi volumes``: what the store holds, as DataFrames (read from the
store's folder: listing starts no actor)."""

from __future__ import annotations

import pandas as pd
from lumi.storage.catalog import stores

from .line import command

COLUMNS = {"dict": ["name", "tenant", "keys", "bytes"], "queue": ["name", "tenant", "length", "maxsize", "bytes"],
           "volume": ["name", "tenant", "files", "bytes"]}


def store_frame(kind: str, tenant: str | None = None) -> pd.DataFrame:
    """One row per store of ``kind``, by tenant then name; empty, with the columns, when there is none."""
    frame = pd.DataFrame(stores(kind, tenant), columns=COLUMNS[kind])
    return frame.sort_values(["tenant", "name"], kind="stable", ignore_index=True)


def _tenant_option(parser) -> None:
    parser.add_argument("--tenant", default=None, help="only this tenant's (default: every tenant's)")


@command("dicts", "lumi.Dicts in the store: name, tenant, keys, bytes", _tenant_option)
def dicts(args, shell):
    return store_frame("dict", args.tenant)


@command("queues", "lumi.Queues in the store: name, tenant, length, maxsize, bytes", _tenant_option)
def queues(args, shell):
    return store_frame("queue", args.tenant)


@command("volumes", "lumi.Volumes in the store: name, tenant, files, bytes", _tenant_option)
def volumes(args, shell):
    return store_frame("volume", args.tenant)
