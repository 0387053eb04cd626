"""Secret redaction: removes configured secret values and credential shapes from any text."""
from __future__ import annotations

import re
from typing import Any, Iterable

MASK = "[REDACTED]"

# Credential shapes that are secrets whatever variable they came from.
PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{10,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"(?i)\b(aws_secret_access_key|x-api-key|api[_-]?key|authorization)(\"?\s*[:=]\s*\"?)[^\s\"',}]{8,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b"),
]


# one pass to tell whether any shape is present at all (most strings have none)
_ANY = re.compile("|".join(f"(?:{p.pattern.removeprefix('(?i)')})" for p in PATTERNS), re.IGNORECASE)


class Redactor:
    """Callable that scrubs a string, or every string inside a JSON-like value."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        if len(value) < 8 or not _ANY.search(value):
            return value
        for pattern in PATTERNS:
            if pattern.groups >= 2:
                value = pattern.sub(lambda m: m.group(1) + m.group(2) + MASK, value)
            elif pattern.groups == 1:
                value = pattern.sub(lambda m: m.group(1) + " " + MASK, value)
            else:
                value = pattern.sub(MASK, value)
        return value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        if isinstance(value, BaseException):
            return self.text(f"{value.__class__.__name__}: {value}")
        return value

    def processor(self, _logger: Any, _method: str, event_dict: dict) -> dict:
        """structlog processor: the last line of defence before rendering."""
        return {k: self(v) for k, v in event_dict.items()}
