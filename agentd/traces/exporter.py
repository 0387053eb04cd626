"""The trace exporter: its own asyncio task reads the audit log from a durable cursor, builds
finished runs' spans, sends them in bounded batches, and moves the cursor only after the
collector acknowledged. A collector that is down is retried with backoff; nothing is dropped.

File reads, encoding and the cursor's fsync run in worker threads, the POST on the loop: the
pipeline never waits for export. One batch is in flight at a time, so a batch is sent only
once the cursor of the one before it is on disk.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import Any, Callable, Protocol

from agentd import logs
from agentd.config import Config
from agentd.traces.cursor import Cursor
from agentd.traces.otlp import Ack, OtlpSender
from agentd.traces.runs import Assembler, Finished
from agentd.traces.spans import SpanData
from agentd.traces.tail import AuditTail

log = logs.get("agentd.traces")
READ_LINES = 2000
BACKOFF_BASE_S = 0.5
IDLE_CURSOR_EVERY_S = 1.0


class Sender(Protocol):
    def encode(self, spans: list[SpanData]) -> bytes: ...

    async def post(self, body: bytes) -> Ack: ...

    async def close(self) -> None: ...


class TraceExporter:
    def __init__(self, config: Config, metrics: Any = None, sender: Sender | None = None,
                 sleep: Callable[[float], Any] | None = None, rng: Callable[[], float] = random.random):
        self.config = config
        self.metrics = metrics
        self.sender: Sender = sender if sender is not None else OtlpSender(config)
        self.batch_spans = config.otel_batch_spans
        self.cursor = Cursor.load(config.state_dir)
        self.exported_seq = self.cursor.exported_seq
        self.tail = AuditTail(config.logs_dir, self.cursor.reread_from)
        self.assembler = Assembler()
        self.pending: deque[Finished] = deque()
        self.read_seq = self.cursor.reread_from - 1
        self.spans_sent = self.export_errors = self.spans_dropped = 0
        self._sleep = sleep
        self._rng = rng
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cursor_saved_at = 0.0
        self._gave_up = False  # a send abandoned because stop() was called
        self._flushing = False

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "TraceExporter":
        if self.metrics is not None:
            self.metrics.otlp_exported_seq.set(self.exported_seq)
        self._task = asyncio.create_task(self.run(), name="trace-exporter")
        log.info("trace_export_started", exported_seq=self.exported_seq, reread_from=self.cursor.reread_from)
        return self

    async def stop(self, drain_s: float = 2.0) -> None:
        """Send what is ready for up to `drain_s`, then cancel; unsent spans go at the next start."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), drain_s)
        except TimeoutError:
            self._task.cancel()  # a read in a worker thread may still run: its file is left to the exit
            await asyncio.gather(self._task, return_exceptions=True)
        else:
            self.tail.close()
        log.info("trace_export_stopped", exported_seq=self.exported_seq, pending_runs=len(self.pending))

    async def drain(self) -> None:
        """Read and send until caught up, part-filled batches included (for a caller driving it itself)."""
        self._flushing = True
        try:
            while await self.step() or self.pending:
                pass
        finally:
            self._flushing = False

    async def close(self) -> None:
        """Release the HTTP session and the audit file (for a caller that drove step() itself)."""
        await self.sender.close()
        self.tail.close()

    async def run(self) -> None:
        try:
            while True:
                stop_seen = self._stopping.is_set()  # a last round must begin after stop() was called
                if await self.step() and not self._gave_up:
                    continue
                if stop_seen or self._gave_up:
                    return
                if self._stopping.is_set():
                    continue
                await self._wait(self.config.otel_schedule_delay_s)
        finally:
            await self.sender.close()

    # -- one round: read, then send a batch if one is ready ------------------------------
    async def step(self) -> bool:
        """Read new audit lines, send one batch if ready; False when there was nothing to do."""
        records: list[dict[str, Any]] = []
        if self._pending_spans() < self.batch_spans:
            records = await asyncio.to_thread(self.tail.read, READ_LINES)
            for record in records:
                self._feed(record)
        if self.pending and (self._pending_spans() >= self.batch_spans or self._due()):
            await self._send(self._take_batch())
            return True
        if not records:
            await self._save_idle_cursor()
        return bool(records)

    def _feed(self, record: dict[str, Any]) -> None:
        self.read_seq = int(record.get("seq", self.read_seq))
        finished = self.assembler.feed(record)
        if finished is not None and finished.seq > self.exported_seq:  # at or below: acknowledged before
            finished.queued_at = time.monotonic()
            self.pending.append(finished)

    def _due(self) -> bool:
        """A part-filled batch goes once its oldest run waited OTEL_BSP_SCHEDULE_DELAY (or at stop)."""
        waited_s = time.monotonic() - self.pending[0].queued_at
        return waited_s >= self.config.otel_schedule_delay_s or self._stopping.is_set() or self._flushing

    def _pending_spans(self) -> int:
        return sum(len(item.spans) for item in self.pending)

    def _take_batch(self) -> list[Finished]:
        """Whole runs, up to OTEL_BSP_MAX_EXPORT_BATCH_SIZE spans (a bigger run goes alone)."""
        batch, count = [self.pending[0]], len(self.pending[0].spans)
        for item in list(self.pending)[1:]:
            if count + len(item.spans) > self.batch_spans:
                break
            batch.append(item)
            count += len(item.spans)
        return batch

    async def _send(self, batch: list[Finished]) -> None:
        spans = [span for item in batch for span in item.spans]
        body = await asyncio.to_thread(self.sender.encode, spans)
        attempt = 0
        while True:
            ack = await self.sender.post(body)
            if ack.ok:
                break
            attempt += 1
            self.export_errors += 1
            self._count("otlp_errors")
            delay_s = self.backoff_s(attempt)
            log.warning("trace_export_failed", status=ack.status, error=ack.detail or None, attempt=attempt,
                        spans=len(spans), retry_in_s=round(delay_s, 2))
            if await self._wait(delay_s):
                self._gave_up = True
                return  # stopping: the batch is not acknowledged, the next start sends it
        self._acknowledged(batch, spans, ack)
        last = batch[-1]
        await self._save(Cursor(last.seq, last.reread_from))

    def _acknowledged(self, batch: list[Finished], spans: list[SpanData], ack: Ack) -> None:
        for _ in batch:
            self.pending.popleft()
        dropped = len(spans) if ack.status == 400 else ack.rejected_spans
        if dropped:
            self.spans_dropped += dropped
            self._count("otlp_dropped", dropped)
            log.error("trace_export_refused", status=ack.status, spans=dropped, detail=ack.detail or None)
        self.spans_sent += len(spans) - dropped
        self._count("otlp_spans", len(spans) - dropped)

    def backoff_s(self, attempt: int) -> float:
        """Exponential with jitter: between half and all of min(cap, 0.5 s * 2^(attempt-1))."""
        ceiling = min(self.config.otel_retry_max_s, BACKOFF_BASE_S * 2 ** min(attempt - 1, 30))
        return ceiling / 2 + self._rng() * ceiling / 2

    # -- the cursor ----------------------------------------------------------------------
    async def _save(self, cursor: Cursor) -> None:
        await asyncio.to_thread(cursor.save, self.config.state_dir)
        self.cursor = cursor
        self.exported_seq = cursor.exported_seq
        self._cursor_saved_at = time.monotonic()
        if self.metrics is not None:
            self.metrics.otlp_exported_seq.set(self.exported_seq)

    async def _save_idle_cursor(self) -> None:
        """Caught up with nothing unsent: lines that finished no run count as exported."""
        if self.pending or self.read_seq <= self.exported_seq:
            return
        if time.monotonic() - self._cursor_saved_at < IDLE_CURSOR_EVERY_S and not self._stopping.is_set():
            return
        await self._save(Cursor(self.read_seq, self.assembler.reread_from(self.read_seq + 1)))

    # -- helpers -------------------------------------------------------------------------
    async def _wait(self, delay_s: float) -> bool:
        """Sleep `delay_s` (the injected clock in tests); True if stopping was asked meanwhile."""
        if self._sleep is not None:
            await self._sleep(delay_s)
            return self._stopping.is_set()
        try:
            await asyncio.wait_for(self._stopping.wait(), delay_s)
        except TimeoutError:
            return False
        return True

    def _count(self, name: str, amount: int = 1) -> None:
        if self.metrics is not None and amount:
            getattr(self.metrics, name).inc(amount)

    def lag(self, written_seq: int) -> int:
        """Audit lines written but not yet exported (for /metrics)."""
        return max(0, written_seq - self.exported_seq)


def start(config: Config, metrics: Any = None) -> TraceExporter | None:
    """The exporter task when an OTLP endpoint is configured, else None (nothing runs)."""
    if not config.traces_url:
        return None
    return TraceExporter(config, metrics).start()


def start_or_log(config: Config, metrics: Any = None) -> TraceExporter | None:
    """`start`, but a cursor that cannot be read turns tracing off with an error line: the daemon's job goes on."""
    from agentd.traces.cursor import CursorError

    try:
        return start(config, metrics)
    except CursorError as exc:
        log.error("trace_export_off", error=str(exc))
        return None
