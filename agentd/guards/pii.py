"""PII redaction before the model: typed placeholders in the prompt, the real values restored after.

E-mail addresses, IBANs (mod-97 checked), card numbers (Luhn checked) and phone numbers
become `<EMAIL_1>`, `<IBAN_1>`, `<CARD_1>`, `<PHONE_1>`; the same value always gets the
same placeholder. The model never sees the values; `Redaction.restore` puts them back
into every string of its answer.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from agentd.guards.base import Ask, Guard

KINDS = ("email", "iban", "card", "phone")
PLACEHOLDER = re.compile(r"<(EMAIL|IBAN|CARD|PHONE)_(\d{1,6})>")

EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})"
                   r"(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![\w-])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}(?![A-Za-z0-9])")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
PHONE = re.compile(r"(?<![\w+@/.-])(?:(?:\+|00)\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,8}){1,5}"
                   r"(?![\w@/-])|(?<![\w+])\+\d{7,15}(?!\w)")
THOUSANDS = re.compile(r"^\d{1,3}(?:[.,' ]\d{3})+$")
DATE_SHAPES = (re.compile(r"^\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}$"), re.compile(r"^\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4}$"))


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _iban(match: str) -> str | None:
    """The longest valid IBAN at the start of `match` (it may run into the following words)."""
    groups = match.split(" ")
    for end in range(len(groups), 0, -1):
        candidate = " ".join(groups[:end])
        if iban_ok(candidate.replace(" ", "")):
            return candidate
    return None


def _card(match: str) -> str | None:
    digits = re.sub(r"\D", "", match)
    return match if 13 <= len(digits) <= 19 and luhn_ok(digits) else None


def _phone(match: str) -> str | None:
    digits = re.sub(r"\D", "", match)
    if not 7 <= len(digits) <= 15 or any(shape.match(match) for shape in DATE_SHAPES):
        return None
    if THOUSANDS.match(match.strip()):  # 12.345.678 is an amount (a quantity), not a phone number
        return None
    return match


def _email(match: str) -> str | None:
    return match


FINDERS: tuple[tuple[str, re.Pattern[str], Callable[[str], str | None]], ...] = (
    ("email", EMAIL, _email), ("iban", IBAN, _iban), ("card", CARD, _card), ("phone", PHONE, _phone))


@dataclass
class Redaction:
    """The redacted text, and what it takes to put the values back."""

    text: str
    values: dict[str, str] = field(default_factory=dict)   # placeholder -> original value
    counts: dict[str, int] = field(default_factory=dict)   # kind -> occurrences replaced

    def restore(self, value: Any) -> Any:
        """`value` with every known placeholder in every string (and dict key) replaced back."""
        if not self.values:
            return value
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: self.values.get(m.group(0), m.group(0)), value)
        if isinstance(value, dict):
            return {self.restore(k): self.restore(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.restore(v) for v in value]
        return value


def _numbers(taken: set[str], kind: str) -> Iterator[str]:
    n = 0
    while True:
        n += 1
        placeholder = f"<{kind.upper()}_{n}>"
        if placeholder not in taken:
            yield placeholder


def redact(text: str) -> Redaction:
    """Replace every e-mail, IBAN, card and phone number in `text` by a typed placeholder."""
    already = {m.group(0) for m in PLACEHOLDER.finditer(text)}  # literal look-alikes in the input stay as they are
    result = Redaction(text)
    for kind, pattern, check in FINDERS:
        assigned: dict[str, str] = {}
        fresh = _numbers(already, kind)

        def replace(match: re.Match[str]) -> str:
            found = check(match.group(0))
            if found is None:
                return match.group(0)
            if found not in assigned:
                assigned[found] = next(fresh)
                result.values[assigned[found]] = found
            result.counts[kind] = result.counts.get(kind, 0) + 1
            return assigned[found] + match.group(0)[len(found):]

        result.text = pattern.sub(replace, result.text)
    return result


class PiiGuard(Guard):
    """With AGENTD_REDACT_PII on, every ask's document goes to the model with placeholders; the answer
    gets the real values back. It applies to every workflow, with or without tools."""

    def __init__(self, enabled: bool, audit: Any, metrics: Any):
        self.enabled = enabled
        self.audit = audit
        self.metrics = metrics

    def configure(self, config: Any) -> None:
        self.enabled = config.redact_pii

    def before_ask(self, ask: Ask) -> None:
        if not self.enabled:
            return
        redaction = redact(ask.request.document)
        for kind, count in redaction.counts.items():
            self.metrics.pii_redacted.labels(kind).inc(count)
        if redaction.counts:
            run = ask.run
            self.audit.append("pii_redacted", correlation_id=run.cid, workflow=run.workflow, step=run.step,
                              counts=redaction.counts)
        ask.request = dataclasses.replace(ask.request, document=redaction.text)
        ask.restore = redaction.restore

    def after_ask(self, ask: Ask) -> None:
        ask.answer = ask.restore(ask.answer)
