"""OTLP/HTTP protobuf: agentd's spans as SDK ReadableSpans, encoded by the OpenTelemetry
exporter's own encoder, POSTed with aiohttp on the event loop.

Why not OTLPSpanExporter.export() in a thread: it retries and sleeps inside a call that
cannot be cancelled, hides the HTTP status behind SUCCESS/FAILURE, and each batch would
hold a thread. Here the encoding is the SDK's (`encode_spans`), the acknowledgement is the
collector's 2xx that we see ourselves, and the retry, its backoff and shutdown are the
exporter's (agentd.traces.exporter), driven by its clock.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
from google.protobuf.message import DecodeError
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from agentd import __version__
from agentd.config import Config
from agentd.traces import ids
from agentd.traces.spans import SCHEMA_URL, SpanData

CONTENT_TYPE = "application/x-protobuf"
NOT_RETRYABLE = (400,)  # the collector will never take this batch (OTLP spec: drop it)
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def resource_of(config: Config) -> Resource:
    """service.name from OTEL_SERVICE_NAME (default agentd), which wins over OTEL_RESOURCE_ATTRIBUTES."""
    values: dict[str, Any] = {"service.name": "agentd", "service.version": __version__}
    values.update(dict(config.otel_resource_attributes))
    if config.source.get("OTEL_SERVICE_NAME", "").strip() or "service.name" not in dict(config.otel_resource_attributes):
        values["service.name"] = config.otel_service_name
    return Resource(values)


def readable(span: SpanData, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    trace_id = ids.trace_id(span.cid)
    parent = SpanContext(trace_id, span.parent_id, is_remote=False, trace_flags=SAMPLED) \
        if span.parent_id is not None else None
    status = Status(StatusCode.ERROR, span.error) if span.error else Status(StatusCode.UNSET)
    return ReadableSpan(
        name=span.name, context=SpanContext(trace_id, span.span_id, is_remote=False, trace_flags=SAMPLED),
        parent=parent, resource=resource, attributes=span.attributes,
        events=[Event(e.name, e.attributes, e.time_ns) for e in span.events],
        kind=SpanKind.CLIENT if span.kind == "client" else SpanKind.INTERNAL, status=status,
        start_time=span.start_ns, end_time=span.end_ns, instrumentation_scope=scope)


@dataclass(frozen=True)
class Ack:
    """The collector's answer to one POST."""

    ok: bool  # acknowledged (2xx), or refused for good (400): either way not sent again
    retry: bool  # worth sending again later
    status: int | None
    rejected_spans: int = 0
    detail: str = ""


class OtlpSender:
    """One aiohttp session to the traces URL; the headers are secrets and never logged."""

    def __init__(self, config: Config):
        self.url = config.traces_url
        self.headers = {**dict(config.otel_headers), "Content-Type": CONTENT_TYPE}
        self.timeout = aiohttp.ClientTimeout(total=config.otel_timeout_s)
        self.resource = resource_of(config)
        self.scope = InstrumentationScope("agentd", __version__, SCHEMA_URL)
        self._session: aiohttp.ClientSession | None = None

    def encode(self, spans: list[SpanData]) -> bytes:
        """An ExportTraceServiceRequest (CPU only: the exporter runs it in a worker thread)."""
        request = encode_spans([readable(span, self.resource, self.scope) for span in spans])
        return request.SerializeToString()

    async def post(self, body: bytes) -> Ack:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(self.url, data=body, headers=self.headers,
                                          allow_redirects=False) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return Ack(ok=False, retry=True, status=None, detail=exc.__class__.__name__)
        if 200 <= status < 300:
            return Ack(ok=True, retry=False, status=status, rejected_spans=_rejected(payload))
        if status in NOT_RETRYABLE:
            return Ack(ok=True, retry=False, status=status, detail=payload[:200].decode("utf-8", "replace"))
        return Ack(ok=False, retry=True, status=status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _rejected(payload: bytes) -> int:
    """partial_success.rejected_spans of a protobuf ExportTraceServiceResponse (0 when absent)."""
    if not payload:
        return 0
    response = ExportTraceServiceResponse()
    try:
        response.ParseFromString(payload)
    except DecodeError:
        return 0  # a JSON or empty body from a lenient collector: accepted in full
    return int(response.partial_success.rejected_spans)
