"""What the e2e cap and outage tests share: dropping files, and a model call's reservation as the
server saw the request (the gateway's bound: every prompt byte a token, plus the output limit)."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from agentd.llm.base import token_bound
from agentd.workflows.triage import TRIAGE_SCHEMA
from tests.fakellm import Seen
from tests.helpers import drop_letters

PRICE_IN, PRICE_OUT = Decimal("1.00"), Decimal("2.00")  # FakeLLM.env()'s prices, USD per MTok
MTOK = Decimal(1_000_000)
WORKFLOWS = str(Path(__file__).with_name("outage_workflows.py"))


def drop(home: Path, count: int, prefix: str = "doc", folder: str = "") -> list[str]:
    """`count` small letters asking to pay an invoice; their names."""
    return drop_letters(home, count, prefix, folder)


def usd(value: object) -> Decimal:
    return Decimal(str(value))


def cost(tokens_in: int, tokens_out: int) -> Decimal:
    return (tokens_in * PRICE_IN + tokens_out * PRICE_OUT) / MTOK


def prompt_of(seen: Seen) -> str:
    """The system text and the user message of a first ask (no history, no tools), as sent."""
    if seen.wire == "anthropic":
        return str(seen.body["system"]) + "".join(str(m["content"]) for m in seen.body["messages"])
    return "".join(str(m["content"]) for m in seen.body["messages"])


def reservation(seen: Seen, overhead_tokens: int = 0) -> Decimal:
    """The worst case the gateway holds for a triage-schema ask: input bound + max output at the prices."""
    prompt = prompt_of(seen) + seen.schema_name + json.dumps(TRIAGE_SCHEMA, sort_keys=True) + json.dumps([])
    return cost(token_bound(prompt, 3) + overhead_tokens, int(seen.body["max_tokens"]))
