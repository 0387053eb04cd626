"""The offline triage rules as they were before agentd/workflows/triage_rules/ (the bench's baseline).

Kept verbatim apart from the two helpers it shares with the new rules (imported): keyword counts
for the type, one regex each for amounts, dates and company names, the first name as the party.
"""
from __future__ import annotations

import re
from typing import Any

from agentd.workflows.triage_rules import summary_of, unique

DOC_TYPES = [
    ("invoice", ("invoice", "amount due", "rechnung", "facture", "bill to", "payment terms")),
    ("receipt", ("receipt", "thank you for your purchase", "paid with", "transaction id")),
    ("contract", ("agreement", "contract", "hereinafter", "terms and conditions", "party of the")),
    ("order", ("purchase order", "order number", "please ship", "quantity")),
    ("complaint", ("complaint", "dissatisfied", "refund", "unacceptable", "disappointed")),
    ("resume", ("curriculum vitae", "resume", "work experience", "education")),
    ("report", ("report", "findings", "executive summary", "quarterly")),
    ("email", ("from:", "subject:")),
    ("letter", ("dear ", "sincerely", "kind regards", "best regards")),
]
ACTIONS = [
    ("pay", ("amount due", "please pay", "payment due", "due date", "remit")),
    ("reply", ("please reply", "let me know", "please respond", "get back to")),
    ("refund", ("refund",)),
    ("sign", ("please sign", "signature")),
    ("ship", ("please ship", "deliver")),
    ("review", ("please review", "for your review", "approve")),
]
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
AMOUNT = re.compile(r"(?:[$€£]\s?\d[\d,.]*\d|\b\d[\d,.]*\d\s?(?:USD|EUR|GBP|€|\$)|\b(?:USD|EUR|GBP)\s?\d[\d,.]*)")
DATE = re.compile(r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}|"
                  r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2},? \d{4})\b")
ORG = re.compile(r"\b((?:[A-Z][\w&'-]+ ){0,3}[A-Z][\w&'-]+ (?:Inc|Ltd|LLC|GmbH|AG|SA|SARL|BV|Corp|Co|plc)\b\.?)")
PERSON_CUES = re.compile(r"(?im)^(?:from|sender|signed|sincerely|regards|best regards|kind regards|dear)[:,]?\s*\n?\s*"
                         r"([A-Z][a-z]+(?: [A-Z][a-z]+){1,2})")
FROM_HEADER = re.compile(r"(?im)^from:\s*\"?([^<\n\"]+?)\"?\s*(?:<[^>]+>)?\s*$")


def triage(document: str) -> dict[str, Any]:
    """The rule-based triage answer for a document (the old rules)."""
    lower = document.lower()
    scores = [(sum(lower.count(k) for k in keys), -rank, name) for rank, (name, keys) in enumerate(DOC_TYPES)]
    best, _, doc_type = max(scores)
    if best == 0:
        doc_type = "other"
    action = next((name for name, keys in ACTIONS if any(k in lower for k in keys)), "none")
    people = [m.group(1) for m in PERSON_CUES.finditer(document)]
    people += [m.group(1).strip() for m in FROM_HEADER.finditer(document) if "@" not in m.group(1)]
    organizations = unique([m.group(1) for m in ORG.finditer(document)])
    people = unique(people)
    party = organizations[0] if organizations else (people[0] if people else "")
    confidence = 0.55 if best == 0 else min(0.95, 0.65 + 0.1 * best)
    return {
        "document_type": doc_type,
        "summary": summary_of(document),
        "entities": {
            "people": people,
            "organizations": organizations,
            "emails": unique(EMAIL.findall(document)),
            "amounts": unique(AMOUNT.findall(document)),
            "dates": unique(DATE.findall(document)),
        },
        "requested_action": action,
        "party": party,
        "confidence": round(confidence, 2),
    }
