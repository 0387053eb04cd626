"""A real OTLP/HTTP trace receiver on 127.0.0.1: POST /v1/traces, protobuf decoded with
opentelemetry-proto. It records every request it received and, apart, the batches it
acknowledged (answered 2xx); it can answer an error status, hold requests (a crash window), or
call `on_request` as each request arrives (to break something on the exporter's side meanwhile)."""
from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                       ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.loopback import LoopbackServer


def value_of(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    scope: str
    schema_url: str

    @property
    def key(self) -> tuple[str, str]:
        return self.trace_id, self.span_id


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(Span(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex(),
                    name=s.name, kind=s.kind, start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                    attributes={a.key: value_of(a.value) for a in s.attributes},
                    events=[(e.name, {a.key: value_of(a.value) for a in e.attributes}) for e in s.events],
                    status_code=s.status.code, status_message=s.status.message, resource=resource,
                    scope=scope_spans.scope.name, schema_url=scope_spans.schema_url))
    return spans


@dataclass
class Collector(LoopbackServer):
    status: int = 200
    hold: bool = False  # requests wait, then get 503 when released (never acknowledged)
    port: int = 0
    received: list[list[Span]] = field(default_factory=list)
    acked: list[list[Span]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    on_request: Callable[[], None] | None = None
    shutdown_timeout_s = 0.2

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release: asyncio.Event | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)

    async def start(self) -> "Collector":
        self._release = asyncio.Event()
        return await super().start()

    async def stop(self) -> None:
        if self._release is not None:
            self._release.set()
        await super().stop()

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        spans = decode(body)
        with self._lock:
            self.received.append(spans)
            self.headers_seen.append(dict(request.headers))
            holding, status = self.hold, self.status
        if self.on_request is not None:
            self.on_request()
        if holding:
            assert self._release is not None
            await self._release.wait()
            return web.Response(status=503)
        if status >= 300:
            return web.Response(status=status)
        with self._lock:
            self.acked.append(spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def release(self) -> None:
        """End the hold: held requests get 503, new ones the configured status."""
        with self._lock:
            self.hold = False
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def held(self) -> int:
        """Requests received but not acknowledged."""
        with self._lock:
            return len(self.received) - len(self.acked)

    # -- what arrived --------------------------------------------------------------------
    def spans(self) -> list[Span]:
        """Every acknowledged span, in arrival order."""
        with self._lock:
            return [span for batch in self.acked for span in batch]

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter(span.key for span in self.spans())

    def traces(self) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        for span in self.spans():
            out.setdefault(span.trace_id, []).append(span)
        return out

    def roots(self) -> list[Span]:
        return [span for span in self.spans() if not span.parent_span_id]
