"""A user workflow written only against the public API (`from agentd import ...`), for tests/workflows/test_api.py."""
from __future__ import annotations

import asyncio
from typing import Any

from agentd import NeedsReview, Run, Workflow, step

SCHEMA = {"type": "object", "required": ["words", "shout"], "additionalProperties": False,
          "properties": {"words": {"type": "integer"}, "shout": {"type": "string"}}}


def offline_count(document: str) -> dict[str, Any]:
    """This workflow's own offline answer for its task (no provider imported)."""
    return {"words": len(document.split()), "shout": document.upper()[:40]}


@step(name="read")
async def read_text(run: Run) -> dict[str, Any]:
    text = await run.text()
    run.log.info("read", chars=len(text))
    return {"text": text, "name": run.name, "cid": run.correlation_id}


@step
async def count(run: Run) -> dict[str, Any]:
    return await run.ask(task="count", system="Count the words.", document=run.output(read_text)["text"],
                         schema=SCHEMA)


@step(timeout_s=0.5)
async def decide(run: Run) -> dict[str, Any]:
    answer = run.output("count")  # by the step's name, or by the function as above
    if "slow" in run.output(read_text)["text"]:
        await asyncio.sleep(5)  # over this step's own timeout_s
    if answer["words"] > 50:
        raise NeedsReview("long_document", result=answer)
    return {**answer, "read_as": run.output("read")["name"], "cost_so_far": float(run.cost_usd),
            "internals_hidden": not hasattr(run, "journal") and not hasattr(run, "claim")}


COUNTS = Workflow("counts", steps=(read_text, count, decide), offline_rules={"count": offline_count},
                  output_schema=SCHEMA)
