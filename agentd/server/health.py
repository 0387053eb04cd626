"""What /health, /metrics, STATUS= and the watchdog see: problems (unhealthy), degradations, counts."""
from __future__ import annotations

import time
from typing import Any

from agentd import __version__, logs
from agentd.spool.counts import oldest_waiting_age_s

log = logs.get("agentd")
LOOP_STALL_S = 10.0
OLDEST_EVERY_S = 5.0


class HealthView:
    """Mixed into the Daemon: reads its state, changes nothing but caches."""

    config: Any
    services: Any
    watcher: Any
    probe: Any
    supervisor: Any
    loop_lag: Any
    traces: Any
    queue: Any
    in_flight: int
    paused: int
    processed: int
    failed: int
    started_at: float
    last_tick_at: float
    last_progress_at: float | None
    last_progress_mono: float
    queue_high_water: int
    blocked_reason: str | None
    _write_checked_at: float
    _writable: bool
    _oldest: tuple[float, float | None] = (0.0, None)

    def counts(self) -> dict[str, int]:
        """Files per folder, kept current by the spool store (no folder scan here; a recount runs in a thread)."""
        self.services.counts.recount_soon(self.config.home)
        counts = self.services.counts.snapshot()
        for folder, n in counts.items():
            self.services.metrics.queue_depth.labels(folder).set(n)
        return counts

    def oldest_waiting_s(self) -> float | None:
        """Age of the oldest file in incoming/ (a scan of incoming/ only, at most every few seconds)."""
        now = time.monotonic()
        if now - self._oldest[0] > OLDEST_EVERY_S:
            self._oldest = (now, oldest_waiting_age_s(self.config.incoming, time.time()))
        return self._oldest[1]

    def status_line(self) -> str:
        counts = self.counts()
        return (f"processed {self.processed}, failed {self.failed}, in flight {self.in_flight}, "
                f"waiting {counts.get('incoming', 0)}, spent today ${self.services.budget.spent_today:.4f}"
                + (f", paused: {self.blocked_reason}" if self.blocked_reason else ""))

    def stalls(self) -> list[str]:
        """The event loop or the pipeline is stuck: only these withhold WATCHDOG=1 (a restart may help).

        A full disk or an unwritable folder does not: the daemon stays up, unhealthy, until space returns."""
        stalls = []
        if time.monotonic() - self.last_tick_at > LOOP_STALL_S:
            stalls.append("event loop stalled")
        busy = self.in_flight - self.paused
        idle_for = time.monotonic() - self.last_progress_mono
        if busy > 0 and idle_for > self.config.step_timeout_s + 60:
            stalls.append(f"pipeline stalled: {busy} runs, no progress for {idle_for:.0f}s")
        return stalls

    def problems(self) -> list[str]:
        """Why agentd cannot do its job now (cheap: called four times a second)."""
        problems = []
        if not self.services.audit.writable:
            problems.append("audit log unwritable")
        if not self._state_writable():
            problems.append("state folders unwritable")
        if not self.watcher.alive():
            problems.append("watcher stopped")
        problems += self.supervisor.problems()
        problems += self.stalls()
        if self.probe.last is not None and not self.probe.last.ok:
            problems.append(f"synthetic probe failed: {self.probe.last.error}")
        return problems

    def _state_writable(self) -> bool:
        now = time.monotonic()
        if now - self._write_checked_at > 5:
            self._write_checked_at = now
            path = self.config.state_dir / ".write-check"
            try:
                path.write_bytes(b"ok")
                path.unlink()
                self._writable = True
            except OSError:
                self._writable = False
        return self._writable

    def refresh_kill(self) -> None:
        """Re-read the kill switch file if it changed (a stat): before every claim and /health answer, and
        every tick; a flip is logged once, by whichever read saw it."""
        kill = self.services.kill
        if kill.refresh():
            log.warning("kill_switch", engaged=kill.engaged, reason=kill.state.get("reason"))
        self.services.metrics.kill_switch.set(1 if kill.engaged else 0)

    def render_metrics(self) -> bytes:
        """/metrics: the gauges read at scrape time, then the registry's text."""
        s = self.services
        self.refresh_kill()
        s.metering.update_latency_quantiles()
        s.metrics.spend_today.set(float(s.budget.spent_today))
        s.metrics.budget_used.set(s.budget.used_ratio())
        s.metrics.loop_lag.set(self.loop_lag.max_s())
        self.counts()
        s.metrics.audit_seq.set(s.audit.last.seq)
        if self.traces is not None:
            s.metrics.otlp_lag.set(self.traces.lag(s.audit.last.seq))
        return s.metrics.render()

    def degraded(self) -> list[str]:
        s = self.services
        reasons = []
        if s.kill.engaged:
            reasons.append("kill switch engaged")
        if s.budget.daily_exhausted():
            reasons.append("daily budget spent")
        if any(state != "closed" for state in s.breakers.states().values()):
            reasons.append("model circuit open")
        if s.gateway.outage.rate_limited() or s.deferrals.held_until() is not None:
            reasons.append("model rate limited")
        outage = s.gateway.outage.health_reason()
        if outage:
            reasons.append(outage)
        if self.watcher.unreadable:
            reasons.append(f"{len(self.watcher.unreadable)} entries in incoming/ cannot be read")
        if self.traces is not None and self.traces.failing:
            reasons.append(f"trace export failing: {self.traces.last_error}")
        return reasons

    def health(self) -> dict[str, Any]:
        s = self.services
        self.refresh_kill()
        problems, degraded = self.problems(), self.degraded()
        status = "unhealthy" if problems else "degraded" if degraded else "ok"
        return {
            "status": status,
            "reasons": problems + degraded,
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "queue": self.counts(),
            "in_flight": self.in_flight,
            "paused": self.paused,
            "work_queue": {"size": self.queue.qsize(), "capacity": self.queue.maxsize,
                           "high_water": self.queue_high_water},
            "oldest_waiting_s": self.oldest_waiting_s(),
            "last_progress_at": self.last_progress_at,
            "processed": self.processed,
            "failed": self.failed,
            "breakers": s.breakers.states(),
            "spend_today_usd": float(s.budget.spent_today),
            "daily_budget_usd": float(s.budget.daily_budget_usd),
            "kill_switch": s.kill.state,
            "claiming_paused": self.blocked_reason,
            "unreadable": dict(list(self.watcher.unreadable.items())[:20]),
            "tasks": self.supervisor.view(),
            "probe": self.probe.last.view() if self.probe.last else None,
            "traces": self.traces.view() if self.traces is not None else {"state": "off"},
        }
