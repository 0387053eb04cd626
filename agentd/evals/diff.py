"""Results as flat field paths ("entities.amounts.0"), and the field-by-field changes between two."""
from __future__ import annotations

from typing import Any

MISSING = object()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf values by dotted path; an empty list or object is a leaf of its own."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix: value}


def lookup(value: Any, path: str) -> Any:
    """The value at a dotted path (list items by index), or MISSING."""
    if path in ("", "."):
        return value
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def changes(before: Any, after: Any) -> list[dict[str, Any]]:
    """Every field path whose value differs: {"field", "before", "after"} (absent: "<absent>")."""
    old, new = flatten(before), flatten(after)
    out = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, MISSING), new.get(path, MISSING)
        if a != b or type(a) is not type(b):
            out.append({"field": path or "(result)", "before": _shown(a), "after": _shown(b)})
    return out


def _shown(value: Any) -> Any:
    return "<absent>" if value is MISSING else value
