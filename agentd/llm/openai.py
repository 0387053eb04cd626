"""The OpenAI provider: Chat Completions with strict JSON-schema output, for any compatible server.

Speaks the subset that api.openai.com, vLLM, llama.cpp and Ollama share: `max_tokens`, except
`max_completion_tokens` for api.openai.com itself. History turns use agentd's neutral shape:
{"role", "content"}; an assistant turn may carry "tool_calls" [{"id", "name", "arguments"}];
a tool result is {"role": "tool", "tool_call_id", "content"}.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from agentd.config import Config
from agentd.llm.base import LLMRequest, LLMResponse
from agentd.llm.http import HTTPProvider, as_int, tool_name

FINISH_REASONS = {"stop": "stop", "eos": "stop", "length": "length", "content_filter": "content_filter",
                  "tool_calls": "tool_calls", "function_call": "tool_calls"}


NOT_IN_STRICT = ("minLength", "maxLength")  # strict mode refuses these; the gateway still checks them
DATA_KEYWORDS = ("enum", "const", "default", "examples")  # values, not schemas: copied as they are


def strict_schema(schema: Any) -> tuple[Any, bool]:
    """`schema` as strict mode takes it, and whether strict mode can take it at all
    (every object closed with additionalProperties false and all its properties required)."""
    if isinstance(schema, list):
        parts = [strict_schema(item) for item in schema]
        return [part for part, _ in parts], all(ok for _, ok in parts)
    if not isinstance(schema, dict):
        return schema, True
    out: dict[str, Any] = {}
    ok = True
    for key, value in schema.items():
        if key in NOT_IN_STRICT:
            continue
        if key in DATA_KEYWORDS:
            out[key] = value
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            named = {name: strict_schema(sub) for name, sub in value.items()}
            out[key] = {name: part for name, (part, _) in named.items()}
            ok = ok and all(sub_ok for _, sub_ok in named.values())
        else:
            out[key], sub_ok = strict_schema(value)
            ok = ok and sub_ok
    if out.get("type") == "object" or "properties" in out:
        ok = ok and out.get("additionalProperties") is False \
            and set(out.get("required", ())) == set(out.get("properties", {}))
    return out, ok


def _wire_turn(turn: dict[str, Any]) -> dict[str, Any]:
    """One history turn in Chat Completions form."""
    calls = turn.get("tool_calls")
    if turn.get("role") != "assistant" or not calls:
        return dict(turn)
    return {"role": "assistant", "content": turn.get("content"),
            "tool_calls": [call if "function" in call else
                           {"id": call.get("id"), "type": "function",
                            "function": {"name": call.get("name"), "arguments": json.dumps(call.get("arguments", {}))}}
                           for call in calls]}


def _arguments(raw: Any) -> dict[str, Any]:
    """A tool call's arguments as a dict; text that is no JSON object is kept as {"_raw": text}."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {"_raw": str(raw)}
    return value if isinstance(value, dict) else {"_raw": str(raw)}


def _text(content: Any) -> str | None:
    """Message content as text: some servers send a list of parts instead of a string."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


class OpenAIProvider(HTTPProvider):
    name = "openai"

    def __init__(self, config: Config):
        super().__init__(config)
        # OpenAI's reasoning models refuse `max_tokens`; other servers may not know its successor
        official = urlsplit(self.base_url).hostname == "api.openai.com"
        self.max_tokens_field = "max_completion_tokens" if official else "max_tokens"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def body(self, request: LLMRequest, model: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system},
                    {"role": "user", "content": request.user_message()},
                    *(_wire_turn(turn) for turn in request.history)]
        body: dict[str, Any] = {"model": model, "messages": messages, self.max_tokens_field: request.max_tokens}
        if request.tools:
            body["tools"] = [{"type": "function", "function": {
                "name": tool["name"], "description": tool.get("description", ""),
                "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}}
                for tool in request.tools]
            body["tool_choice"] = "auto"
        else:
            schema, strict = strict_schema(request.schema)
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": tool_name(request.schema_name), "schema": schema if strict else request.schema,
                "strict": strict}}
        return body

    async def complete(self, request: LLMRequest, model: str, timeout_s: float) -> LLMResponse:
        data = await self.post_json("/chat/completions", self.headers(), self.body(request, model), timeout_s)
        return self.parse(data, model)

    def parse(self, data: dict[str, Any], model: str) -> LLMResponse:
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
        tokens_in, tokens_out = as_int(usage.get("prompt_tokens")), as_int(usage.get("completion_tokens"))
        known = "prompt_tokens" in usage or "completion_tokens" in usage
        choices = data.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        message = choice.get("message")
        if not isinstance(message, dict):
            raise self.malformed("no choices[0].message", tokens_in, tokens_out, known)
        calls = message.get("tool_calls") or []
        try:
            tool_calls = [{"id": call.get("id"), "name": call["function"]["name"],
                           "arguments": _arguments(call["function"].get("arguments"))} for call in calls]
        except (AttributeError, KeyError, TypeError):
            raise self.malformed("a tool call without function.name", tokens_in, tokens_out, known) from None
        reason = choice.get("finish_reason") or "stop"
        finish = "refusal" if message.get("refusal") else FINISH_REASONS.get(reason, reason)
        return LLMResponse(provider=self.name, model=model, content=_text(message.get("content")),
                           tool_calls=tool_calls, finish_reason=finish, tokens_in=tokens_in, tokens_out=tokens_out,
                           cached_in=as_int(details.get("cached_tokens")), usage_known=known)
