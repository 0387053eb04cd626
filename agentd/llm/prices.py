"""The local, versioned price table: USD per million tokens, in Decimal."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

TABLE_VERSION = "2026-11-01"


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None

    def cost(self, tokens_in: int, tokens_out: int, cached_in: int = 0) -> Decimal:
        """Exact cost in USD of one call."""
        cached_in = min(cached_in, tokens_in) if self.cached_input is not None else 0
        fresh = tokens_in - cached_in
        total = fresh * self.input + tokens_out * self.output
        if cached_in:
            total += cached_in * self.cached_input  # type: ignore[operator]
        return total / Decimal(1_000_000)


def _p(inp: str, out: str, cached: str | None = None) -> Price:
    return Price(Decimal(inp), Decimal(out), Decimal(cached) if cached else None)


# Public list prices (USD / 1M tokens) as of TABLE_VERSION. Override with
# LLM_PRICE_INPUT_PER_MTOK / LLM_PRICE_OUTPUT_PER_MTOK for other or local models.
OPENAI = {
    "gpt-4o": _p("2.50", "10.00", "1.25"),
    "gpt-4o-mini": _p("0.15", "0.60", "0.075"),
    "gpt-4.1": _p("2.00", "8.00", "0.50"),
    "gpt-4.1-mini": _p("0.40", "1.60", "0.10"),
    "gpt-4.1-nano": _p("0.10", "0.40", "0.025"),
    "gpt-5": _p("1.25", "10.00", "0.125"),
    "gpt-5-mini": _p("0.25", "2.00", "0.025"),
    "gpt-5-nano": _p("0.05", "0.40", "0.005"),
    "o3": _p("2.00", "8.00", "0.50"),
    "o4-mini": _p("1.10", "4.40", "0.275"),
}
ANTHROPIC = {
    "claude-opus-4-1": _p("15.00", "75.00", "1.50"),
    "claude-opus-4": _p("15.00", "75.00", "1.50"),
    "claude-sonnet-4-5": _p("3.00", "15.00", "0.30"),
    "claude-sonnet-4": _p("3.00", "15.00", "0.30"),
    "claude-3-7-sonnet-latest": _p("3.00", "15.00", "0.30"),
    "claude-haiku-4-5": _p("1.00", "5.00", "0.10"),
    "claude-3-5-haiku-latest": _p("0.80", "4.00", "0.08"),
}
OFFLINE = {"offline-rules": _p("0", "0")}

TABLES = {"openai": OPENAI, "anthropic": ANTHROPIC, "offline": OFFLINE}


def lookup(provider: str, model: str) -> Price | None:
    """The table's price for a model, also for dated snapshots such as gpt-4o-2024-08-06."""
    table = TABLES.get(provider, {})
    if model in table:
        return table[model]
    for name in sorted(table, key=len, reverse=True):
        if model.startswith(name + "-"):
            return table[name]
    if provider == "offline":
        return OFFLINE["offline-rules"]
    return None
