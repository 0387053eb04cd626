"""Work done on the loop takes turns (agentd.run.isolated.ExtractPool.inline): however many runs
parse small files at once, the loop polls its sockets between any two of those parses."""
from __future__ import annotations

import asyncio

import pytest

from agentd.errors import DataError
from agentd.run.isolated import ExtractPool


async def _with_a_poll_marker(work: "asyncio.Future[object]", events: list[str]) -> None:
    """Mark every loop iteration (a callback that schedules itself runs once an iteration, each
    iteration after the loop's poll of its sockets) until `work` is done."""
    loop = asyncio.get_running_loop()

    def mark() -> None:
        events.append("poll")
        if not work.done():
            loop.call_soon(mark)

    loop.call_soon(mark)
    await work


async def test_eight_inline_parses_at_once_run_one_a_loop_iteration() -> None:
    pool = ExtractPool(size=1)
    events: list[str] = []
    work = asyncio.gather(*(pool.inline(events.append, f"parse {i}") for i in range(8)))
    await _with_a_poll_marker(work, events)
    parses = [e for e in events if e != "poll"]
    assert parses == [f"parse {i}" for i in range(8)]  # all ran, in the order asked
    between = [events[i + 1] for i, e in enumerate(events[:-1]) if e != "poll"]
    assert "poll" in events[events.index("parse 0"):] and all(nxt == "poll" for nxt in between), events


async def test_a_failing_inline_parse_still_gives_up_its_turn() -> None:
    pool = ExtractPool(size=1)
    events: list[str] = []

    def fail() -> None:
        events.append("fail")
        raise DataError("empty", "the file is empty")

    async def failing() -> None:
        with pytest.raises(DataError):
            await pool.inline(fail)

    work = asyncio.gather(failing(), pool.inline(events.append, "parse"))
    await _with_a_poll_marker(work, events)
    assert events.index("parse") > events.index("fail") + 1 and "poll" in events[events.index("fail"):]
