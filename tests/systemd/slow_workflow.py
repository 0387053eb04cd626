"""e2e payload (AGENTD_WORKFLOWS): files in incoming/slow/ take SLOW_S seconds each,
long enough to be in flight when the test kills or stops the daemon."""
from __future__ import annotations

import asyncio
from typing import Any

from agentd import Workflow

SLOW_S = 4.0


async def nap(ctx: Any) -> dict[str, Any]:
    """Stand-in for a long model call."""
    await asyncio.sleep(SLOW_S)
    return {"slept_s": SLOW_S}


SLOW = Workflow("slow", steps=(nap,), description="e2e: a run that takes a while")
