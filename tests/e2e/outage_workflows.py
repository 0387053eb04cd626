"""Workflows of the cap and outage tests: two model calls (the first answer is paid before the second
is asked), and one ask under a long task name (it is the schema's name, sent with every request)."""
from __future__ import annotations

import asyncio
import os
from typing import Any

from agentd import Workflow

FIRST_SYSTEM = "First opinion: triage the document."
SECOND_SYSTEM = "Second opinion: triage the document again."


async def first_opinion(ctx: Any) -> dict[str, Any]:
    from agentd.workflows.triage import TRIAGE_SCHEMA
    return await ctx.ask(task="first", system=FIRST_SYSTEM, document=(await ctx.text()), schema=TRIAGE_SCHEMA)


async def think(ctx: Any) -> dict[str, Any]:
    """A pause between the two asks (TEST_PAUSE_S, default 0): time for a test to stop the server."""
    await asyncio.sleep(float(os.environ.get("TEST_PAUSE_S", "0")))
    return {"paused_s": float(os.environ.get("TEST_PAUSE_S", "0"))}


async def second_opinion(ctx: Any) -> dict[str, Any]:
    from agentd.workflows.triage import TRIAGE_SCHEMA
    return await ctx.ask(task="second", system=SECOND_SYSTEM, document=(await ctx.text()), schema=TRIAGE_SCHEMA)


TWO_CALLS = Workflow("two_calls", steps=(first_opinion, think, second_opinion))

LONG_TASK = "extract_the_invoice_lines_totals_and_payment_terms_of_document"


async def long_named_ask(ctx: Any) -> dict[str, Any]:
    from agentd.workflows.triage import TRIAGE_SCHEMA
    return await ctx.ask(task=LONG_TASK, system="Triage.", document=(await ctx.text()), schema=TRIAGE_SCHEMA)


LONG_NAMED = Workflow("long_named", steps=(long_named_ask,))
