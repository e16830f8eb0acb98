"""The coalescer: concurrent calls share round trips, answers keep their order, errors stay with their item."""

from __future__ import annotations

import asyncio

import pytest
from lumi.serving.coalesce import Coalescer


def test_items_arriving_during_a_call_share_the_next_one():
    calls = []

    async def call_many(items):
        calls.append(list(items))
        await asyncio.sleep(0.01)
        return [ValueError(f"bad {i}") if i == 7 else i * 10 for i in items]

    async def main():
        coalescer = Coalescer(call_many)
        first = asyncio.ensure_future(coalescer(0))
        await asyncio.sleep(0.002)  # the first call is in flight: the next 19 wait for one more
        rest = await asyncio.gather(*(coalescer(i) for i in range(1, 20)), return_exceptions=True)
        return [await first, *rest]

    answers = asyncio.run(main())
    assert [a for i, a in enumerate(answers) if i != 7] == [i * 10 for i in range(20) if i != 7]
    assert isinstance(answers[7], ValueError) and str(answers[7]) == "bad 7"
    assert len(calls) == 2 and calls[0] == [0] and sorted(calls[1]) == list(range(1, 20))


def test_a_failed_call_fails_its_items_and_the_next_call_still_runs():
    attempts = []

    async def call_many(items):
        attempts.append(items)
        if len(attempts) == 1:
            raise ConnectionError("dispatcher restarting")
        return items

    async def main():
        coalescer = Coalescer(call_many)
        with pytest.raises(ConnectionError):
            await coalescer("a")
        return await coalescer("b")

    assert asyncio.run(main()) == "b"
