"""Provider-wide outages: a long Retry-After, rejected credentials, a model that is gone.

Each stops new claims (files wait in incoming/, nothing fails for it) and shows in
/health with its reason. Credentials and missing models are probed again with backoff:
after the wait, one file goes out as a trial; its answer ends the outage, another
refusal doubles the wait. A new API key (SIGHUP) is tried at once.
"""
from __future__ import annotations

import time
from typing import Callable

from agentd import logs
from agentd.errors import Paused

log = logs.get("agentd.llm")
FIRST_PROBE_S = 5.0
MAX_PROBE_S = 300.0
REASONS = {"model_credentials_rejected": "model credentials rejected", "model_not_found": "model not found"}


class Outage:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.rate_limited_until = 0.0  # monotonic
        self.reason: str | None = None  # model_credentials_rejected | model_not_found
        self.detail = ""
        self.probe_at = 0.0
        self.wait_s = FIRST_PROBE_S

    # -- rate limits ------------------------------------------------------------------
    def rate_limited(self) -> bool:
        return self.clock() < self.rate_limited_until

    def rate_limited_for(self, seconds: float) -> None:
        self.rate_limited_until = max(self.rate_limited_until, self.clock() + seconds)

    def rate_limited_wall(self) -> float:
        """The rate limit's end as epoch seconds (for deferrals on disk)."""
        return time.time() + max(0.0, self.rate_limited_until - self.clock())

    # -- credentials and models ---------------------------------------------------------
    def _start(self, reason: str, detail: str) -> Paused:
        """An outage seen, or seen again: only a failed trial (one due) doubles the wait; the other runs
        that were in flight when it began fail at about the same time and leave the trial time alone."""
        now = self.clock()
        if self.reason != reason:
            log.error("model_outage", reason=REASONS[reason], detail=detail, probe_in_s=self.wait_s)
            self.probe_at = now + self.wait_s
        elif now >= self.probe_at:
            self.wait_s = min(MAX_PROBE_S, self.wait_s * 2)
            self.probe_at = now + self.wait_s
        self.reason, self.detail = reason, detail
        return Paused(reason)

    def credentials_rejected(self, detail: str) -> Paused:
        return self._start("model_credentials_rejected", detail)

    def model_not_found(self, detail: str) -> Paused:
        return self._start("model_not_found", detail)

    def answered(self) -> None:
        """A model answered: any outage is over."""
        if self.reason is not None:
            log.warning("model_outage_over", reason=REASONS[self.reason])
        self.reason, self.detail, self.wait_s = None, "", FIRST_PROBE_S

    def retry_now(self) -> None:
        self.probe_at = self.clock()

    def blocks(self, busy: bool) -> str | None:
        """Why claiming waits: a rate limit, or an outage not yet due for its next trial."""
        if self.rate_limited():
            return "rate_limited"
        if self.reason is None:
            return None
        if self.clock() < self.probe_at or busy:
            return self.reason  # after the wait, one file at a time goes out as the trial
        return None

    def health_reason(self) -> str | None:
        return REASONS.get(self.reason or "")
