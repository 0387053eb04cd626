"""The offline provider: deterministic rules, no network, cost 0."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from agentd.llm.base import LLMRequest, LLMResponse

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
# Every pattern runs in time linear in the document (it runs on the event loop): a match
# starts only where a run of its characters starts, or its repeats are bounded.
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
AMOUNT = re.compile(r"(?:[$€£]\s?\d[\d,.]{0,30}\d|\b\d[\d,.]{0,30}\d\s?(?:USD|EUR|GBP|€|\$)|"
                    r"\b(?:USD|EUR|GBP)\s?\d[\d,.]*)")
DATE = re.compile(r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}|"
                  r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2},? \d{4})\b")
ORG = re.compile(r"\b((?:[A-Z][\w&'-]{1,40} ){0,3}[A-Z][\w&'-]{1,40} "
                 r"(?:Inc|Ltd|LLC|GmbH|AG|SA|SARL|BV|Corp|Co|plc)\b\.?)")
PERSON_CUES = re.compile(r"(?im)^(?:from|sender|signed|sincerely|regards|best regards|kind regards|dear)[:,]?\s*+"
                         r"([A-Z][a-z]+(?: [A-Z][a-z]+){1,2})")
FROM_HEADER = re.compile(r"(?im)^from:\s*\"?([^<\n\"]+?)\"?\s*(?:<[^>]+>)?\s*$")


def _unique(items: list[str], limit: int = 10) -> list[str]:
    seen: list[str] = []
    for item in items:
        item = item.strip().strip(".,;")
        if item and item not in seen:
            seen.append(item)
    return seen[:limit]


def _summary(text: str) -> str:
    body = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?])\s+", body)
    summary = ""
    for sentence in sentences:
        if len(summary) + len(sentence) > 240:
            break
        summary = f"{summary} {sentence}".strip()
    return (summary or body[:240]).strip()


def triage(document: str) -> dict[str, Any]:
    """The rule-based triage answer for a document."""
    lower = document.lower()
    # ties go to the more specific type: the one listed first
    scores = [(sum(lower.count(k) for k in keys), -rank, name) for rank, (name, keys) in enumerate(DOC_TYPES)]
    best, _, doc_type = max(scores)
    if best == 0:
        doc_type = "other"
    action = next((name for name, keys in ACTIONS if any(k in lower for k in keys)), "none")
    people = [m.group(1) for m in PERSON_CUES.finditer(document)]
    people += [m.group(1).strip() for m in FROM_HEADER.finditer(document) if "@" not in m.group(1)]
    organizations = _unique([m.group(1) for m in ORG.finditer(document)])
    people = _unique(people)
    party = organizations[0] if organizations else (people[0] if people else "")
    confidence = 0.55 if best == 0 else min(0.95, 0.65 + 0.1 * best)
    return {
        "document_type": doc_type,
        "summary": _summary(document),
        "entities": {
            "people": people,
            "organizations": organizations,
            "emails": _unique(EMAIL.findall(document)),
            "amounts": _unique(AMOUNT.findall(document)),
            "dates": _unique(DATE.findall(document)),
        },
        "requested_action": action,
        "party": party,
        "confidence": round(confidence, 2),
    }


def minimal_instance(schema: dict[str, Any]) -> Any:
    """The smallest value that satisfies a (simple) JSON schema: for unknown tasks."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal_instance(props.get(k, {})) for k in schema.get("required", props)}
    if kind == "array":
        return [minimal_instance(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * schema.get("minLength", 0)
    if kind in ("number", "integer"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


RULES: dict[str, Callable[[str], Any]] = {"triage": triage}


def register_rule(task: str) -> Callable[[Callable[[str], Any]], Callable[[str], Any]]:
    """Decorator: the offline provider's answer for `task` (a user workflow's own rules)."""
    def add(rule: Callable[[str], Any]) -> Callable[[str], Any]:
        RULES[task] = rule
        return rule
    return add


class OfflineProvider:
    name = "offline"

    def __init__(self, rules: dict[str, Callable[[str], Any]] | None = None):
        self.rules = rules or {}

    async def complete(self, request: LLMRequest, model: str, timeout_s: float) -> LLMResponse:
        rule = self.rules.get(request.task) or RULES.get(request.task)
        answer = rule(request.document) if rule else minimal_instance(request.schema)
        content = json.dumps(answer, ensure_ascii=False)
        return LLMResponse(provider=self.name, model=model, content=content, parsed=answer)

    async def close(self) -> None:
        return None
