"""Secret redaction: removes secret values, credential shapes and URL credentials, and nothing else.

A word after `Bearer` or `Basic` is prose unless it is shaped like a credential (`credential_shaped`).

What counts as a secret value is decided by the configuration (config.secret_values): the
value of a variable whose name contains KEY, TOKEN, SECRET or PASSWORD, when it looks like
a secret (not a small number, a boolean or a duration). State fields (file names, paths,
hashes, ids) are never rewritten: recovery and requeue rely on them as they were.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Iterable

MASK = "[REDACTED]"

# words joined by - / . _ (prose, names, domains), camel-cased words, all-caps words; numbers, dates
_WORD = r"(?:[A-Za-z][a-z]*(?:[A-Z][a-z]+)*|[A-Z]+)"  # each camel hump starts upper: no backtracking blow-up
_WORDS = re.compile(rf"{_WORD}(?:[-./_~]+{_WORD})*[-./_~]*")
_NUMBER = re.compile(r"[0-9][0-9.,:/-]*")
MIN_TOKEN_CHARS = 8
MIN_TOKEN_BITS_PER_CHAR = 2.5


def credential_shaped(value: str) -> bool:
    """A token (base64, hex, JWT, a generated key) rather than a word, a name or an amount.

    At least MIN_TOKEN_CHARS long, not words (however joined or cased), not a number or a
    date, and varied enough (Shannon entropy per character): `Basic functionality`, `Bearer
    Instruments`, `Basic 2048.00` stay; `Basic dXNlcjpwYXNz`, `Bearer eyJhbGciOi...` go."""
    body = value.rstrip("=")
    if len(body) < MIN_TOKEN_CHARS or _WORDS.fullmatch(body) or _amount_or_date(body):
        return False
    counts = Counter(body)
    bits = -sum(n / len(body) * math.log2(n / len(body)) for n in counts.values())
    return bits >= MIN_TOKEN_BITS_PER_CHAR


def _amount_or_date(value: str) -> bool:
    """Digits with separators (2048.00, 2024-01-15) or a count; 16 bare digits or more are a token."""
    return bool(_NUMBER.fullmatch(value)) and (len(value) < 16 or any(c in ".,:/-" for c in value))


def _scheme_token(match: re.Match[str]) -> str:
    """`Bearer <token>` / `Basic <token>`: the token masked only when it is credential-shaped."""
    return f"{match.group(1)} {MASK}" if credential_shaped(match.group(2)) else match.group(0)


# Credential shapes that are secrets whatever variable they came from: (pattern, replacement)
RULES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})"), _scheme_token),
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{10,}"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"(?i)\b(aws_secret_access_key|x-api-key|api[_-]?key|authorization)(\"?\s*[:=]\s*\"?)"
                r"[^\s\"',};&#]{8,}"), rf"\1\2{MASK}"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), MASK),
    (re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b"), MASK),
]
# URL credentials: the userinfo of scheme://user:password@host, and token-like query values
URL_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+@"), rf"\1{MASK}@"),
    (re.compile(r"(?i)([?&;](?:[a-z0-9_.-]*(?:key|token|secret|password|passwd|pwd|sig|signature|auth|"
                r"credential|session)[a-z0-9_.-]*)=)[^&#;\s\"'<>]+"), rf"\1{MASK}"),
]
# keys whose values are state, not prose: kept byte for byte in audit lines and sidecars
STATE_KEYS = frozenset({"original_name", "raw_name", "file", "path", "duplicate_of", "sha256", "hash", "prev",
                        "audit_hash", "correlation_id", "workflow"})

# one pass to tell whether any shape is present at all (most strings have none)
_ANY = re.compile("|".join(f"(?:{p.pattern.removeprefix('(?i)')})" for p, _ in RULES + URL_RULES),
                  re.IGNORECASE)
# a literal every shape holds (case as its rule matches it): a string with none of them is
# passed over without a regex. Case-insensitive rules are looked for in the casefolded text,
# where the only letter re's IGNORECASE matches differently (dotless i) is mapped back.
_CASED_MARKERS = ("=", "://", "sk-", "AKIA", "ASIA", "gh", "xox")
_FOLDED_MARKERS = ("bearer", "basic", "key", "authorization")
# scrubbed strings remembered: a file's values reach the audit log and the log within moments
# (4,096 held a megabyte more in a backlog and drained it more slowly)
CACHE_SIZE = 256
CACHE_MAX_CHARS = 2048


def _may_hold_a_shape(value: str) -> bool:
    if any(marker in value for marker in _CASED_MARKERS):
        return True
    folded = value.casefold().replace("\u0131", "i")
    return any(marker in folded for marker in _FOLDED_MARKERS)


def mask_urls(text: str) -> str:
    """URL userinfo and token-like query values masked; the rest of the text as it was."""
    for pattern, replacement in URL_RULES:
        text = pattern.sub(replacement, text)
    return text


class Redactor:
    """Callable that scrubs a string, or every string inside a JSON-like value (state keys kept)."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._cache: dict[str, str] = {}
        self.secrets = secrets  # type: ignore[assignment]

    @property
    def secrets(self) -> list[str]:
        return self._secrets

    @secrets.setter
    def secrets(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._cache = {}  # what was clean may hold a new secret

    def text(self, value: str) -> str:
        done = self._cache.get(value)
        if done is None:
            done = self._text(value)
            if len(value) > CACHE_MAX_CHARS:
                return done
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {}
            self._cache[value] = done
        return done

    def _text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        if len(value) < 8 or not _may_hold_a_shape(value) or not _ANY.search(value):
            return value
        for pattern, replacement in RULES + URL_RULES:
            value = pattern.sub(replacement, value)
        return value

    def __call__(self, value: Any) -> Any:
        """A record (dict): its state keys kept as they are, every other value scrubbed."""
        if isinstance(value, dict):
            return {k: v if k in STATE_KEYS else self._scrub(v) for k, v in value.items()}
        return self._scrub(value)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrub(v) for v in value]
        if isinstance(value, BaseException):
            return self.text(f"{value.__class__.__name__}: {value}")
        return value

    def processor(self, _logger: Any, _method: str, event_dict: dict) -> dict:
        """structlog processor, the last before rendering: a log line is prose, nothing is kept."""
        return {k: self._scrub(v) for k, v in event_dict.items()}
