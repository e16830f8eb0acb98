"""``lumi.Queue``: a named FIFO shared by notebooks, jobs and workers, kept by a detached async Ray actor and
written through to the store folder (one file per item), so it survives the actor's restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import ray

from ..errors import InvalidName, QueueEmpty, QueueFull
from . import _codec
from ._actor import base, open_actor, read_meta
from ._persist import Folder
from ._scope import default_options, default_root, max_value_bytes, queue_maxsize, resolve

WAIT_S = 5.0  # the longest one call to the actor waits for an item


class QueueActor:
    """Items in memory as ``(seq, kind, bytes)``, never decoded; ``get_many`` waits on a condition."""

    def __init__(self, tenant: str, name: str, url: str, options: dict, maxsize: int):
        self.folder, self.base = Folder(url, options), f"queues/{tenant}/{name}"
        self.meta = read_meta(self.folder, self.base, tenant, name, maxsize=maxsize)
        self.items = deque()
        for entry in self.folder.names(f"{self.base}/items", files_only=True):  # names are zero-padded sequence numbers
            kind, _, data = self.folder.read(f"{self.base}/items/{entry}").partition(b"\n")
            self.items.append((int(entry), kind.decode(), data))
        self.seq = self.items[-1][0] + 1 if self.items else 0
        self._changed = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # made on the actor's event loop
            self._changed = asyncio.Condition()
        return self._changed

    async def stat(self) -> dict:
        return {"name": self.meta["name"], "tenant": self.meta["tenant"], "length": len(self.items),
                "maxsize": self.meta["maxsize"], "bytes": sum(len(item[2]) for item in self.items)}

    async def put_many(self, items: list) -> int:
        """Append every item, or none when they do not all fit: returns the new length, or -1 when full."""
        if len(self.items) + len(items) > self.meta["maxsize"]:
            return -1
        for kind, data in items:
            self.folder.write(f"{self.base}/items/{self.seq:020d}", kind.encode() + b"\n" + data)
            self.items.append((self.seq, kind, data))
            self.seq += 1
        async with self._condition():
            self._condition().notify_all()
        return len(self.items)

    async def get_many(self, n: int, timeout: float | None, arrays_only: bool = False) -> list | None:
        """Up to ``n`` items, waiting up to ``timeout`` s (None: for ever) for the first; ``[]`` when none came.
        With ``arrays_only`` (a caller of another tenant) a pickled item stays queued: None when it is first."""
        async with self._condition():
            if not self.items and timeout != 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._condition().wait_for(lambda: self.items), timeout)
            taken = []
            if arrays_only and self.items and self.items[0][1] == "pickle":
                return None
            while self.items and len(taken) < n and not (arrays_only and self.items[0][1] == "pickle"):
                seq, kind, data = self.items.popleft()
                self.folder.remove(f"{self.base}/items/{seq:020d}")
                taken.append((kind, data))
            return taken


_Actor = ray.remote(QueueActor)


class Queue:
    """``lumi.Queue(name)``: ``put``, ``put_many``, ``get(timeout=)``, ``get_many``, ``len``, with
    :class:`queue.Queue`'s meaning of ``block`` and ``timeout`` for ``get``. It holds at most ``maxsize``
    items (``$LUMI_QUEUE_MAXSIZE``, default 10,000, fixed when the queue is created); ``put`` on a full queue
    raises :class:`QueueFull` (a ``lumi.Busy``) at once. Tenant, ``create``, ``root`` are as for ``lumi.Dict``."""

    def __init__(self, name: str, *, maxsize: int | None = None, tenant: str | None = None, key: str | None = None,
                 create: bool = True, root: str | None = None, storage_options: dict | None = None):
        maxsize = queue_maxsize() if maxsize is None else maxsize
        if not isinstance(maxsize, int) or maxsize < 1:
            raise InvalidName(f"Queue maxsize must be a positive int, not {maxsize!r}")
        self.scope = resolve("Queue", name, tenant, key)
        self.name, self.tenant = name, self.scope.tenant
        folder = Folder(root or default_root(), default_options() if storage_options is None else storage_options)
        self._actor = open_actor(_Actor, self.scope, folder, create, maxsize)
        self.url = folder.path(base(self.scope))

    def put(self, value) -> None:
        """Append ``value``; raises :class:`QueueFull` when the queue holds ``maxsize`` items."""
        self.put_many([value])

    def put_many(self, values: list) -> None:
        """Append all of ``values`` in order, or none of them when they do not fit (:class:`QueueFull`)."""
        limit = max_value_bytes()
        items = [_codec.encode(v, f"item {i} for Queue {self.name!r}", limit) for i, v in enumerate(values)]
        if items and ray.get(self._actor.put_many.remote(items)) < 0:
            stat = ray.get(self._actor.stat.remote())
            raise QueueFull(f"Queue {self.name!r} is full: it holds {stat['length']} of {stat['maxsize']} items and "
                            f"{len(items)} more do not fit; get some first, or make a queue with a larger maxsize",
                            retry_after=1.0)

    def get(self, block: bool = True, timeout: float | None = None):
        """The oldest item; waits up to ``timeout`` s (for ever when None) or, with ``block=False``, not at all,
        then raises :class:`QueueEmpty` (also a :class:`queue.Empty`)."""
        return self.get_many(1, block, timeout)[0]

    def get_many(self, n: int, block: bool = True, timeout: float | None = None) -> list:
        """Up to ``n`` of the oldest items, waiting for the first as :meth:`get` does."""
        if not isinstance(n, int) or n < 1:
            raise InvalidName(f"get_many takes a positive number of items, not {n!r}")
        wait = 0 if not block else timeout
        if wait is not None and wait < 0:
            raise InvalidName("timeout must be a non-negative number")
        started = time.monotonic()
        trusted = self.scope.caller == self.tenant
        while True:  # the actor waits at most WAIT_S a call, so a caller that is gone stops waiting there soon
            left = WAIT_S if wait is None else min(WAIT_S, max(0.0, started + wait - time.monotonic()))
            ref = self._actor.get_many.remote(n, left, not trusted)
            try:
                items = ray.get(ref)
            except BaseException:  # Ctrl-C: the actor stops waiting too, and takes nothing for us
                ray.cancel(ref)
                raise
            if items != [] or (wait is not None and time.monotonic() - started >= wait):
                break
        if items is None:
            raise _codec.untrusted(f"the next item of Queue {self.name!r}")
        if not items:
            waited = f"after {time.monotonic() - started:.1f} s" if wait else "(not waiting)"
            raise QueueEmpty(f"Queue {self.name!r} is empty {waited}")
        return [_codec.decode(kind, data, trusted, f"an item of Queue {self.name!r}") for kind, data in items]

    def __len__(self) -> int:
        return ray.get(self._actor.stat.remote())["length"]

    def __repr__(self) -> str:
        return f"lumi.Queue({self.name!r}, tenant={self.tenant!r})"
