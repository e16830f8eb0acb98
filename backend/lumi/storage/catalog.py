"""What the store holds, read from its folder (no actor is started): the rows of ``%lumi dicts|queues|volumes``."""

from __future__ import annotations

import json

from ._persist import Folder
from ._scope import default_options, default_root

KINDS = {"dict": "keys", "queue": "length", "volume": "files"}


def stores(kind: str, tenant: str | None = None, root: str | None = None,
           storage_options: dict | None = None) -> list[dict]:
    """One row per store of ``kind`` (``dict``, ``queue``, ``volume``): name, tenant, its count of keys, items
    or files, and bytes; every tenant's unless ``tenant`` is given."""
    count = KINDS[kind]
    folder = Folder(root or default_root(), default_options() if storage_options is None else storage_options)
    rows = []
    for owner in folder.names(f"{kind}s"):
        if tenant is not None and owner != tenant:
            continue
        for name in folder.names(f"{kind}s/{owner}"):
            base = f"{kind}s/{owner}/{name}"
            try:
                meta = json.loads(folder.read(f"{base}/meta.json"))
            except FileNotFoundError:
                continue
            sizes = folder.files(f"{base}/{'files' if kind == 'volume' else 'items'}")
            row = {"name": name, "tenant": owner, count: len(sizes), "bytes": sum(sizes.values())}
            if kind == "queue":
                row["maxsize"] = meta.get("maxsize")
            rows.append(row)
    return rows
