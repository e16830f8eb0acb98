"""Many concurrent calls, one round trip: items that arrive while a call is in flight go in the next one.

The gateway admits and meters every request at the dispatcher; under load those become one
``acquire_many`` and one ``release_many`` call per round trip instead of one call per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Coalescer:
    """``await coalescer(item)`` returns the item's answer from ``call_many(items) -> answers`` (same order).
    An answer that is an exception is raised to that item's caller only."""

    def __init__(self, call_many: Callable[[list], Awaitable[list]]):
        self.call_many = call_many
        self.waiting: list[tuple[object, asyncio.Future]] = []
        self.sending = False

    async def __call__(self, item):
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if not self.sending:
            self.sending = True
            asyncio.get_running_loop().create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    answers = await self.call_many([item for item, _ in batch])
                except Exception as e:  # the call itself failed: every item of it fails with the reason
                    answers = [e] * len(batch)
                for (_, future), answer in zip(batch, answers):
                    if future.done():
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self.sending = False
