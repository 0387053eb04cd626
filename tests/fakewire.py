"""The fake model API's wire formats: what a request asks (Seen), what to do with it (Fault),
and the OpenAI and Anthropic answer bodies for each fault. The server is tests/fakellm.py."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from agentd.llm.offline import minimal_instance

DOCUMENT = re.compile(r"<<<DOCUMENT ([0-9a-f]+)\n(.*?)\nDOCUMENT \1>>>", re.S)
KINDS = ("ok", "answer", "status", "hang", "disconnect", "malformed", "empty", "not_json", "schema_invalid",
         "tool_call", "length", "refusal", "content_filter", "no_usage")


@dataclass(frozen=True)
class Fault:
    """What the server does with one request. Strings work too: "500", "429", "hang", "not_json", ..."""

    kind: str
    status: int = 0
    retry_after_s: float | None = None   # sent as Retry-After (seconds)
    retry_after_ms: int | None = None    # sent as retry-after-ms
    name: str = ""                       # tool_call: the tool's name
    arguments: Any = None                # tool_call: a dict, or a raw string (OpenAI only)
    answer: Any = None                   # answer: the value to answer with

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(KINDS)}")

    @classmethod
    def of(cls, spec: "Fault | str | int") -> "Fault":
        if isinstance(spec, Fault):
            return spec
        if str(spec).isdigit():
            return cls("status", status=int(spec))
        return cls(str(spec))

    @property
    def label(self) -> str:
        return str(self.status) if self.kind == "status" else "ok" if self.kind == "answer" else self.kind


def status(code: int, retry_after_s: float | None = None, retry_after_ms: int | None = None) -> Fault:
    return Fault("status", status=code, retry_after_s=retry_after_s, retry_after_ms=retry_after_ms)


def tool_call(name: str, arguments: Any) -> Fault:
    return Fault("tool_call", name=name, arguments=arguments)


def answer(value: Any) -> Fault:
    return Fault("answer", answer=value)


FaultSpec = Fault | str | int
OK = Fault("ok")


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    wire: str                      # "openai" or "anthropic"
    headers: dict[str, str]
    body: dict[str, Any]
    model: str
    prompt: str                    # system and every message's text, joined
    document: str | None           # the text between <<<DOCUMENT and DOCUMENT>>>
    schema: dict[str, Any] | None  # the output schema (response_format, or the forced tool's)
    schema_name: str
    tools: list[dict[str, Any]]    # real tools offered (not the forced answer tool)
    fault: str = "ok"              # what the server did: ok, 500, hang, ...


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(_text_of(part.get("text") or part.get("content") or "")
                         for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def default_answer(seen: Seen) -> Any:
    """A schema-valid answer; for the triage schema a plausible, confident one."""
    schema = seen.schema or {}
    value = minimal_instance(schema) if schema else {}
    props = schema.get("properties", {})
    if "document_type" in props and "confidence" in props:
        triage = {"document_type": "other", "summary": f"A document of {len(seen.document or '')} characters.",
                  "requested_action": "none", "party": "", "confidence": 0.9}
        value.update({k: v for k, v in triage.items() if k in props})
    return value


def broken(value: Any) -> Any:
    """`value` made to fail its schema: confidence 4, or every field of the wrong type."""
    if isinstance(value, dict) and "confidence" in value:
        return {**value, "confidence": 4}
    if isinstance(value, dict) and value:
        return {k: "x" if isinstance(v, (list, dict, int, float)) else 12345 for k, v in value.items()}
    return {"_schema_invalid": [True]} if isinstance(value, dict) else {"value": value}


def _seen(path: str, wire: str, headers: dict[str, str], body: dict[str, Any], texts: list[str],
          schema: dict[str, Any] | None, schema_name: str, tools: list[dict[str, Any]]) -> Seen:
    prompt = "\n".join(texts)
    found = DOCUMENT.search(prompt)
    return Seen(path=path, wire=wire, headers=headers, body=body, model=str(body.get("model", "")), prompt=prompt,
                document=found.group(2) if found else None, schema=schema, schema_name=schema_name, tools=tools)


def openai_seen(path: str, headers: dict[str, str], body: dict[str, Any]) -> Seen:
    schema = (body.get("response_format") or {}).get("json_schema") or {}
    tools = [t.get("function", t) for t in body.get("tools") or []]
    texts = [_text_of(m.get("content")) for m in body.get("messages") or []]
    return _seen(path, "openai", headers, body, texts, schema.get("schema"), schema.get("name", ""), tools)


def anthropic_seen(path: str, headers: dict[str, str], body: dict[str, Any]) -> Seen:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {}
    forced = next((t for t in tools if choice.get("type") == "tool" and t.get("name") == choice.get("name")), None)
    texts = [_text_of(body.get("system"))] + [_text_of(m.get("content")) for m in body.get("messages") or []]
    return _seen(path, "anthropic", headers, body, texts, forced and forced.get("input_schema"),
                 forced["name"] if forced else "", [] if forced else tools)


def error_body(seen: Seen, code: int, message: str) -> dict[str, Any]:
    if seen.wire == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    return {"error": {"message": message, "type": "fake_error", "code": code}}


Tokens = tuple[int, int, int]  # prompt (all input), completion, cached (part of prompt)


def openai_answer(seen: Seen, fault: Fault, value: Any, tokens: Tokens, next_id: Callable[[], int]) -> dict[str, Any]:
    prompt, completion, cached = tokens
    message: dict[str, Any] = {"role": "assistant", "content": json.dumps(value), "refusal": None}
    finish = {"length": "length", "content_filter": "content_filter"}.get(fault.kind, "stop")
    if fault.kind == "not_json":
        message["content"] = "It looks like an invoice to me, but I am not sure."
    elif fault.kind == "length":
        message["content"] = message["content"][:10]
    elif fault.kind in ("refusal", "content_filter"):
        message["content"] = None
        message["refusal"] = "I can't help with that." if fault.kind == "refusal" else None
    elif fault.kind == "tool_call":
        arguments = fault.arguments if isinstance(fault.arguments, str) else json.dumps(fault.arguments)
        message["content"], finish = None, "tool_calls"
        message["tool_calls"] = [{"id": f"call_{next_id()}", "type": "function",
                                  "function": {"name": fault.name, "arguments": arguments}}]
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": cached}}
    envelope = {"id": f"chatcmpl-{next_id()}", "object": "chat.completion", "model": seen.model, "usage": usage}
    if fault.kind == "no_usage":  # a server that never reports token counts
        del envelope["usage"]
    if fault.kind == "empty":
        return envelope
    return {**envelope, "choices": [{"index": 0, "message": message, "finish_reason": finish}]}


def anthropic_answer(seen: Seen, fault: Fault, value: Any, tokens: Tokens,
                     next_id: Callable[[], int]) -> dict[str, Any]:
    prompt, completion, cached = tokens
    stop, text = "tool_use", json.dumps(value)
    blocks: list[dict[str, Any]] = []
    if fault.kind == "tool_call":
        blocks.append({"type": "tool_use", "id": f"toolu_{next_id()}", "name": fault.name,
                       "input": fault.arguments if isinstance(fault.arguments, dict) else {}})
    elif fault.kind in ("refusal", "content_filter"):
        stop = "refusal"
    elif fault.kind == "length":
        stop = "max_tokens"
        blocks.append({"type": "text", "text": text[:10]})
    elif fault.kind == "not_json" or not seen.schema_name:  # no forced answer tool: the answer is text
        stop = "end_turn"
        blocks.append({"type": "text", "text": "It looks like an invoice to me." if fault.kind == "not_json" else text})
    else:
        blocks.append({"type": "tool_use", "id": f"toolu_{next_id()}", "name": seen.schema_name, "input": value})
    usage = {"input_tokens": prompt - cached, "output_tokens": completion, "cache_read_input_tokens": cached,
             "cache_creation_input_tokens": 0}
    envelope = {"id": f"msg_{next_id()}", "type": "message", "role": "assistant", "model": seen.model, "usage": usage}
    if fault.kind == "no_usage":
        del envelope["usage"]
    return envelope if fault.kind == "empty" else {**envelope, "content": blocks, "stop_reason": stop}
