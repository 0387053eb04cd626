"""A workflow whose run can never be finished: its result has keys no JSON line can sort (an int beside
a str), so the outcome's audit line raises every time: the claim stalls, is retried, stalls again."""
from __future__ import annotations

from typing import Any

from agentd import Workflow


async def mixed_keys(ctx: Any) -> dict[Any, Any]:
    return {1: "one", "two": 2}


UNFINISHABLE = Workflow("unfinishable", steps=(mixed_keys,))
