"""A test workflow: notify, then wait in the same step for a gate file (a window to SIGKILL the daemon)."""
from __future__ import annotations

import asyncio
from typing import Any

from agentd.workflows import Workflow


async def notify_then_wait(ctx: Any) -> dict[str, Any]:
    sent = await ctx.tool("notification", subject="agentd test", message=f"{ctx.original_name} needs attention")
    (ctx.config.data_dir / "notified").write_text(ctx.cid)
    while not (ctx.config.data_dir / "gate").exists():
        await asyncio.sleep(0.05)
    return {"sent": sent}


NOTIFY = Workflow("notify", steps=(notify_then_wait,), tools=frozenset({"notification"}),
                  description="test: one notification, then wait for data/gate")
