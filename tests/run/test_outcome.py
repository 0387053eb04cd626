"""The outcome ladder (agentd.run.outcome.decide): every way a run ends, as one table."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentd import errors
from agentd.errors import AgentdError, NeedsReview, Paused
from agentd.run.outcome import PARK_S, Decision, crash_loop, decide
from agentd.spool.layout import Outcome

NOW = 1_700_000_000.0
SECRET = "sk-live-0123456789abcdef"
ERROR_TYPES = [errors.ModelError, errors.ToolError, errors.NetworkError, errors.PolicyError,
               errors.DataError, errors.BudgetError, errors.InternalError]


def _redact(text: str) -> str:
    return text.replace(SECRET, "[REDACTED]")


# (id, result, error, strikes, max_strikes, expected fields of the Decision)
LADDER: list[tuple[str, Any, BaseException | None, int, int, dict[str, Any]]] = [
    ("result_is_archived", {"label": "invoice"}, None, 0, 1,
     {"outcome": Outcome.ARCHIVED, "result": {"label": "invoice"}, "reason": None, "error_class": None}),
    ("none_result_is_archived", None, None, 0, 1, {"outcome": Outcome.ARCHIVED, "result": None}),
    ("needs_review_goes_to_review_with_details",
     None, NeedsReview("low_confidence", result={"label": "?"}, confidence=0.2, fields=["total"]), 0, 1,
     {"outcome": Outcome.REVIEW, "reason": "low_confidence", "result": {"label": "?"},
      "extra": {"confidence": 0.2, "fields": ["total"]}, "error_class": None}),
    ("paused_without_time_is_deferred", None, Paused("kill_switch"), 0, 1,
     {"outcome": Outcome.DEFERRED, "reason": "kill_switch", "not_before": None, "strike": False}),
    ("paused_with_retry_after_is_deferred_until_then", None, Paused("rate_limited", not_before=NOW + 90), 0, 1,
     {"outcome": Outcome.DEFERRED, "reason": "rate_limited", "not_before": NOW + 90, "strike": False}),
    *[(f"{cls.__name__}_fails_with_{cls.error_class}", None, cls("bad_thing", "what went wrong", hint="x"), 0, 1,
       {"outcome": Outcome.FAILED, "reason": "bad_thing", "error_class": cls.error_class,
        "detail": "what went wrong", "extra": {"hint": "x"}, "strike": False})
      for cls in ERROR_TYPES],
    ("agentd_error_without_detail_has_none", None, errors.DataError("no_text"), 0, 1,
     {"outcome": Outcome.FAILED, "error_class": "data", "detail": None}),
    ("retryable_first_strike_parks_for_park_s", None,
     errors.ModelError("model_unavailable", "503", retryable=True), 0, 3,
     {"outcome": Outcome.DEFERRED, "reason": "model_unavailable", "not_before": NOW + PARK_S,
      "strike": True, "error_class": None, "detail": "503"}),
    ("retryable_third_strike_waits_four_times_park_s", None,
     errors.NetworkError("connect_failed", retryable=True), 2, 3,
     {"outcome": Outcome.DEFERRED, "not_before": NOW + PARK_S * 4, "strike": True}),
    ("retryable_without_strikes_left_fails", None,
     errors.ModelError("model_unavailable", "503", retryable=True), 3, 3,
     {"outcome": Outcome.FAILED, "reason": "model_unavailable", "error_class": "model", "strike": False,
      "not_before": None}),
    ("retryable_with_max_strikes_zero_fails_at_once", None,
     errors.NetworkError("connect_failed", retryable=True), 0, 0,
     {"outcome": Outcome.FAILED, "error_class": "network"}),
    ("bug_in_a_step_fails_internal", None, KeyError("total"), 0, 1,
     {"outcome": Outcome.FAILED, "reason": "internal_error", "error_class": "internal",
      "detail": "KeyError: 'total'"}),
]


@pytest.mark.parametrize(("result", "error", "strikes", "max_strikes", "expected"),
                         [case[1:] for case in LADDER], ids=[case[0] for case in LADDER])
def test_ladder(result: Any, error: BaseException | None, strikes: int, max_strikes: int,
                expected: dict[str, Any]) -> None:
    decision = decide(result, error, strikes=strikes, max_strikes=max_strikes, now=NOW, redact=_redact)
    assert {name: getattr(decision, name) for name in expected} == expected


def test_every_error_class_of_the_family_is_in_the_table() -> None:
    # the table must grow with agentd.errors: a new subclass without a row fails here
    subclasses = {cls for cls in vars(errors).values()
                  if isinstance(cls, type) and issubclass(cls, AgentdError) and cls is not AgentdError}
    assert subclasses == set(ERROR_TYPES)
    assert {cls.error_class for cls in ERROR_TYPES} == set(errors.ERROR_CLASSES)


def test_a_decision_passes_through_unchanged() -> None:
    # Given a step that already decided (a duplicate of an archived file)
    duplicate = Decision(Outcome.ARCHIVED, reason="duplicate", extra={"duplicate_of": "abc123"})
    # When it is the run's result
    decision = decide(duplicate, None, now=NOW)
    # Then it is the decision itself
    assert decision is duplicate


def test_bug_detail_is_redacted_and_bounded() -> None:
    # Given a step bug whose message carries a secret and is very long
    error = RuntimeError(f"calling with key {SECRET} failed " + "x" * 2000)
    # When it is decided
    decision = decide(None, error, now=NOW, redact=_redact)
    # Then the secret is gone, the rest is kept, and the detail is bounded
    assert decision.outcome is Outcome.FAILED and decision.error_class == "internal"
    assert decision.detail is not None
    assert SECRET not in decision.detail
    assert decision.detail.startswith("RuntimeError: calling with key [REDACTED] failed")
    assert len(decision.detail) == 500


def test_redact_is_not_applied_to_typed_errors_or_results() -> None:
    # the redact callable is for bug messages only: typed errors carry their own curated detail
    seen: list[str] = []

    def spy(text: str) -> str:
        seen.append(text)
        return text

    decide({"ok": 1}, None, redact=spy)
    decide(None, errors.ToolError("tool_failed", "HTTP 500"), redact=spy)
    assert seen == []


@pytest.mark.parametrize("error", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3)],
                         ids=["cancelled", "keyboard_interrupt", "system_exit"])
def test_cancellation_and_interrupts_are_not_outcomes(error: BaseException) -> None:
    with pytest.raises(type(error)) as raised:
        decide(None, error, now=NOW)
    assert raised.value is error


def test_crash_loop_fails_internal_with_counts() -> None:
    decision = crash_loop(resumes=4, limit=3)
    assert decision.outcome is Outcome.FAILED
    assert decision.reason == "crash_loop"
    assert decision.error_class == "internal"
    assert decision.detail == "interrupted by a crash 4 times (AGENTD_MAX_RESUMES=3)"
    assert decision.outcome.folder == "failed"
