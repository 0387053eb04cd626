"""The daemon's lifecycle: startup (recovery first), the main loop, a draining shutdown."""
from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Any

import sdnotify

from agentd import __version__, logs
from agentd import config as config_mod
from agentd import workflows as workflows_mod
from agentd.audit import AuditLog
from agentd.config import Config, ConfigError
from agentd.costs import Budget
from agentd.durable import GroupSync
from agentd.health import HttpServer, make_app
from agentd.index import DedupeIndex
from agentd.killswitch import KillSwitch
from agentd.llm.breaker import Breakers
from agentd.llm.gateway import Gateway, make_provider
from agentd.looplag import LoopLag
from agentd.metrics import Metrics
from agentd.pipeline import Pipeline, StopGuard
from agentd.probe import Probe
from agentd.redact import Redactor
from agentd.sandbox import POOL as EXTRACT_POOL
from agentd.spool import Claim, Spool
from agentd.status import HealthView
from agentd.watcher import Candidate, Watcher

log = logs.get("agentd")
TICK_S = 0.25
STATUS_EVERY_S = 2.0
RETRY_STALLED_S = 5.0
PARK_S = 5.0
LOCK_FILE = "agentd.lock"


class AlreadyRunning(Exception):
    pass


class Daemon(HealthView):
    def __init__(self, config: Config, burst: bool = False, env_file: str | None = None):
        self.config = config
        self.burst = burst
        self.env_file = env_file
        self.should_exit = asyncio.Event()
        self.reload_requested = False
        self.stopping = False
        self.started_at = time.time()
        self.in_flight = 0
        self.paused = 0  # runs in flight that wait for the kill switch, budget or model
        self.processed = 0
        self.failed = 0
        self.last_progress_at: float | None = None
        self.last_tick_at = time.monotonic()
        self.queue_high_water = 0
        self.blocked_reason: str | None = None
        self.stalled: list[Claim] = []
        self.health_port: int | None = None
        self.notifier = sdnotify.SystemdNotifier()
        if getattr(self.notifier, "socket", None) is not None:
            self.notifier.socket.setblocking(False)  # a peer that stops reading never blocks the loop
        self._tasks: list[asyncio.Task[Any]] = []
        self._lock_fd: int | None = None
        self._counts_cache: tuple[float, dict[str, int]] = (0.0, {})
        self._oldest: float | None = None
        self._status_sent_at = 0.0
        self._last_problems: list[str] = []
        self._write_checked_at = 0.0
        self._writable = True
        self.last_progress_mono = time.monotonic()
        self.loop_lag = LoopLag()

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
        for sub in ("incoming", "processing", "archive", "failed", "review", "state", "logs", "data"):
            (c.home / sub).mkdir(parents=True, exist_ok=True)
        self._lock()
        self.workflows = self._load_workflows()
        self.sync = GroupSync(enabled=c.fsync)
        self.redactor = Redactor(c.secrets)
        self.audit = AuditLog(c.logs_dir, self.redactor, self.sync, c.audit_max_bytes).open()
        if self.audit.repaired:
            log.warning("audit_repaired", **self.audit.repaired)
        self.spool = Spool(c, self.audit, self.sync)
        self.metrics = Metrics()
        self.budget = Budget(c.max_cost_per_run, c.daily_budget_usd, c.state_dir,
                             audit_seq=lambda: self.audit.last.seq).load(c.logs_dir)
        self.breakers = Breakers(c.state_dir, c.breaker_failures, c.breaker_reset_s)
        self.kill = KillSwitch(c.state_dir)
        self.gateway = Gateway(c, make_provider(c), self.budget, self.audit, self.breakers, self.metrics,
                               stop_reason=self.stop_reason)
        self.index = DedupeIndex(c.state_dir / "index.sqlite")
        self.tools = self._make_tools()
        self.pipeline = Pipeline(c, self.spool, self.audit, self.gateway, self.workflows, self.index,
                                 self.metrics, guards=[StopGuard(self.kill_reason)], wait_open=self.wait_open,
                                 tools=self.tools, on_finish=self._on_finish, on_wait=self._on_wait,
                                 on_progress=self._progress)
        self.watcher = Watcher(c)
        self.probe = Probe(c.state_dir, self.sync)
        self.queue: asyncio.Queue[Candidate | Claim] = asyncio.Queue(maxsize=c.concurrency)
        EXTRACT_POOL.configure(c.concurrency, c.extract_memory_mb)
        EXTRACT_POOL.warm()
        self._install_signals()
        recovered = self.spool.recover()
        self.audit.append("startup", version=__version__, pid=os.getpid(), provider=c.llm_provider,
                          model=c.llm_model, recovered=len(recovered), kill_switch=self.kill.engaged)
        await self.audit.flush()
        if not self.burst:
            self.http = HttpServer(make_app(self.health, self._render_metrics, c.admin_token, self._set_kill),
                                   c.health_host, c.health_port)
            self.health_port = await self.http.start()
        self._tasks = [asyncio.create_task(self._worker(), name=f"worker-{i}") for i in range(c.concurrency)]
        for claim in recovered:
            await self._enqueue(claim)
        if not self.burst:
            self.watcher.start_observer()
            self._tasks.append(asyncio.create_task(self.watcher.run(self._enqueue_candidate), name="watcher"))
            self._tasks.append(asyncio.create_task(self._probe_loop(), name="probe"))
            self._tasks.append(asyncio.create_task(self.loop_lag.run(), name="loop-lag"))
        log.info("started", version=__version__, home=str(c.home), provider=c.llm_provider,
                 model=c.llm_model, concurrency=c.concurrency, recovered=len(recovered),
                 incoming=str(c.incoming), health=self.health_url)
        self.notifier.notify(f"READY=1\nSTATUS={self.status_line()}\nMAINPID={os.getpid()}")

    @property
    def health_url(self) -> str | None:
        if self.health_port is None:
            return None
        return f"http://{self.config.health_host}:{self.health_port}/health"

    def _lock(self) -> None:
        path = self.config.state_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(f"another agentd (pid {other or '?'}) is running on {self.config.home}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _load_workflows(self) -> dict[str, Any]:
        try:
            return workflows_mod.load(self.config.workflows)
        except (ImportError, SyntaxError, ValueError, OSError) as exc:
            raise ConfigError("AGENTD_WORKFLOWS", f"{exc.__class__.__name__}: {exc}") from None

    def _make_tools(self) -> Any:
        try:
            from agentd.tools import ToolBox
        except ImportError:
            return None
        return ToolBox(self.config, self.audit, self.metrics, self.stop_reason)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.should_exit.set)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)

    def _request_reload(self) -> None:
        self.reload_requested = True

    # -- gates ------------------------------------------------------------------------
    def kill_reason(self) -> str | None:
        """The kill switch stops a run at its next step (the budget stops only model calls)."""
        return "kill_switch" if self.kill.engaged else None

    def stop_reason(self) -> str | None:
        """Why no model or tool call may start now, or None."""
        if self.kill.engaged:
            return "kill_switch"
        if self.budget.daily_exhausted():
            return "daily_budget_exhausted"
        return None

    def claim_blocked(self) -> str | None:
        reason = self.stop_reason()
        if reason is None and time.monotonic() < self.gateway.rate_limited_until:
            reason = "rate_limited"
        if reason is None and self.gateway.blocked():
            reason = "model_unavailable"
        if reason is None and self.gateway.on_trial() and (self.in_flight or self.queue.qsize()):
            reason = "model_unavailable"  # one trial file at a time while the circuit is not closed
        return reason

    async def wait_open(self, reason: str) -> None:
        """Hold a paused run (one that already did paid work) until calls may start again."""
        self.paused += 1
        try:
            while self.stop_reason() or self.gateway.blocked():
                await asyncio.sleep(TICK_S)
        finally:
            self.paused -= 1

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
        await self.queue.put(item)
        self.queue_high_water = max(self.queue_high_water, self.queue.qsize())

    async def _worker(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                if self.stopping:
                    continue  # a candidate stays in incoming/, a claim in processing/
                await self._handle(item)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # a full or failing disk: the run is retried later
                log.error("worker_io_error", error=f"{exc.__class__.__name__}: {exc}")
            except Exception:  # a bug must cost one file a delay, never a worker
                log.exception("worker_error")
            finally:
                if isinstance(item, Candidate):
                    self.watcher.done(item.path)
                self.queue.task_done()

    async def _handle(self, item: Candidate | Claim) -> None:
        self.in_flight += 1  # a claim under way is in flight: a drain waits for it
        self.metrics.in_flight.set(self.in_flight)
        try:
            if isinstance(item, Candidate):
                claim = await self.spool.claim(item.path, item.workflow)
                self.watcher.done(item.path)
                if claim is None:
                    return
            else:
                claim = item
            try:
                await self.pipeline.process(claim)
            except Exception:
                self.stalled.append(claim)  # it stays in processing/ and is retried
                raise
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)
            self.last_progress_at = time.time()

    def _progress(self) -> None:
        self.last_progress_mono = time.monotonic()

    def _on_wait(self, path: Path, reason: str) -> None:
        """A run went back to incoming/: a file the model failed on waits a while first."""
        if reason == "model_unreachable":
            self.watcher.defer(path, PARK_S)

    def _on_finish(self, workflow: str, outcome: str) -> None:
        if outcome == "failed":
            self.failed += 1
        self.processed += 1

    # -- main loop --------------------------------------------------------------------
    async def main_loop(self) -> None:
        if self.burst:
            await self.watcher.scan(self._enqueue, burst=True)
            await self.queue.join()
            return
        last_retry = time.monotonic()
        while not self.should_exit.is_set():
            try:
                await asyncio.wait_for(self.should_exit.wait(), TICK_S)
            except TimeoutError:
                pass
            self.last_tick_at = time.monotonic()
            if self.kill.refresh():
                log.warning("kill_switch", engaged=self.kill.engaged, reason=self.kill.state.get("reason"))
            self.metrics.kill_switch.set(1 if self.kill.engaged else 0)
            if self.budget.dirty:
                self.budget.save()
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            if time.monotonic() - last_retry > RETRY_STALLED_S:
                last_retry = time.monotonic()
                self._retry_stalled()
            self._notify_tick()

    def _retry_stalled(self) -> None:
        """After an I/O error (a full disk): check the audit log again, then retry the runs."""
        if not self.audit.writable:
            try:
                self.audit.append("audit_writable", note="appends work again")
            except OSError:
                return
            log.warning("audit_writable_again")
        retry, self.stalled = self.stalled, []
        for claim in retry:
            asyncio.create_task(self._enqueue(claim))

    def _notify_tick(self) -> None:
        """WATCHDOG=1 only while nothing is wrong; STATUS= every few seconds."""
        problems = self.problems()
        message = "" if problems else "WATCHDOG=1"
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
            self.metrics.probe_ok.set(1 if result.ok else 0)
            if not result.ok:
                log.error("probe_failed", error=result.error)
            await asyncio.sleep(interval)

    def reload(self) -> None:
        """SIGHUP: re-read the configuration; apply what can change while running."""
        self.notifier.notify("RELOADING=1")
        try:
            fresh = config_mod.load(self.env_file)
        except ConfigError as exc:
            log.error("reload_rejected", variable=exc.variable, problem=exc.problem)
            self.notifier.notify("READY=1")
            return
        fixed = ("home", "health_host", "health_port", "llm_provider", "llm_base_url", "concurrency")
        changed = [f for f in fixed if getattr(fresh, f) != getattr(self.config, f)]
        if changed:
            log.warning("reload_needs_restart", fields=changed)
            fresh = fresh.replace(**{f: getattr(self.config, f) for f in changed})
        self.config = fresh
        self.budget.update_caps(fresh.max_cost_per_run, fresh.daily_budget_usd)
        for part in (self.gateway, self.pipeline, self.watcher):
            part.config = fresh
        if self.tools is not None:
            self.tools.config = fresh
        self.redactor.secrets = Redactor(fresh.secrets).secrets
        self.audit.append("config_reloaded", restart_needed=changed)
        log.info("config_reloaded")
        self.notifier.notify("READY=1")

    # -- shutdown ---------------------------------------------------------------------
    async def shutdown(self) -> None:
        self.stopping = True
        self.notifier.notify("STOPPING=1")
        log.info("stopping", in_flight=self.in_flight, drain_timeout_s=self.config.drain_timeout_s)
        self.watcher.stop_observer()
        for task in self._tasks:
            if task.get_name() in ("watcher", "probe", "loop-lag"):
                task.cancel()
        deadline = time.monotonic() + self.config.drain_timeout_s
        while self.in_flight > self.paused and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = self.in_flight
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if left:
            log.warning("drain_deadline", unfinished=left,
                        note="left in processing/; they resume at the next start")
        if not self.burst:
            await self.http.stop()
        await self.gateway.close()
        await EXTRACT_POOL.close()
        self.budget.save()
        self.audit.append("shutdown", processed=self.processed, unfinished=left)
        self.audit.flush_now()
        self.audit.close()
        self.index.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("stopped", processed=self.processed, unfinished=left)

    def _render_metrics(self) -> bytes:
        self.gateway.update_latency_quantiles()
        self.metrics.loop_lag.set(self.loop_lag.max_s())
        self.counts()
        return self.metrics.render()

    def _set_kill(self, engaged: bool, reason: str, by: str) -> dict[str, Any]:
        return self.kill.set(engaged, self.audit, reason=reason, by=by)


async def run(config: Config, burst: bool = False, env_file: str | None = None) -> int:
    return await Daemon(config, burst=burst, env_file=env_file).serve()


def state_lock_holder(home: Path) -> int | None:
    """The pid of the agentd running on `home`, or None."""
    path = home / "state" / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None
