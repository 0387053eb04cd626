"""One run whose step calls a side-effect tool, on a tmp home, in a process of its own: killed by
AGENTD_CRASH_AT-style points (Config.crash_at) it leaves the run's journal as a real crash does.

    python -m tests.tools.intent_run HOME WEBHOOK_URL CRASH_POINT TOOL

`ledger` posts to the webhook and takes no idempotency key (a receiver cannot drop a repeat);
`notification` is the real tool (it sends an Idempotency-Key).
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp

from agentd.config import Config
from agentd.lifecycle.services import Services, build
from agentd.tools import Invocation, Tool
from agentd.tools.notification import TOOL as NOTIFICATION
from agentd.workflows import Workflow
from tests.tools.support import config

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["entry"],
          "properties": {"entry": {"type": "string", "maxLength": 100}}}


async def _post_ledger(inv: Invocation) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(inv.config.webhook_url, json={"entry": inv.params["entry"]}) as response:
            return {"status": response.status}


LEDGER = Tool(name="ledger", description="Book an entry (no idempotency key).", parameters=SCHEMA,
              run=_post_ledger, side_effect=True)


async def _book(run: Any) -> dict[str, Any]:
    if run.workflow == "ledger":
        return {"booked": await run.tool("ledger", entry="invoice 42")}
    return {"sent": await run.tool("notification", message="invoice 42 booked")}


WORKFLOWS = {name: Workflow(name, steps=(_book,), tools=frozenset({name})) for name in ("ledger", "notification")}


def services(home: Path, url: str, crash_at: str = "") -> Services:
    cfg: Config = config(home, allowed_services=frozenset({"ledger", "notification"}), webhook_url=url,
                         crash_at=crash_at)
    return build(cfg, tools={"ledger": LEDGER, "notification": NOTIFICATION}, workflows=WORKFLOWS)


async def first_run(home: Path, url: str, crash_at: str, workflow: str) -> None:
    parts = services(home, url, crash_at)
    folder = home / "incoming" / workflow
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "invoice.txt").write_text("Invoice 42, 120 EUR\n")
    claim = await parts.store.claim(folder / "invoice.txt", workflow)
    assert claim is not None
    await parts.pipeline.process(claim)


if __name__ == "__main__":
    asyncio.run(first_run(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
