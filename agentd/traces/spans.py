"""From a run's audit lines to its span tree: the root, a span per step execution, per model
call and per tool call, with GenAI semantic-convention attributes and events.

Pure functions over audit records: the exporter and `agentd trace` build the same tree.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator

from agentd.traces import ids

SEMCONV_VERSION = "1.44.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "offline": "agentd.offline"}
STEP_EVENTS = {"llm_route": "agentd.llm_route", "breaker": "agentd.breaker",
               "pii_redacted": "agentd.pii_redacted", "agent_state": "agentd.agent_state"}
TOOL_OK = ("ok", "replayed")
CONTENT_FIELDS = {"system_instructions": "gen_ai.system_instructions", "input_messages": "gen_ai.input.messages",
                  "output_messages": "gen_ai.output.messages"}


@dataclass
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class SpanData:
    """One span as agentd knows it; the exporter turns it into an SDK ReadableSpan."""

    name: str
    cid: str
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    kind: str = "internal"  # or "client" (a model call)
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    error: str | None = None  # set: status ERROR with this description
    children: list["SpanData"] = field(default_factory=list)

    def walk(self) -> Iterator["SpanData"]:
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def duration_ms(self) -> float:
        return round((self.end_ns - self.start_ns) / 1e6, 1)


def iso_ns(value: Any) -> int | None:
    """ISO 8601 (agentd's ...Z form) to Unix nanoseconds, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(moment.timestamp() * 1_000_000) * 1000


def _ms_ns(value: Any) -> int:
    try:
        return max(0, int(float(value) * 1_000_000))
    except (TypeError, ValueError):
        return 0


def attrs(**values: Any) -> dict[str, Any]:
    """OTel attribute values only: drop None, keep str/bool/int/float and lists of them."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = [v if isinstance(v, (str, bool, int, float)) else str(v) for v in value]
        elif not isinstance(value, (str, bool, int, float)):
            value = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
        out[key.replace("__", ".")] = value
    return out


def _with_cid(cid: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"agentd.correlation_id": cid, **values}


# -- leaves ------------------------------------------------------------------------------

def chat_span(cid: str, record: dict[str, Any], parent_id: int) -> SpanData:
    latency_ns = _ms_ns(record.get("latency_ms"))
    started = iso_ns(record.get("started_at"))  # both in the line: the call began then and took latency_ms
    end_ns = started + latency_ns if started else iso_ns(record.get("ts")) or 0
    start_ns = started or end_ns - latency_ns
    status = str(record.get("status", "ok"))
    model = str(record.get("model", "?"))
    finish = record.get("finish_reason")
    values = attrs(gen_ai__operation__name="chat",
                   gen_ai__provider__name=PROVIDER_NAMES.get(str(record.get("provider")), record.get("provider")),
                   gen_ai__request__model=model, gen_ai__request__max_tokens=record.get("max_tokens"),
                   gen_ai__response__model=record.get("response_model"),
                   gen_ai__response__finish_reasons=[finish] if finish else None,
                   gen_ai__usage__input_tokens=record.get("tokens_in"),
                   gen_ai__usage__output_tokens=record.get("tokens_out"),
                   gen_ai__usage__cache_read__input_tokens=record.get("cached_in"),
                   error__type=None if status == "ok" else status,
                   agentd__cost_usd=record.get("cost_usd"), agentd__run_cost_usd=record.get("run_cost_usd"),
                   agentd__price_source=record.get("price_source"), agentd__attempt=record.get("attempt"),
                   agentd__step=record.get("step"), agentd__audit_seq=record.get("seq"))
    for name, key in CONTENT_FIELDS.items():  # in the audit line only with CAPTURE_MESSAGE_CONTENT=true
        if record.get(name) is not None:
            values[key] = record[name] if isinstance(record[name], str) else json.dumps(record[name],
                                                                                        ensure_ascii=False)
    return SpanData(name=f"chat {model}", cid=cid, span_id=ids.span_id(cid, "seq", record.get("seq")),
                    parent_id=parent_id, start_ns=start_ns, end_ns=max(end_ns, start_ns), kind="client",
                    attributes=_with_cid(cid, values), error=None if status == "ok" else status)


def tool_span(cid: str, record: dict[str, Any], parent_id: int) -> SpanData:
    end_ns = iso_ns(record.get("ts")) or 0
    start_ns = end_ns - _ms_ns(record.get("latency_ms"))
    tool = str(record.get("tool", "?"))
    status = str(record.get("status") or ("denied" if record.get("allowed") is False else "ok"))
    values = attrs(gen_ai__operation__name="execute_tool", gen_ai__tool__name=tool, gen_ai__tool__type="function",
                   error__type=None if status in TOOL_OK else status, agentd__tool__allowed=record.get("allowed"),
                   agentd__tool__status=status, agentd__tool__why=record.get("why"),
                   agentd__idempotency_key=record.get("idempotency_key"),
                   agentd__proposed_by=record.get("proposed_by"), agentd__step=record.get("step"),
                   agentd__audit_seq=record.get("seq"))
    return SpanData(name=f"execute_tool {tool}", cid=cid, span_id=ids.span_id(cid, "seq", record.get("seq")),
                    parent_id=parent_id, start_ns=start_ns, end_ns=end_ns, attributes=_with_cid(cid, values),
                    error=None if status in TOOL_OK else status)


def event_of(record: dict[str, Any]) -> SpanEvent:
    skip = {"ts", "event", "seq", "prev", "hash", "correlation_id", "workflow", "step"}
    return SpanEvent(STEP_EVENTS.get(record["event"], f"agentd.{record['event']}"), iso_ns(record.get("ts")) or 0,
                     attrs(**{k: v for k, v in record.items() if k not in skip}))


# -- steps -----------------------------------------------------------------------------

@dataclass
class Pending:
    """What a run logged since its last step ended: the children and events of the next step span."""

    children: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.children or self.events)


def fill(cid: str, span: SpanData, pending: Pending) -> SpanData:
    for record in pending.children:
        child = chat_span(cid, record, span.span_id) if record["event"] == "llm_call" \
            else tool_span(cid, record, span.span_id)
        span.children.append(child)
        if record["event"] == "llm_call" and int(record.get("attempt") or 1) > 1:
            span.events.append(SpanEvent("agentd.retry", child.start_ns,
                                         attrs(attempt=record.get("attempt"), model=record.get("model"))))
    span.events += [event_of(record) for record in pending.events]
    span.events.sort(key=lambda event: event.time_ns)
    return span


def step_span(cid: str, record: dict[str, Any], pending: Pending, root_id: int) -> SpanData:
    name, started_at = str(record.get("step", "?")), str(record.get("started_at", ""))
    start_ns = iso_ns(started_at) or (iso_ns(record.get("ts")) or 0) - _ms_ns(record.get("duration_ms"))
    status = str(record.get("status", "ok"))
    error = None if status in ("ok", "review", "paused") else (record.get("error_class") or status)
    values = attrs(agentd__step=name, agentd__step__status=status, agentd__error_class=record.get("error_class"),
                   error__type=error, agentd__audit_seq=record.get("seq"))
    span = SpanData(name=f"agentd.step {name}", cid=cid, span_id=ids.step_span_id(cid, name, started_at),
                    parent_id=root_id, start_ns=start_ns, end_ns=start_ns + _ms_ns(record.get("duration_ms")),
                    attributes=_with_cid(cid, values), error=error)
    return fill(cid, span, pending)


def interrupted_step(cid: str, pending: Pending, root_id: int) -> SpanData:
    """A step cut short by a crash: it has children but no `step` line; it spans what it logged."""
    first = (pending.children or pending.events)[0]
    name = str(next((r["step"] for r in pending.children + pending.events if r.get("step")), "?"))
    times = [iso_ns(r.get("started_at")) or iso_ns(r.get("ts")) or 0 for r in pending.children + pending.events]
    ends = [iso_ns(r.get("ts")) or 0 for r in pending.children + pending.events]
    values = attrs(agentd__step=name, agentd__step__status="interrupted", error__type="interrupted")
    span = SpanData(name=f"agentd.step {name}", cid=cid, span_id=ids.span_id(cid, "interrupted", first.get("seq")),
                    parent_id=root_id, start_ns=min(times), end_ns=max(ends), attributes=_with_cid(cid, values),
                    error="interrupted")
    return fill(cid, span, pending)
