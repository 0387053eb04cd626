"""Workflows used by the tests: a slow one (to catch runs in flight) and a crashing one."""
from __future__ import annotations

import asyncio
import os
from typing import Any

from agentd import Workflow


async def wait_a_while(ctx: Any) -> dict[str, Any]:
    await asyncio.sleep(float(os.environ.get("TEST_SLOW_STEP_S", "3")))
    return {"slept": True}


async def summarise(ctx: Any) -> dict[str, Any]:
    return {"chars": len(await ctx.text())}


async def explode(ctx: Any) -> None:
    raise RuntimeError("a bug in a user step")


SLOW = Workflow("slow", steps=(wait_a_while, summarise))
BROKEN = Workflow("broken", steps=(explode,))


async def ask_model(ctx: Any) -> dict[str, Any]:
    from agentd.workflows.triage import TRIAGE_SCHEMA
    return await ctx.ask(task="triage", system="Triage.", document=await ctx.text(), schema=TRIAGE_SCHEMA)


PAID_THEN_SLOW = Workflow("paid_then_slow", steps=(ask_model, wait_a_while))
