"""Rule-based triage of a document's text: the offline answer to the triage workflow's schema.

Pure functions, no provider, no I/O: `triage(document)` returns a dict that validates against
agentd.workflows.triage.TRIAGE_SCHEMA. The parsers live beside it: dates, amounts, parties, doctype.
"""
from __future__ import annotations

import re
from typing import Any

from agentd.workflows.triage_rules.amounts import find_amounts
from agentd.workflows.triage_rules.dates import find_dates, order, scan
from agentd.workflows.triage_rules.doctype import classify, requested_action
from agentd.workflows.triage_rules.parties import EMAIL, find_party

__all__ = ["triage", "find_amounts", "find_dates", "find_party", "classify", "language", "summary_of", "unique"]

PERSON_CUES = re.compile(r"(?im)^(?:from|sender|signed|sincerely|regards|best regards|kind regards|dear"
                         r"|mit freundlichen grüßen|met vriendelijke groet|cordialement)[:,]?[ \t]*\n?[ \t]*"
                         r"([A-Z][a-z]+(?: [A-Z][a-z]+){1,2})")
FROM_PERSON = re.compile(r"(?im)^from:\s*\"?([^<\n\"@]+?)\"?\s*(?:<[^>]+>)?\s*$")
LANGUAGE_WORDS = {
    "de": r"und|der|die|das|rechnung\w*|bitte|summe|betrag|ust|mwst|zahlbar|gesamt\w*",
    "fr": r"le|la|les|des|et|facture|montant|date\s+de|tva|ttc|paiement",
    "nl": r"het|een|van|voor|factuur\w*|bedrag|btw|totaal|betalen",
    "en": r"the|and|of|for|invoice|total|amount|date|due|please|tax",
}
# one pass over the text, a named group per language
LANGUAGE = re.compile(r"(?<!\w)(?=[^\W\d_])(?:"
                      + "|".join(f"(?P<{lang}>{words})" for lang, words in LANGUAGE_WORDS.items())
                      + r")(?!\w)", re.IGNORECASE)
FALLBACK_CURRENCY = {"en": "USD", "de": "EUR", "fr": "EUR", "nl": "EUR"}
MAX_SUMMARY_CHARS = 240
SPACES = re.compile(r"[\u00a0\u2007\u202f]")


def language(text: str) -> str:
    """en, de, fr or nl: the language whose common words occur most (English on a tie)."""
    counts = dict.fromkeys(("en", "de", "fr", "nl"), 0)
    for m in LANGUAGE.finditer(text, 0, 4000):
        counts[m.lastgroup or "en"] += 1
    return max(counts, key=lambda lang: counts[lang])


def unique(items: list[str], limit: int = 10) -> list[str]:
    seen: list[str] = []
    for item in items:
        item = item.strip().strip(".,;")
        if item and item not in seen:
            seen.append(item)
    return seen[:limit]


def summary_of(text: str) -> str:
    body = " ".join(text.split())
    summary = ""
    for sentence in re.split(r"(?<=[.!?])\s+", body):
        if len(summary) + len(sentence) > MAX_SUMMARY_CHARS:
            break
        summary = f"{summary} {sentence}".strip()
    return (summary or body[:MAX_SUMMARY_CHARS]).strip()


def _month_first(text: str, lang: str) -> bool:
    """3/8/2014 is 8 March in a US-dollar English document, 3 August anywhere else."""
    return lang == "en" and ("$" in text or "USD" in text) and "€" not in text


def triage(document: str) -> dict[str, Any]:
    """The rule-based triage answer for a document's text."""
    document = SPACES.sub(" ", document)
    lang = language(document)
    doc_type, evidence = classify(document)
    emails = unique([m.group(0) for m in EMAIL.finditer(document)])
    party, organizations = find_party(document, emails)
    people = [m.group(1) for m in PERSON_CUES.finditer(document)]
    people += [m.group(1).strip() for m in FROM_PERSON.finditer(document)]
    dates, date_spans = scan(document, month_first=_month_first(document, lang))
    confidence = 0.55 if evidence == 0 else min(0.95, 0.65 + 0.1 * evidence)
    return {
        "document_type": doc_type,
        "summary": summary_of(document),
        "entities": {
            "people": unique([p for p in people if p != party]),
            "organizations": organizations,
            "emails": emails,
            "amounts": find_amounts(document, FALLBACK_CURRENCY[lang], skip=date_spans),
            "dates": order(dates),
        },
        "requested_action": requested_action(document, doc_type),
        "party": party,
        "confidence": round(confidence, 2),
    }
