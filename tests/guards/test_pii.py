"""PII redaction (agentd.guards.pii): placeholders to the model, real values back in the answer."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentd.guards import default_guards
from agentd.guards.base import Ask
from agentd.guards.budget import Budget
from agentd.guards.killswitch import KillSwitch
from agentd.guards.pii import PiiGuard
from tests.guards.parts import Parts, make_parts, request
from tests.tools.support import config as make_config

EMAIL = "jane.doe@example.com"
IBAN = "DE89 3704 0044 0532 0130 00"
CARD = "4111 1111 1111 1111"
PHONE = "+49 30 1234567"
KEEP = ("Invoice INV-2026-0042", "dated 2026-03-14", "total 1,234.56 EUR", "order 12345")
DOCUMENT = (f"{KEEP[0]} {KEEP[1]}, {KEEP[2]}, {KEEP[3]}.\n"
            f"Contact {EMAIL} or call {PHONE}. Pay to {IBAN}; card {CARD}. Again: {EMAIL}.")


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return make_parts(tmp_path / "home")


def test_with_redaction_on_the_model_sees_placeholders_and_the_answer_gets_the_values(parts: Parts) -> None:
    guard = PiiGuard(True, parts.audit, parts.metrics)
    ask = Ask(run=parts.run(step="classify"), request=request(DOCUMENT))
    # When the ask goes out
    guard.before_ask(ask)
    sent = ask.request.document
    # Then no value is in what the model gets, and what is not PII is all still there
    for value in (EMAIL, IBAN, CARD, PHONE):
        assert value not in sent
    for kept in KEEP:
        assert kept in sent
    assert sent.count("<EMAIL_1>") == 2  # the same value, the same placeholder
    for placeholder in ("<IBAN_1>", "<CARD_1>", "<PHONE_1>"):
        assert placeholder in sent
    # When the model answers with placeholders (in values, nested lists and keys)
    ask.answer = {"sender": "<EMAIL_1>", "pay_to": ["<IBAN_1>", "card <CARD_1>"], "<PHONE_1>": "phone",
                  "total": 1234.56, "unknown": "<EMAIL_9>"}
    guard.after_ask(ask)
    # Then the step gets the real values back (an unknown placeholder stays as it is)
    assert ask.answer == {"sender": EMAIL, "pay_to": [IBAN, f"card {CARD}"], PHONE: "phone",
                          "total": 1234.56, "unknown": "<EMAIL_9>"}


def test_redaction_is_audited_and_counted_by_kind(parts: Parts) -> None:
    guard = PiiGuard(True, parts.audit, parts.metrics)
    guard.before_ask(Ask(run=parts.run(step="classify"), request=request(DOCUMENT)))
    [line] = parts.events("pii_redacted")
    assert line["counts"] == {"email": 2, "iban": 1, "card": 1, "phone": 1}
    assert line["step"] == "classify" and line["workflow"] == "test"
    assert EMAIL not in str(line)
    assert parts.metric("agentd_pii_redacted_total", kind="email") == 2
    assert parts.metric("agentd_pii_redacted_total", kind="card") == 1


def test_a_document_without_pii_goes_unchanged_and_unaudited(parts: Parts) -> None:
    guard = PiiGuard(True, parts.audit, parts.metrics)
    ask = Ask(run=parts.run(), request=request("Invoice 42, dated 2026-03-14, total 99.00 EUR"))
    guard.before_ask(ask)
    assert ask.request.document == "Invoice 42, dated 2026-03-14, total 99.00 EUR"
    assert parts.events("pii_redacted") == []


def test_with_redaction_off_nothing_changes(parts: Parts) -> None:
    guard = PiiGuard(False, parts.audit, parts.metrics)
    original = request(DOCUMENT)
    ask = Ask(run=parts.run(), request=original)
    guard.before_ask(ask)
    assert ask.request is original
    ask.answer = {"sender": "<EMAIL_1>"}
    guard.after_ask(ask)
    assert ask.answer == {"sender": "<EMAIL_1>"}
    assert parts.events("pii_redacted") == []
    assert parts.metric("agentd_pii_redacted_total", kind="email") == 0


def test_a_reload_turns_it_on(parts: Parts) -> None:
    guard = PiiGuard(False, parts.audit, parts.metrics)
    guard.configure(make_config(parts.config.home, redact_pii=True))
    ask = Ask(run=parts.run(), request=request(f"mail {EMAIL}"))
    guard.before_ask(ask)
    assert ask.request.document == "mail <EMAIL_1>"


def test_it_applies_to_a_workflow_without_any_tools(parts: Parts) -> None:
    # Given the daemon's guard list with no tools configured and a run that may call none
    cfg = make_config(parts.config.home, redact_pii=True, allowed_services=frozenset())
    budget = Budget(cfg.max_cost_per_run, cfg.daily_budget_usd, cfg.state_dir)
    guards = default_guards(cfg, KillSwitch(cfg.state_dir), budget, parts.audit, parts.metrics, {})
    run = parts.run()
    assert run.tools is None and run.allowed_tools == frozenset()
    ask = Ask(run=run, request=request(DOCUMENT))
    # When the ask passes the guards
    guards.before("ask", ask)
    # Then it is redacted, and the answer restored
    assert EMAIL not in ask.request.document and "<EMAIL_1>" in ask.request.document
    ask.answer = {"sender": "<EMAIL_1>"}
    guards.after("ask", ask)
    assert ask.answer == {"sender": EMAIL}


def test_a_placeholder_look_alike_in_the_document_is_not_confused_with_a_value(parts: Parts) -> None:
    guard = PiiGuard(True, parts.audit, parts.metrics)
    ask = Ask(run=parts.run(), request=request(f"template text <EMAIL_1> then {EMAIL}"))
    guard.before_ask(ask)
    assert ask.request.document == "template text <EMAIL_1> then <EMAIL_2>"
    ask.answer = "<EMAIL_1> / <EMAIL_2>"
    guard.after_ask(ask)
    assert ask.answer == f"<EMAIL_1> / {EMAIL}"
