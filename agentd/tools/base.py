"""What a tool is: a name, a JSON schema for its parameters, limits, and an async run function."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from agentd.config import Config


@dataclass(frozen=True)
class Invocation:
    """What a tool's run function gets: the run, its checked parameters, its idempotency key."""

    ctx: Any
    config: Config
    params: dict[str, Any]
    key: str
    timeout_s: float


Runner = Callable[[Invocation], Awaitable[Any]]
SchemaSource = dict[str, Any] | Callable[[Config], dict[str, Any]]
TextSource = str | Callable[[Config], str]


@dataclass(frozen=True)
class Tool:
    """A callable capability. Nothing reaches `run` before the allowlists and the schema passed.

    `parameters` is a JSON schema and `description` a text, or functions of the Config
    returning them (db-query's list the configured named queries). `timeout_s` None means TOOL_TIMEOUT_S.
    `rate_per_min` None means unlimited. A tool that `needs_approval` never runs by itself:
    the call goes to review/ for a human. A `side_effect` tool (it changes the world) makes
    the run's journal durable before it runs, so a resumed run replays instead of repeating;
    one that is `idempotent` honours its Invocation.key (a receiver drops a repeat of it), so
    after a crash between its effect and its result it is sent again with the same key; any
    other such call goes to review (tool_outcome_unknown).
    """

    name: str
    description: TextSource
    parameters: SchemaSource
    run: Runner
    timeout_s: float | None = None
    needs_approval: bool = False
    rate_per_min: float | None = 60.0
    side_effect: bool = False
    idempotent: bool = False

    def schema(self, config: Config) -> dict[str, Any]:
        return self.parameters(config) if callable(self.parameters) else self.parameters

    def describe(self, config: Config) -> str:
        return self.description(config) if callable(self.description) else self.description

    def spec(self, config: Config) -> dict[str, Any]:
        """How the tool is offered to a model (LLMRequest.tools)."""
        return {"name": self.name, "description": self.describe(config), "parameters": self.schema(config)}


class TokenBucket:
    """`rate_per_min` calls a minute, bursts up to the same number; the clock is injectable."""

    def __init__(self, rate_per_min: float, clock: Callable[[], float] = time.monotonic):
        if rate_per_min <= 0:
            raise ValueError("rate_per_min must be above 0")
        self.capacity = max(1.0, rate_per_min)
        self.refill_per_s = rate_per_min / 60.0
        self.clock = clock
        self.tokens = self.capacity
        self.updated_s = clock()

    def reserve(self) -> float:
        """Take a token and return 0, or return the seconds until one is free (taking nothing)."""
        now_s = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now_s - self.updated_s) * self.refill_per_s)
        self.updated_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.refill_per_s
