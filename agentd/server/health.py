"""What /health, STATUS= and the watchdog see: problems (unhealthy), degradations, counts."""
from __future__ import annotations

import time
from typing import Any

from agentd import __version__
from agentd.spool.store import count_entries, oldest_waiting_age_s

LOOP_STALL_S = 10.0
FOLDERS = ("incoming", "processing", "archive", "failed", "review")


class HealthView:
    """Mixed into the Daemon: reads its state, changes nothing but caches."""

    config: Any
    audit: Any
    watcher: Any
    probe: Any
    kill: Any
    budget: Any
    breakers: Any
    gateway: Any
    metrics: Any
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
    _counts_cache: tuple[float, dict[str, int]]
    _oldest: float | None
    _write_checked_at: float
    _writable: bool

    def counts(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._counts_cache[0] > 1.0:
            home = self.config.home
            counts = {sub: count_entries(home / sub, sub) for sub in FOLDERS}
            self._counts_cache = (now, counts)
            self._oldest = oldest_waiting_age_s(home / "incoming", time.time())
            for folder, n in counts.items():
                self.metrics.queue_depth.labels(folder).set(n)
        return self._counts_cache[1]

    def status_line(self) -> str:
        counts = self.counts()
        return (f"processed {self.processed}, failed {self.failed}, in flight {self.in_flight}, "
                f"waiting {counts.get('incoming', 0)}, spent today ${self.budget.spent_today:.4f}"
                + (f", paused: {self.blocked_reason}" if self.blocked_reason else ""))

    def problems(self) -> list[str]:
        """Why agentd cannot do its job now (cheap: called four times a second)."""
        problems = []
        if not self.audit.writable:
            problems.append("audit log unwritable")
        if not self._state_writable():
            problems.append("state folders unwritable")
        if not self.watcher.alive():
            problems.append("watcher stopped")
        if time.monotonic() - self.last_tick_at > LOOP_STALL_S:
            problems.append("event loop stalled")
        busy = self.in_flight - self.paused
        idle_for = time.monotonic() - self.last_progress_mono
        if busy > 0 and idle_for > self.config.step_timeout_s + 60:
            problems.append(f"pipeline stalled: {busy} runs, no progress for {idle_for:.0f}s")
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

    def degraded(self) -> list[str]:
        reasons = []
        if self.kill.engaged:
            reasons.append("kill switch engaged")
        if self.budget.daily_exhausted():
            reasons.append("daily budget spent")
        if any(s != "closed" for s in self.breakers.states().values()):
            reasons.append("model circuit open")
        if time.monotonic() < self.gateway.rate_limited_until:
            reasons.append("model rate limited")
        return reasons

    def health(self) -> dict[str, Any]:
        problems, degraded = self.problems(), self.degraded()
        status = "unhealthy" if problems else "degraded" if degraded else "ok"
        now = time.time()
        counts = self.counts()
        return {
            "status": status,
            "reasons": problems + degraded,
            "version": __version__,
            "uptime_s": round(now - self.started_at, 1),
            "queue": counts,
            "in_flight": self.in_flight,
            "paused": self.paused,
            "work_queue": {"size": self.queue.qsize(), "capacity": self.queue.maxsize,
                           "high_water": self.queue_high_water},
            "oldest_waiting_s": self._oldest,
            "last_progress_at": self.last_progress_at,
            "processed": self.processed,
            "failed": self.failed,
            "breakers": self.breakers.states(),
            "spend_today_usd": float(self.budget.spent_today),
            "daily_budget_usd": float(self.budget.daily_budget_usd),
            "kill_switch": self.kill.state,
            "claiming_paused": self.blocked_reason,
            "probe": self.probe.last.view() if self.probe.last else None,
        }
