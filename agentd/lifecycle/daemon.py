"""The daemon's lifecycle: startup (recovery first), the main loop, a draining shutdown. Signals set flags."""
from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from typing import Any

import sdnotify

from agentd import __version__, logs, schemas
from agentd.lifecycle import reloading
from agentd.config import Config
from agentd.intake.watcher import Candidate, Watcher
from agentd.llm.base import Provider
from agentd.server.app import HttpServer, make_app
from agentd.server.console.queue import stats as review_stats
from agentd.server.health import HealthView
from agentd.server.probe import Probe
from agentd.lifecycle.services import build
from agentd.spool.counts import count_entries
from agentd.spool.layout import INCOMING
from agentd.spool.lock import take_state_lock
from agentd.spool.store import Claim
from agentd.lifecycle.supervisor import Supervisor
from agentd.lifecycle.periodic import Periodic, trim_heap
from agentd.server.looplag import LoopLag
from agentd.run.isolated import POOL as EXTRACT_POOL

log = logs.get("agentd")
TICK_S = 0.25
IDLE_TICK_S = 0.5  # nothing in flight: the kill switch is read before each claim, a slower tick costs less CPU
STATUS_EVERY_S = 2.0
COUNT_INCOMING_S = 1.0
REVIEW_STATS_S = 2.0
RETRY_STALLED_S = 5.0
DISK_TROUBLE = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)  # a stall for these is not counted
RUNNING_FILE = "running"  # present while a daemon runs: found at start-up, the last one crashed
TRACE_DRAIN_S = 2.0
BUSY_AFTER_S = 1.0  # the loop-lag gauge samples every 25 ms while busy and this long after (then the tick's)


class Daemon(HealthView):
    def __init__(self, config: Config, burst: bool = False, env_file: str | None = None,
                 provider: Provider | None = None):
        self.config = config
        self.burst = burst
        self.env_file = env_file
        self.provider = provider
        self.should_exit = asyncio.Event()
        self.reload_requested = False
        self.stopping = False
        self.started_at = time.time()
        self.in_flight = 0
        self.waiting_open = 0  # runs in flight that wait for the kill switch, budget or model (wait_open)
        self.processed = 0
        self.failed = 0
        self.last_progress_at: float | None = None
        self.last_tick_at = time.monotonic()
        self.last_progress_mono = time.monotonic()
        self._was_busy = False
        self.queue_high_water = 0
        self.blocked_reason: str | None = None
        self.stalled: list[Claim] = []
        self.health_port: int | None = None
        self.supervisor = Supervisor()
        self.notifier = sdnotify.SystemdNotifier()
        if getattr(self.notifier, "socket", None) is not None:
            self.notifier.socket.setblocking(False)  # a peer that stops reading never blocks the loop
        self.traces: Any = None  # agentd.traces.exporter.TraceExporter when OTLP export is on
        self._lock_fd: int | None = None
        self._status_sent_at = 0.0
        self._last_problems: list[str] = []
        self._write_checked_at, self._writable = 0.0, True
        self.periodic = Periodic()
        self.loop_lag = LoopLag(busy=self._busy)

    # -- the table of contents ------------------------------------------------------------
    async def serve(self) -> int:
        await self.startup()
        try:
            await self.main_loop()
        finally:
            await self.shutdown()
        return 0

    # -- startup ------------------------------------------------------------------------
    async def startup(self) -> None:
        c = self.config
        c.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = take_state_lock(self.config.state_dir)
        self.services = s = build(c, provider=self.provider, wait_open=self.wait_open)
        s.pipeline.on_finish, s.pipeline.on_progress = self._on_finish, self._progress
        s.guards.extra_gates.append(self._deferral_gate)
        if s.audit.repaired:
            log.warning("audit_repaired", **s.audit.repaired)
        for problem in s.audit.suspect:  # kept as found, and audited: `agentd audit verify` fails
            log.error("audit_tamper_suspected", problem=problem)
        self.watcher = Watcher(c, s.deferrals, on_counted=s.counts.set_incoming)
        self.probe = Probe(c.state_dir, s.sync)
        self.queue: asyncio.Queue[Candidate | Claim] = asyncio.Queue(maxsize=c.concurrency)
        EXTRACT_POOL.configure(c.concurrency, c.extract_memory_mb)
        EXTRACT_POOL.open()
        self._install_signals()
        crashed = (c.state_dir / RUNNING_FILE).exists()
        recovered = s.store.recover(clean_shutdown=not crashed)
        (c.state_dir / RUNNING_FILE).write_text(f"{os.getpid()}\n")
        s.audit.append("startup", version=__version__, pid=os.getpid(), provider=c.llm_provider, model=c.llm_model,
                       recovered=len(recovered), after_crash=crashed, kill_switch=s.kill.engaged)
        await s.audit.flush()
        await asyncio.to_thread(s.counts.load, c.home)
        self.traces = self._start_traces()
        if not self.burst:
            app = make_app(self.health, self.render_metrics, lambda: self.config.admin_token, self._set_kill,
                           mount=self._console())
            self.http = HttpServer(app, c.health_host, c.health_port)
            self.health_port = await self.http.start()
        for i in range(c.concurrency):
            self.supervisor.spawn(f"worker-{i}", self._worker)
        for claim in recovered:
            await self._enqueue(claim)
        if not self.burst:
            self.supervisor.spawn("watcher", lambda: self.watcher.run(self._enqueue_candidate))
            self.supervisor.spawn("probe", self._probe_loop, forever=self.config.probe_interval_s > 0)
            self.supervisor.spawn("loop-lag", self.loop_lag.run)
        log.info("started", version=__version__, home=str(c.home), provider=c.llm_provider, model=c.llm_model,
                 concurrency=c.concurrency, recovered=len(recovered), incoming=str(c.incoming), health=self.health_url)
        self.notifier.notify(f"READY=1\nSTATUS={self.status_line()}\nMAINPID={os.getpid()}")
        # a parser and the group commit's helper start after READY, not competing with start-up for the CPU
        EXTRACT_POOL.warm()
        s.sync.use_helper()
        self._warming = asyncio.ensure_future(asyncio.to_thread(schemas.warm))  # imported off the loop, after READY

    @property
    def health_url(self) -> str | None:
        if self.health_port is None:
            return None
        return f"http://{self.config.health_host}:{self.health_port}/health"

    def _console(self) -> Any:
        """The review console on the HTTP listener (its leases in state/)."""
        from agentd.server.console.app import mount_for
        return mount_for(lambda: self.config, self.services.audit, self.services.workflows)

    def _start_traces(self) -> Any:
        """The OTLP exporter, only with an endpoint; supervised on its own: it sends after shutdown stopped the rest."""
        if not self.config.traces_url:
            return None
        from agentd.traces.exporter import start_or_log
        return start_or_log(self.config, self.services.metrics, Supervisor().spawn)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.should_exit.set)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)

    def _request_reload(self) -> None:
        self.reload_requested = True

    # -- the gate -----------------------------------------------------------------------
    def _deferral_gate(self, kind: str, busy: bool) -> str | None:
        """A Retry-After longer than a worker may wait holds every claim, across restarts."""
        if kind == "claim" and self.services.deferrals.held_until() is not None:
            return self.services.deferrals.all_reason or "rate_limited"
        return None

    def claim_blocked(self) -> str | None:
        self.refresh_kill()  # exact for claims: an idle tick is slower
        return self.services.guards.why_not("claim", busy=bool(self.in_flight or self.queue.qsize()))

    @property
    def paused(self) -> int:
        """Runs in flight that wait (wait_open, or on an earlier run of the same content): no drain or watchdog waits."""
        return self.waiting_open + self.services.pipeline.waiting_on_earlier

    async def wait_open(self, reason: str, not_before: float | None = None) -> None:
        """Hold a paused run (one that already did paid work) until calls may start again."""
        self.waiting_open += 1
        try:
            while self.services.guards.why_not("model") or self.services.gateway.blocked() or \
                    (not_before is not None and time.time() < not_before):
                await asyncio.sleep(TICK_S)
        finally:
            self.waiting_open -= 1

    # -- feeding the workers -------------------------------------------------------------
    async def _enqueue_candidate(self, candidate: Candidate) -> None:
        while (reason := self.claim_blocked()) is not None:
            if reason != self.blocked_reason:
                log.warning("claiming_paused", reason=reason)
                self.blocked_reason = reason
            await asyncio.sleep(TICK_S)
        if self.blocked_reason is not None:
            log.info("claiming_resumed", after=self.blocked_reason)
            self.blocked_reason = None
        await self._enqueue(candidate)

    async def _enqueue(self, item: Candidate | Claim) -> None:
        self.loop_lag.poke()
        await self.queue.put(item)
        self.queue_high_water = max(self.queue_high_water, self.queue.qsize())

    async def _worker(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                if not self.stopping:  # else a candidate stays in incoming/, a claim in processing/
                    await self._handle(item)
            except OSError as exc:  # a full or failing disk: the run is retried later
                log.error("worker_io_error", error=f"{exc.__class__.__name__}: {exc}")
            except Exception:  # a bug must cost one file a delay, never a worker
                log.exception("worker_error")
            finally:
                if isinstance(item, Candidate):
                    self.watcher.done(item.path)
                self.queue.task_done()

    async def _handle(self, item: Candidate | Claim) -> None:
        # the gate may have shut since the candidate was queued (asked as then: it is not counted busy)
        if isinstance(item, Candidate) and self.claim_blocked() is not None:
            self.watcher.defer(item.path, time.time())  # offered again, to wait at the gate in incoming/
            return
        self.in_flight += 1  # a claim under way is in flight: a drain waits for it
        self.services.metrics.in_flight.set(self.in_flight)
        try:
            if isinstance(item, Candidate):
                claim = await self.services.store.claim(item.path, item.workflow)
                self.watcher.done(item.path)
                if claim is None:
                    return
            else:
                claim = item
            try:
                await self.services.pipeline.process(claim)
            except Exception as exc:
                self._stalled(claim, exc)
                raise
        finally:
            self.in_flight -= 1
            self.services.metrics.in_flight.set(self.in_flight)
            self.last_progress_at = time.time()

    def _stalled(self, claim: Claim, exc: Exception) -> None:
        """A run that raised stays in processing/, retried; each stall but a disk's counts toward crash_loop."""
        if not (isinstance(exc, OSError) and exc.errno in DISK_TROUBLE):
            claim.crash_resumes += 1
            claim.resumed = True
        self.stalled.append(claim)

    def _busy(self) -> bool:
        """Runs in flight or waiting, or finished in the last BUSY_AFTER_S."""
        return bool(self.in_flight or self.queue.qsize()) or time.monotonic() - self.last_progress_mono < BUSY_AFTER_S

    def _progress(self) -> None:
        self.last_progress_mono = time.monotonic()

    def _on_finish(self, workflow: str, outcome: str) -> None:
        if outcome == "failed":
            self.failed += 1
        if outcome == "deferred":
            return
        self.processed += 1

    # -- main loop --------------------------------------------------------------------
    async def main_loop(self) -> None:
        if self.burst:
            await self.watcher.drain(self._enqueue)  # the settle rules hold in a burst too
            await self.queue.join()
            return
        last_retry = time.monotonic()
        while not self.should_exit.is_set():
            began, tick = time.monotonic(), TICK_S if self._busy() else IDLE_TICK_S
            try:
                async with asyncio.timeout(tick):  # no task a tick, as wait_for would make
                    await self.should_exit.wait()
            except TimeoutError:
                self.loop_lag.record(max(0.0, time.monotonic() - began - tick))  # the idle daemon's samples
            self.last_tick_at = time.monotonic()
            self._tick()
            if time.monotonic() - last_retry > RETRY_STALLED_S:
                last_retry = time.monotonic()
                self._retry_stalled()
            self._notify_tick()

    def _tick(self) -> None:
        s = self.services
        self.refresh_kill()
        if s.budget.dirty:
            try:
                s.budget.save()
            except OSError as exc:  # a full disk: the audit log still has every call
                log.error("spend_not_saved", error=f"{exc.__class__.__name__}: {exc}")
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        self._recount_incoming()
        self._recount_review()
        busy = self._busy()
        if self._was_busy and not busy:
            trim_heap()  # a busy spell's freed memory goes back to the system, not into the idle RSS
        self._was_busy = busy

    def _recount_incoming(self) -> None:
        """incoming/ is filled by others: count it every second (the store counts the rest; agentd/lifecycle/periodic.py)."""
        waiting = self.services.counts.snapshot().get(INCOMING, 0)  # a backlog is counted less often
        self.periodic.every("incoming", max(COUNT_INCOMING_S, waiting / 2000), self.services.counts.set_incoming,
                            count_entries, self.config.incoming, INCOMING)

    def _recount_review(self) -> None:
        """The review gauges read every sidecar in review/: every few seconds, never on a scrape."""
        c = self.config
        self.periodic.every("review", REVIEW_STATS_S, self.services.metrics.set_review,
                            review_stats, c.home, c.review_sla_s, time.time())

    def _retry_stalled(self) -> None:
        """After an I/O error (a full disk): check the audit log again, then retry the runs."""
        audit = self.services.audit
        if not audit.writable:
            try:
                audit.append("audit_writable", note="appends work again")
            except OSError:
                return
            log.warning("audit_writable_again")
        retry, self.stalled = self.stalled, []
        for claim in retry:
            asyncio.ensure_future(self._enqueue(claim))

    def _notify_tick(self) -> None:
        """WATCHDOG=1 while the loop and the pipeline move (a full disk does not stop it); STATUS= every 2 s."""
        problems = self.problems()
        message = "" if self.stalls() else "WATCHDOG=1"
        now = time.monotonic()
        if now - self._status_sent_at >= STATUS_EVERY_S:
            self._status_sent_at = now
            message += f"\nSTATUS={self.status_line()}"
        if problems and problems != self._last_problems:
            log.error("unhealthy", reasons=problems)
        self._last_problems = problems
        if message:
            self.notifier.notify(message.strip())

    async def _probe_loop(self) -> None:
        interval = self.config.probe_interval_s
        while interval > 0:
            result = await self.probe.run()
            self.services.metrics.probe_ok.set(1 if result.ok else 0)
            if not result.ok:
                log.error("probe_failed", error=result.error)
            await asyncio.sleep(interval)

    def reload(self) -> None:
        """SIGHUP: re-read the configuration; apply what can change while running, name the rest."""
        self.notifier.notify("RELOADING=1")
        merged = reloading.reread(self.env_file, self.config, log)
        if merged is not None:
            fresh, applied, changed = merged
            self.config = fresh
            self.services.reconfigure(fresh)
            logs.configure(fresh.log_format, fresh.log_level, self.services.redactor)  # the level, the new secrets
            self.watcher.config = fresh
            self.services.audit.append("config_reloaded", applied=applied, restart_needed=changed)
            log.info("config_reloaded", applied=applied, restart_needed=changed)
        self.notifier.notify("READY=1")

    # -- shutdown ---------------------------------------------------------------------
    async def shutdown(self) -> None:
        self.stopping = True
        s = self.services
        self.notifier.notify("STOPPING=1")
        log.info("stopping", in_flight=self.in_flight, drain_timeout_s=self.config.drain_timeout_s)
        await self.supervisor.stop("watcher", "probe", "loop-lag")
        deadline = time.monotonic() + self.config.drain_timeout_s
        while self.in_flight > self.paused and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = self.in_flight
        await self.supervisor.stop()
        if left:
            log.warning("drain_deadline", unfinished=left, note="left in processing/; they resume at the next start")
        if not self.burst:
            await self.http.stop()
        await s.gateway.close()
        await EXTRACT_POOL.close()
        await s.sync.close()
        s.budget.save()
        s.audit.append("shutdown", processed=self.processed, unfinished=left)
        s.audit.flush_now()
        s.close()
        if self.traces is not None:  # a last send of what is ready, bounded; the rest at the next start
            await self.traces.stop(drain_s=min(TRACE_DRAIN_S, self.config.drain_timeout_s))
        (self.config.state_dir / RUNNING_FILE).unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("stopped", processed=self.processed, unfinished=left)

    def _set_kill(self, engaged: bool, reason: str, by: str) -> dict[str, Any]:
        return self.services.kill.set(engaged, self.services.audit, reason=reason, by=by)
