"""The offline provider: no network, cost 0. Each ask is answered by the rule its workflow declares
for the task (Workflow.offline_rules); a task without one gets the smallest answer its schema allows.

The built-in rules (functions of agentd's own modules) run in a parser process when the daemon
gives the provider one (`isolate`): regular expressions over an untrusted document, like the
parsers, are kept off the event loop and under a deadline. A workflow's own rules run in place."""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Mapping

from agentd.llm.base import LLMRequest, LLMResponse


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


def isolated_ref(rule: Callable[[str], Any]) -> str | None:
    """`module:qualname` of a built-in rule (a module-level function of agentd's own), else None."""
    module, qualname = getattr(rule, "__module__", None) or "", getattr(rule, "__qualname__", "")
    if not module.startswith("agentd.") or not qualname or "<" in qualname:
        return None
    return f"{module}:{qualname}"


class OfflineProvider:
    """Answers each ask by the rule its workflow declared for the task (Workflow.offline_rules), else
    with the smallest value its schema allows."""

    name = "offline"
    prompt_overhead_tokens = 0

    def __init__(self, rules: Mapping[str, Callable[[str], Any]] | None = None,
                 isolate: Callable[[str, str, float], Awaitable[Any]] | None = None, unresolvable: Any = None):
        self.rules = dict(rules or {})
        self.isolate = isolate  # (module:qualname, text, timeout) -> (answer, its JSON), or `unresolvable`
        self.unresolvable = unresolvable
        self._in_place: set[str] = set()

    async def complete(self, request: LLMRequest, model: str, timeout_s: float) -> LLMResponse:
        rule = self.rules.get(request.task)
        ref = isolated_ref(rule) if rule is not None and self.isolate is not None else None
        if ref is not None and ref not in self._in_place:
            found = await self.isolate(ref, request.document, timeout_s)  # type: ignore[misc]
            if found is not self.unresolvable:
                answer, content = found
                return LLMResponse(provider=self.name, model=model, content=content, parsed=answer)
            self._in_place.add(ref)  # the parser process cannot import it: from now on it runs here
        answer = rule(request.document) if rule else minimal_instance(request.schema)
        content = json.dumps(answer, ensure_ascii=False)
        return LLMResponse(provider=self.name, model=model, content=content, parsed=answer)

    async def close(self) -> None:
        return None
