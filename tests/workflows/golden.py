"""Golden cases for an eval: `<name>.<ext>` documents beside `<name>.expected.json` field expectations.

An expectation file maps a result field path ("party", "entities.amounts.0") to the expected value,
compared exactly, or to {"value": ..., "match": "exact|casefold|numeric|set|contains", "tolerance": x}:
casefold ignores case and runs of spaces; numeric compares the leading number within `tolerance`
and the rest ("EUR") exactly; set compares two lists as sets; contains wants the value inside the
actual text, case ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIX = ".expected.json"
MISSING = object()


@dataclass(frozen=True)
class Case:
    document: Path
    expected: dict[str, Any]


def cases(folder: Path) -> list[Case]:
    """Every document in `folder` that has an expectation file, by name."""
    found = []
    for spec in sorted(folder.glob(f"*{SUFFIX}")):
        stem = spec.name[: -len(SUFFIX)]
        documents = [p for p in folder.glob(f"{stem}.*") if p != spec and p.name != f"{stem}{SUFFIX}"]
        if len(documents) != 1:
            raise ValueError(f"{spec.name}: expected one document named {stem}.<ext>, found {len(documents)}")
        found.append(Case(documents[0], json.loads(spec.read_text("utf-8"))))
    return found


def field(result: Any, path: str) -> Any:
    """The value at a dotted path ("entities.dates.0"); MISSING when the path does not exist."""
    current = result
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current


def _numeric(actual: Any, expected: Any, tolerance: float) -> bool:
    head_a, _, rest_a = str(actual).strip().partition(" ")
    head_e, _, rest_e = str(expected).strip().partition(" ")
    try:
        return abs(float(head_a) - float(head_e)) <= tolerance and rest_a.strip() == rest_e.strip()
    except ValueError:
        return False


def matches(actual: Any, spec: Any) -> bool:
    """Whether `actual` meets one expectation (a plain value, or a {"value", "match"} object)."""
    if actual is MISSING:
        return False
    if not (isinstance(spec, dict) and "value" in spec):
        return bool(actual == spec)
    expected, how = spec["value"], spec.get("match", "exact")
    if how == "exact":
        return bool(actual == expected)
    if how == "casefold":
        return " ".join(str(actual).casefold().split()) == " ".join(str(expected).casefold().split())
    if how == "contains":
        return str(expected).casefold() in str(actual).casefold()
    if how == "numeric":
        return _numeric(actual, expected, float(spec.get("tolerance", 0)))
    if how == "set":
        return isinstance(actual, list) and set(map(str, actual)) == set(map(str, expected))
    raise ValueError(f"unknown match {how!r}")
