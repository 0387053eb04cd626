"""The one outcome ladder: a run's result or exception -> a Decision (huey's `_execute` shape).

Every way a run can end passes through `decide`: a result (archived), a duplicate (an
archived Decision of its own), NeedsReview (review), Paused (deferred: it waits and goes
again), a retryable error with strikes left (deferred, not before a backoff), any
AgentdError (failed, with its error_class), and a bug in a step (failed, internal).
Cancellation is not an outcome: it propagates, and the claim stays in processing/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from agentd.errors import AgentdError, NeedsReview, Paused
from agentd.spool.layout import Outcome

PARK_S = 5.0  # the first wait of a file the model failed on; doubled per strike


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str | None = None
    error_class: str | None = None
    detail: str | None = None
    result: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    not_before: float | None = None  # deferred: epoch seconds before which it is not tried again
    strike: bool = False  # deferred for a retryable error: counts against the file's strikes


def decide(result: Any = None, error: BaseException | None = None, *, strikes: int = 0, max_strikes: int = 1,
           now: float = 0.0, redact: Callable[[str], str] = lambda text: text) -> Decision:
    """Map what a run's steps gave (a result, or the exception they raised) to its Decision."""
    if error is None:
        if isinstance(result, Decision):
            return result
        return Decision(Outcome.ARCHIVED, result=result)
    if isinstance(error, NeedsReview):
        return Decision(Outcome.REVIEW, reason=error.reason, result=error.result, extra=error.details)
    if isinstance(error, Paused):
        return Decision(Outcome.DEFERRED, reason=error.reason, not_before=error.not_before)
    if isinstance(error, AgentdError):
        if error.retryable and strikes < max_strikes:
            return Decision(Outcome.DEFERRED, reason=error.reason, not_before=now + PARK_S * 2 ** strikes,
                            strike=True, detail=error.detail or None)
        return Decision(Outcome.FAILED, reason=error.reason, error_class=error.error_class,
                        detail=error.detail or None, extra=error.extra)
    if isinstance(error, Exception):  # a bug in a step must cost one file, never the daemon
        return Decision(Outcome.FAILED, reason="internal_error", error_class="internal",
                        detail=redact(f"{error.__class__.__name__}: {error}")[:500])
    raise error  # CancelledError, KeyboardInterrupt, SystemExit: not an outcome


def crash_loop(resumes: int, limit: int) -> Decision:
    """A run interrupted by crashes more than `limit` times is not resumed again."""
    return Decision(Outcome.FAILED, reason="crash_loop", error_class="internal",
                    detail=f"interrupted by a crash {resumes} times (AGENTD_MAX_RESUMES={limit})")
