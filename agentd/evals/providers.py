"""Providers for evals: a dry run that records what would be sent, and a replay that serves
recorded answers by (journal key, request hash), asking a live provider only when told to."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentd.llm.base import ASK_KEY, LLMRequest, LLMResponse, Provider, ProviderError
from agentd.llm.offline import OfflineProvider


@dataclass
class Sent:
    """One request a workflow made, with the model it was routed to."""

    key: str
    model: str
    request: LLMRequest


class DryRunProvider(OfflineProvider):
    """Answers like the offline provider (rules, else the schema's smallest instance) and
    records every request: the prompts a run would send, with no network and no cost."""

    name = "offline"

    def __init__(self, rules: Any = None) -> None:
        super().__init__(rules)
        self.sent: list[Sent] = []

    async def complete(self, request: LLMRequest, model: str, timeout_s: float) -> LLMResponse:
        self.sent.append(Sent(ASK_KEY.get(), model, request))
        return await super().complete(request, model, timeout_s)


@dataclass
class Recorded:
    """A paid answer from a run's journal."""

    key: str
    request_hash: str
    value: Any
    provider: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cached_in: int = 0

    @classmethod
    def from_entry(cls, key: str, entry: dict[str, Any]) -> Recorded:
        return cls(key, str(entry.get("request_hash", "")), entry.get("value"), str(entry.get("provider", "")),
                   str(entry.get("model", "")), int(entry.get("tokens_in", 0)), int(entry.get("tokens_out", 0)),
                   int(entry.get("cached_in", 0)))


def recorded_answers(journal: list[dict[str, Any]]) -> list[Recorded]:
    """The model answers (keys `<step>:ask:<n>`) of a journal, in the order they were paid."""
    return [Recorded.from_entry(e["key"], e["value"]) for e in journal
            if isinstance(e.get("key"), str) and ":ask:" in e["key"] and isinstance(e.get("value"), dict)]


@dataclass
class Miss:
    key: str
    request_hash: str
    asked_live: bool


@dataclass
class ReplayProvider:
    """Serves one run's recorded `answers` by (journal key, request hash).

    A request with no recorded answer (the prompt, schema or document changed) is a miss:
    it fails the call, or, with `live`, goes to the live provider and is metered as usual.
    """

    answers: list[Recorded]
    live: Provider | None = None
    name: str = "replay"
    misses: list[Miss] = field(default_factory=list)
    served: int = 0
    live_calls: list[tuple[str, int, int, int]] = field(default_factory=list)  # model, in, out, cached

    async def complete(self, request: LLMRequest, model: str, timeout_s: float) -> LLMResponse:
        key, digest = ASK_KEY.get(), request.digest()
        for found in self.answers:
            if found.key == key and found.request_hash == digest:
                self.served += 1
                return _response(found)
        self.misses.append(Miss(key, digest, self.live is not None))
        if self.live is not None:
            response = await self.live.complete(request, model, timeout_s)
            self.live_calls.append((model, response.tokens_in, response.tokens_out, response.cached_in))
            return response
        raise ProviderError(f"no recorded answer for {key} with this request (it changed); "
                            "use --live to ask the model", kind="model")

    async def close(self) -> None:
        if self.live is not None:
            await self.live.close()


def _response(found: Recorded) -> LLMResponse:
    value = found.value
    tool_calls = value.get("tool_calls", []) if isinstance(value, dict) and "tool_calls" in value else []
    content = None if tool_calls else json.dumps(value, ensure_ascii=False)
    return LLMResponse(provider=found.provider, model=found.model, content=content,
                       parsed=None if tool_calls else value, tool_calls=tool_calls,
                       finish_reason="tool_calls" if tool_calls else "stop", tokens_in=found.tokens_in,
                       tokens_out=found.tokens_out, cached_in=found.cached_in)
