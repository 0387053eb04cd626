"""Configuration values: the parsers that turn a variable's text into its typed value (or a ValueError
with a short reason), and the rule for which values are secrets (SPEC section 3)."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Callable
from urllib.parse import unquote


SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
SECRET_VARIABLES = ("OTEL_EXPORTER_OTLP_HEADERS",)  # carries API keys, yet has none of the markers
KNOWN_SERVICES = ("ocr", "notification", "db-query")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS) or upper in SECRET_VARIABLES


_BOOLEANS = frozenset({"true", "false", "yes", "no", "on", "off"})
_SMALL_NUMBER = re.compile(r"[+-]?(?=[\d.]*\d)\d*(?:\.\d*)?")
_DURATION = re.compile(r"(?i)\d+(?:\.\d+)?\s*(?:ms|s|sec|m|min|h|d)")


def looks_like_secret(value: str) -> bool:
    """A secret variable's value is a secret unless it is a small number (6 digits or fewer,
    such as LLM_MAX_OUTPUT_TOKENS=2048 or 0.50), a boolean, a duration (30s, 5m), or under 4 characters."""
    text = value.strip()
    if len(text) < 4 or text.lower() in _BOOLEANS or _DURATION.fullmatch(text):
        return False
    if _SMALL_NUMBER.fullmatch(text):
        return sum(c.isdigit() for c in text) > 6
    return True


def secret_values(name: str, value: str) -> list[str]:
    """The secrets a variable holds: its value, and each token of a `name:token,...` list."""
    if not is_secret_name(name) or not value:
        return []
    parts = [value.strip()]
    if "," in value or ":" in value:
        items = [item.strip() for item in value.split(",")]
        parts += items + [item.partition(":")[2].strip() for item in items if ":" in item]
    return [part for part in parts if looks_like_secret(part)]


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be a whole number from {lo} to {hi}")
        return value
    return parse


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be a number from {lo:g} to {hi:g}")
        return value
    return parse


def _usd(raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError("must be an amount in USD such as 0.50") from None
    if not value.is_finite() or value < 0:
        raise ValueError("must be an amount in USD of 0 or more")
    return value


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be 1 or 0")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return parse


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _services(raw: str) -> frozenset[str]:
    names = _list(raw)
    unknown = sorted(set(names) - set(KNOWN_SERVICES))
    if unknown:
        raise ValueError(f"unknown service {unknown[0]!r}; known: {', '.join(KNOWN_SERVICES)}")
    return frozenset(names)


def _host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("must be a host name or address")
    return value


def _url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _text(raw: str) -> str:
    return raw.strip()


def _named_tokens(raw: str) -> tuple[tuple[str, str], ...]:
    """`name:token,name:token` (review console users); names unique, tokens 8+ characters."""
    pairs: list[tuple[str, str]] = []
    for n, item in enumerate(_list(raw), 1):
        name, colon, token = item.partition(":")
        name, token = name.strip(), token.strip()
        if not colon or not name or not token:
            raise ValueError(f"entry {n} must be name:token")
        if not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"entry {n}: a name may use letters, digits, '-', '_' and '.'")
        if len(token) < 8:
            raise ValueError(f"entry {n} ({name}): the token must have at least 8 characters")
        if name in (p[0] for p in pairs):
            raise ValueError(f"name {name!r} is listed twice")
        pairs.append((name, token))
    return tuple(pairs)
def _otlp_url(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https:// (OTLP over HTTP)")
    return value


def _pairs(what: str) -> Callable[[str], tuple[tuple[str, str], ...]]:
    """W3C Baggage-like `key=value,key2=value2`, values percent-decoded (the OTEL_* list format)."""
    def parse(raw: str) -> tuple[tuple[str, str], ...]:
        pairs = []
        for item in raw.split(","):
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"must be a comma list of {what}=value pairs")
            pairs.append((unquote(key.strip()), unquote(value.strip())))
        return tuple(pairs)
    return parse


def _ms_as_s(lo_ms: int, hi_ms: int) -> Callable[[str], float]:
    parse_ms = _int(lo_ms, hi_ms)
    return lambda raw: parse_ms(raw) / 1000.0


# variable name -> (Config field, parser)
