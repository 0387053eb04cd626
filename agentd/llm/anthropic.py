"""The Anthropic provider: the Messages API, with structured output through one forced tool.

History turns use agentd's neutral shape (see agentd.llm.openai); they are translated to
content blocks here: an assistant's tool calls become tool_use blocks, a tool result a
tool_result block in a user turn.
"""
from __future__ import annotations

import json
from typing import Any

from agentd.llm.base import LLMRequest, LLMResponse
from agentd.llm.http import HTTPProvider, as_int, tool_name

API_VERSION = "2023-06-01"
ANSWER_TOOL = "Record your answer. Call this tool exactly once with the complete structured result."
STOP_REASONS = {"end_turn": "stop", "tool_use": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                "max_tokens": "length", "model_context_window_exceeded": "length", "refusal": "refusal"}


def _blocks(turn: dict[str, Any]) -> tuple[str, Any]:
    """(role, content) of one neutral history turn in Messages form."""
    role, content = turn.get("role", "user"), turn.get("content")
    if role == "tool":
        return "user", [{"type": "tool_result", "tool_use_id": turn.get("tool_call_id"),
                         "content": content if isinstance(content, str) else json.dumps(content)}]
    calls = turn.get("tool_calls") or []
    if role != "assistant" or not calls:
        return ("assistant" if role == "assistant" else "user"), content if content is not None else ""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    blocks += [{"type": "tool_use", "id": call.get("id"), "name": call.get("name"),
                "input": call.get("arguments") if isinstance(call.get("arguments"), dict) else {}}
               for call in calls]
    return "assistant", blocks


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    return content if isinstance(content, list) else [{"type": "text", "text": content}] if content else []


def _messages(request: LLMRequest) -> list[dict[str, Any]]:
    """The user message and the history; consecutive turns of one role are merged as the API wants."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": request.user_message()}]
    for turn in request.history:
        role, content = _blocks(turn)
        if messages[-1]["role"] != role:
            messages.append({"role": role, "content": content})
            continue
        messages[-1]["content"] = _as_blocks(messages[-1]["content"]) + _as_blocks(content)
    return messages


class AnthropicProvider(HTTPProvider):
    name = "anthropic"
    # the Messages API adds a tool-use system prompt (~350 tokens, more for `any`/forced tools) to the input,
    # and a structured ask sends the answer tool's description and framing besides its name and schema
    prompt_overhead_tokens = 600 + len(json.dumps([{"name": "", "description": ANSWER_TOOL, "input_schema": {}}]))

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key, "anthropic-version": API_VERSION, "content-type": "application/json"}

    def body(self, request: LLMRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens, "system": request.system,
                                "messages": _messages(request)}
        if request.tools:
            body["tools"] = [{"name": tool["name"], "description": tool.get("description", ""),
                              "input_schema": tool.get("parameters") or {"type": "object", "properties": {}}}
                             for tool in request.tools]
            body["tool_choice"] = {"type": "auto"}
        else:
            name = tool_name(request.schema_name)
            body["tools"] = [{"name": name, "description": ANSWER_TOOL, "input_schema": request.schema}]
            body["tool_choice"] = {"type": "tool", "name": name}
        return body

    async def complete(self, request: LLMRequest, model: str, timeout_s: float) -> LLMResponse:
        data = await self.post_json("/v1/messages", self.headers(), self.body(request, model), timeout_s)
        return self.parse(data, model, forced=None if request.tools else tool_name(request.schema_name))

    def parse(self, data: dict[str, Any], model: str, forced: str | None) -> LLMResponse:
        """`forced` names the answer tool when the answer is its input, None when tools are real."""
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        cached_in = as_int(usage.get("cache_read_input_tokens"))
        # input_tokens excludes cache reads and writes; agentd counts all input, cached_in a part of it
        tokens_in = as_int(usage.get("input_tokens")) + cached_in + as_int(usage.get("cache_creation_input_tokens"))
        tokens_out = as_int(usage.get("output_tokens"))
        known = "input_tokens" in usage or "output_tokens" in usage
        blocks = data.get("content")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise self.malformed("no content blocks", tokens_in, tokens_out, known)
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        if any(not isinstance(b.get("input"), dict) or not b.get("name") for b in uses):
            raise self.malformed("a tool_use block without name or input", tokens_in, tokens_out, known)
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text") or None
        reason = data.get("stop_reason") or "end_turn"
        response = LLMResponse(provider=self.name, model=model, content=text, tokens_in=tokens_in,
                               tokens_out=tokens_out, cached_in=cached_in, usage_known=known,
                               finish_reason=STOP_REASONS.get(reason, reason))
        answer = next((b["input"] for b in uses if b["name"] == forced), None) if forced else None
        if answer is not None:
            response.parsed, response.content = answer, json.dumps(answer, ensure_ascii=False)
        elif not forced:
            response.tool_calls = [{"id": b.get("id"), "name": b["name"], "arguments": b["input"]} for b in uses]
        return response
