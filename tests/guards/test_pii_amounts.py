"""PII redaction leaves amounts with thousands separators alone; dotted phone numbers are still redacted."""
from __future__ import annotations

import pytest

from agentd.guards.pii import redact


@pytest.mark.parametrize("text", [
    "Total 12.345.678,90 EUR",   # a European amount with thousands dots
    "EUR 10.000.000,00",
    "Menge 99.999.999 Stück",    # a quantity
])
def test_a_thousands_grouped_amount_is_not_taken_for_a_phone_number(text: str) -> None:
    # with AGENTD_REDACT_PII on, the model must still read amounts (TESTING.md: nothing that is not a secret removed)
    redaction = redact(text)
    assert redaction.text == text
    assert redaction.counts == {}


def test_real_phone_numbers_with_dots_are_still_redacted() -> None:
    # the other way: a fix must keep these (the last group is not three digits, or the groups are pairs)
    for phone in ("555.123.4567", "01.23.45.67.89"):
        assert redact(f"call {phone} today").text == "call <PHONE_1> today"
