"""PII redaction: the model sees typed placeholders, the result gets the real values back."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentd.guards import pii
from tests.tools.support import Harness, ScriptedProvider, config

LETTER = ("Please refund jane.doe@example.com (call +49 30 1234567 or (555) 123-4567).\n"
          "IBAN DE89 3704 0044 0532 0130 00, card 4111 1111 1111 1111.\n"
          "Invoice 2024-01-15, order 12345678, amount 1,234.56 EUR. Again: jane.doe@example.com")


def test_each_kind_becomes_a_typed_placeholder_and_comes_back() -> None:
    redaction = pii.redact(LETTER)
    for value in ("jane.doe@example.com", "+49 30 1234567", "(555) 123-4567", "DE89 3704 0044 0532 0130 00",
                  "4111 1111 1111 1111"):
        assert value not in redaction.text
    assert redaction.text.count("<EMAIL_1>") == 2 and "<IBAN_1>" in redaction.text and "<CARD_1>" in redaction.text
    assert "<PHONE_1>" in redaction.text and "<PHONE_2>" in redaction.text
    assert redaction.counts == {"email": 2, "iban": 1, "card": 1, "phone": 2}
    assert redaction.restore(redaction.text) == LETTER


def test_dates_order_numbers_and_amounts_are_left_alone() -> None:
    text = redaction_text = pii.redact("Invoice 2024-01-15 / 15.01.2024, order 12345678, total 1,234.56 EUR").text
    assert text == redaction_text == "Invoice 2024-01-15 / 15.01.2024, order 12345678, total 1,234.56 EUR"


@pytest.mark.parametrize("number", ["4111 1111 1111 1112", "DE89 3704 0044 0532 0130 01"])
def test_numbers_that_fail_their_checksum_are_not_cards_or_ibans(number: str) -> None:
    redaction = pii.redact(f"number {number} here")
    assert "<CARD_" not in redaction.text and "<IBAN_" not in redaction.text


def test_restore_walks_every_string_of_a_structured_answer() -> None:
    redaction = pii.redact("mail bob@example.org")
    answer = {"summary": "Write to <EMAIL_1>.", "entities": {"emails": ["<EMAIL_1>"]}, "confidence": 0.9,
              "unknown": "<EMAIL_7>"}
    assert redaction.restore(answer) == {"summary": "Write to bob@example.org.",
                                         "entities": {"emails": ["bob@example.org"]}, "confidence": 0.9,
                                         "unknown": "<EMAIL_7>"}


def test_a_placeholder_look_alike_in_the_document_is_not_reused() -> None:
    redaction = pii.redact("literal <EMAIL_1> and real ann@example.com")
    assert redaction.values == {"<EMAIL_2>": "ann@example.com"}
    assert redaction.restore(redaction.text) == "literal <EMAIL_1> and real ann@example.com"


async def test_with_redaction_on_the_model_never_sees_the_values_and_the_result_has_them(tmp_path: Path) -> None:
    provider = ScriptedProvider({"party": "<EMAIL_1>", "note": "card <CARD_1>"})
    harness = Harness(config(tmp_path, redact_pii=True), provider=provider)
    ctx = harness.context()
    schema = {"type": "object", "properties": {"party": {"type": "string"}, "note": {"type": "string"}}}

    answer = await ctx.ask(task="t", system="s", document=LETTER, schema=schema)

    assert answer == {"party": "jane.doe@example.com", "note": "card 4111 1111 1111 1111"}
    sent = provider.requests[0].document
    assert "jane.doe@example.com" not in sent and "4111 1111 1111 1111" not in sent and "<EMAIL_1>" in sent
    assert harness.metric("agentd_pii_redacted_total", kind="email") == 2
    assert harness.metric("agentd_pii_redacted_total", kind="card") == 1
    [event] = harness.events("pii_redacted")
    assert event["counts"]["iban"] == 1 and "jane.doe" not in str(event)


async def test_with_redaction_off_the_document_goes_unchanged(tmp_path: Path) -> None:
    provider = ScriptedProvider({"ok": True})
    harness = Harness(config(tmp_path), provider=provider)
    await harness.context().ask(task="t", system="s", document=LETTER, schema={"type": "object"})
    assert provider.requests[0].document == LETTER
    assert harness.metric("agentd_pii_redacted_total", kind="email") == 0
