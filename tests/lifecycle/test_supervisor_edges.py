"""A one-shot task that failed once and then finished is not reported as failing."""
from __future__ import annotations

import asyncio

from agentd.lifecycle.supervisor import Supervisor

WAIT_S = 5.0  # a safety net for awaiting the task's end, never a pause


async def test_a_one_shot_task_that_recovered_and_finished_is_not_reported_failing() -> None:
    now = [1_000.0]
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        now[0] += seconds

    starts = [0]

    async def recover_once() -> None:
        starts[0] += 1
        if starts[0] == 1:
            raise RuntimeError("first try failed")

    sup = Supervisor(sleep=sleep, clock=lambda: now[0])
    item = sup.spawn("recover", recover_once, forever=False)
    assert item.task is not None
    # Given a one-shot task that failed once, was restarted, and then finished its work
    await asyncio.wait_for(item.task, WAIT_S)
    assert item.done and starts[0] == 2 and delays == [0.5]
    # Then nothing is failing any more: /health must not say "unhealthy" for a task that succeeded
    assert sup.problems() == []
