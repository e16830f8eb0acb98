"""The store: named Dicts, Queues and Volumes shared by notebooks, jobs and workers (docs/store.md).

Dicts and Queues are detached Ray actors (namespace ``lumi``) that write every change through to a folder
(``$LUMI_STORE``, default ``$LUMI_HOME/store``; any fsspec URL); Volumes are files in that folder.
Each store belongs to one tenant.
"""

from ..errors import (
    InvalidName,
    MissingKey,
    PathNotFound,
    QueueEmpty,
    QueueFull,
    StoreNotFound,
    UntrustedValue,
    ValueTooLarge,
)
from .catalog import stores
from .dict import Dict
from .queue import Queue
from .volume import Volume

__all__ = ["Dict", "InvalidName", "MissingKey", "PathNotFound", "Queue", "QueueEmpty", "QueueFull", "StoreNotFound",
           "UntrustedValue", "ValueTooLarge", "Volume", "stores"]
