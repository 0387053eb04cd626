"""The trace exporter: a supervised asyncio task reads the audit log from a durable cursor, builds
finished runs' spans, sends them in bounded batches, and moves the cursor only after the
collector acknowledged. A collector that is down is retried with backoff; nothing is dropped.
When the task itself raises (the cursor cannot be written, a bug), the supervisor it was spawned
by restarts it with backoff; what it held in memory carries over, so no line is read twice.
`view()` is /health's `traces` object.

File reads, encoding and the cursor's fsync run in worker threads, the POST on the loop: the
pipeline never waits for export. One batch is in flight at a time, so a batch is sent only
once the cursor of the one before it is on disk.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import Any, Awaitable, Callable, Protocol

from agentd import logs
from agentd.config import Config
from agentd.traces.cursor import Cursor
from agentd.traces.otlp import Ack, OtlpSender
from agentd.traces.assembler import Assembler, Finished
from agentd.traces.spans import SpanData
from agentd.traces.tail import AuditTail

log = logs.get("agentd.traces")
READ_LINES = 2000
BACKOFF_BASE_S = 0.5
IDLE_CURSOR_EVERY_S = 1.0
MALFORMED = (ValueError, TypeError, KeyError, AttributeError)  # an audit line the span builders cannot read
# agentd.lifecycle.supervisor.Supervisor.spawn: (name, factory, forever) -> its Supervised item
Spawn = Callable[[str, Callable[[], Awaitable[Any]], bool], Any]


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
        self.assembler = Assembler(on_drop=self._dropped)
        self.pending: deque[Finished] = deque()
        self.read_seq = self.cursor.reread_from - 1
        self.spans_sent = self.export_errors = self.spans_dropped = self.lines_skipped = 0
        self.last_error = ""
        self.failing = False  # the last export attempt failed, or the task raised, with no success since
        self.stopped = False
        self._item: Any = None  # the supervisor's record of this task (restarts)
        self._sleep = sleep
        self._rng = rng
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cursor_saved_at = 0.0
        self._gave_up = False  # a send abandoned because stop() was called
        self._flushing = False
        self._reading = False  # a tail read runs in a worker thread now

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, spawn: Spawn) -> "TraceExporter":
        """Run as task `traces` of a supervisor (`spawn` is its Supervisor.spawn)."""
        if self.metrics is not None:
            self.metrics.otlp_exported_seq.set(self.exported_seq)
        self._item = spawn("traces", self._run_noting_failure, False)
        self._task = self._item.task
        log.info("trace_export_started", exported_seq=self.exported_seq, reread_from=self.cursor.reread_from)
        return self

    async def stop(self, drain_s: float = 2.0) -> None:
        """Send what is ready for up to `drain_s`, then cancel; unsent spans go at the next start.

        Never raises: a last round that fails is the supervisor's to log (and retry within the drain)."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), drain_s)
        except TimeoutError:
            reading = self._reading
            self._task.cancel()  # a read in a worker thread may still run: its file is then left to the exit
            await asyncio.gather(self._task, return_exceptions=True)
            if not reading:
                self.tail.close()
        else:
            self.tail.close()
        self.stopped = True
        log.info("trace_export_stopped", exported_seq=self.exported_seq, pending_runs=len(self.pending),
                 last_error=self.last_error or None)

    def view(self) -> dict[str, Any]:
        """/health's `traces`: ok | failing | stopped, what was exported, the last error, what is held."""
        return {"state": "stopped" if self.stopped else "failing" if self.failing else "ok",
                "spans_exported": self.spans_sent, "spans_dropped": self.spans_dropped,
                "exported_seq": self.exported_seq, "export_errors": self.export_errors,
                "restarts": getattr(self._item, "failures", 0), "last_error": self.last_error or None,
                "lines_skipped": self.lines_skipped, "runs_evicted": self.assembler.evicted_runs,
                **self.assembler.size()}

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

    async def _run_noting_failure(self) -> None:
        try:
            await self.run()
        except Exception as exc:
            self._failed(f"{exc.__class__.__name__}: {exc}")
            raise  # the supervisor logs it and restarts run() with backoff

    def _failed(self, error: str) -> None:
        self.failing, self.last_error = True, error[:300]

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
            self._reading = True
            try:
                records = await asyncio.to_thread(self.tail.read, READ_LINES)
            finally:
                self._reading = False
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
        try:
            finished = self.assembler.feed(record)
        except MALFORMED as exc:  # skipped, not retried: the same line would fail again
            self.lines_skipped += 1
            log.error("trace_line_skipped", seq=self.read_seq, event=str(record.get("event")),
                      error=f"{exc.__class__.__name__}: {exc}"[:200])
            return
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
            self._failed(f"HTTP {ack.status}" if ack.status else ack.detail or "no answer")
            self._count("otlp_errors")
            delay_s = self.backoff_s(attempt)
            log.warning("trace_export_failed", status=ack.status, error=ack.detail or None, attempt=attempt,
                        spans=len(spans), retry_in_s=round(delay_s, 2))
            if await self._wait(delay_s):
                self._gave_up = True
                return  # stopping: the batch is not acknowledged, the next start sends it
        self.failing = False
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
        self.failing = False
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
    def _dropped(self, cid: str, lines: int, why: str) -> None:
        log.warning("trace_run_truncated", correlation_id=cid, lines_dropped=lines, why=why,
                    open_runs=len(self.assembler.open))
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


def start(config: Config, metrics: Any, spawn: Spawn) -> TraceExporter | None:
    """The exporter task (spawned by `spawn`) when an OTLP endpoint is configured, else None (nothing runs)."""
    if not config.traces_url:
        return None
    return TraceExporter(config, metrics).start(spawn)


def start_or_log(config: Config, metrics: Any, spawn: Spawn) -> TraceExporter | None:
    """`start`, but a cursor that cannot be read turns tracing off with an error line: the daemon's job goes on."""
    from agentd.traces.cursor import CursorError

    try:
        return start(config, metrics, spawn)
    except CursorError as exc:
        log.error("trace_export_off", error=str(exc))
        return None
