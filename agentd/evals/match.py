"""Expected fields of an eval case, and how a result's field is matched against one.

`<name>.expected.json` maps dotted result paths to a value (matched exactly) or to
{"value": ..., "match": "exact|casefold|numeric|set|contains", "tolerance": 0.01}.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from agentd.evals.diff import MISSING, lookup

MATCHES = ("exact", "casefold", "numeric", "set", "contains")
SPEC_KEYS = {"value", "match", "tolerance"}
NUMBER = re.compile(r"-?\d[\d.,]*\d|-?\d")


class CaseError(ValueError):
    """An expected.json that cannot be read as one."""


@dataclass(frozen=True)
class Expected:
    field: str
    value: Any
    match: str = "exact"
    tolerance: float = 0.0

    def check(self, result: Any) -> tuple[bool, Any]:
        """(matched, the actual value) for `result`."""
        actual = lookup(result, self.field)
        if actual is MISSING:
            return False, "<absent>"
        return MATCHERS[self.match](self, actual), actual


def parse(raw: Any, where: str) -> list[Expected]:
    if not isinstance(raw, dict) or not raw:
        raise CaseError(f"{where}: expected a JSON object mapping result fields to values")
    found = []
    for path, spec in raw.items():
        if isinstance(spec, dict) and "value" in spec and set(spec) <= SPEC_KEYS:
            how = spec.get("match", "exact")
            if how not in MATCHES:
                raise CaseError(f"{where}: {path}: match {how!r} is not one of {', '.join(MATCHES)}")
            tolerance = spec.get("tolerance", 0.0)
            if not isinstance(tolerance, (int, float)) or tolerance < 0:
                raise CaseError(f"{where}: {path}: tolerance must be a number >= 0")
            found.append(Expected(str(path), spec["value"], how, float(tolerance)))
        else:
            found.append(Expected(str(path), spec))
    return found


def load(path: Any) -> list[Expected]:
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CaseError(f"{path}: {exc}") from None
    return parse(raw, str(path))


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _fold(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.casefold().split())
    if isinstance(value, list):
        return [_fold(v) for v in value]
    if isinstance(value, dict):
        return {k: _fold(v) for k, v in value.items()}
    return value


def number(value: Any) -> float | None:
    """A number from a number or from text such as "$1,234.50" or "1.234,50 EUR"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    found = NUMBER.search(value.replace("\u00a0", "").replace(" ", ""))
    if not found:
        return None
    text = found.group(0)
    if "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
    elif "," in text:
        decimal = "." if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+", text) else ","
    else:
        decimal = "."
    thousands = "," if decimal == "." else "."
    try:
        return float(text.replace(thousands, "").replace(decimal, "."))
    except ValueError:
        return None


def _exact(e: Expected, actual: Any) -> bool:
    return _canon(actual) == _canon(e.value)


def _casefold(e: Expected, actual: Any) -> bool:
    return _canon(_fold(actual)) == _canon(_fold(e.value))


def _numeric(e: Expected, actual: Any) -> bool:
    a, b = number(actual), number(e.value)
    return a is not None and b is not None and abs(a - b) <= e.tolerance + 1e-9


def _set(e: Expected, actual: Any) -> bool:
    if not isinstance(actual, list) or not isinstance(e.value, list):
        return False
    return {_canon(_fold(v)) for v in actual} == {_canon(_fold(v)) for v in e.value}


def _contains(e: Expected, actual: Any) -> bool:
    if isinstance(actual, str) and isinstance(e.value, str):
        return _fold(e.value) in _fold(actual)
    if isinstance(actual, list):
        wanted = e.value if isinstance(e.value, list) else [e.value]
        have = {_canon(_fold(v)) for v in actual}
        return all(_canon(_fold(w)) in have for w in wanted)
    return False


MATCHERS = {"exact": _exact, "casefold": _casefold, "numeric": _numeric, "set": _set, "contains": _contains}
