"""The offline provider: deterministic rules, no network, cost 0."""
from __future__ import annotations

import json
from typing import Any, Callable

from agentd.llm.base import LLMRequest, LLMResponse
from agentd.workflows.triage_rules import triage

def minimal_instance(schema: dict[str, Any]) -> Any:
    """The smallest value that satisfies a (simple) JSON schema: for unknown tasks."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal_instance(props.get(k, {})) for k in schema.get("required", props)}
    if kind == "array":
        return [minimal_instance(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * schema.get("minLength", 0)
    if kind in ("number", "integer"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


RULES: dict[str, Callable[[str], Any]] = {"triage": triage}


def register_rule(task: str) -> Callable[[Callable[[str], Any]], Callable[[str], Any]]:
    """Decorator: the offline provider's answer for `task` (a user workflow's own rules)."""
    def add(rule: Callable[[str], Any]) -> Callable[[str], Any]:
        RULES[task] = rule
        return rule
    return add


class OfflineProvider:
    name = "offline"

    def __init__(self, rules: dict[str, Callable[[str], Any]] | None = None):
        self.rules = rules or {}

    async def complete(self, request: LLMRequest, model: str, timeout_s: float) -> LLMResponse:
        rule = self.rules.get(request.task) or RULES.get(request.task)
        answer = rule(request.document) if rule else minimal_instance(request.schema)
        content = json.dumps(answer, ensure_ascii=False)
        return LLMResponse(provider=self.name, model=model, content=content, parsed=answer)

    async def close(self) -> None:
        return None
