"""A workflow's output schema as form inputs named by JSON path, and a posted form back as edits."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

SCALARS = ("string", "number", "integer", "boolean")
LONG_TEXT = 300


@dataclass(frozen=True)
class Field:
    path: str            # the input's name: party, entities.emails.0
    label: str
    kind: str            # string | number | integer | boolean | readonly
    value: str
    options: tuple[str, ...] = ()
    multiline: bool = False
    depth: int = 0


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", "string")
    return list(kind) if isinstance(kind, list) else [kind]


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(value)
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def fields(schema: dict[str, Any] | None, result: Any, prefix: str = "", depth: int = 0) -> list[Field]:
    """The inputs for `result` under `schema`, in the schema's order (read-only parts shown as text)."""
    if not schema or not isinstance(result, dict):
        return []
    out: list[Field] = []
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        value = result.get(name)
        types = _types(sub)
        if sub.get("readOnly"):
            out.append(Field(path, name.replace("_", " "), "readonly", _shown(value), depth=depth))
        elif "object" in types and sub.get("properties"):
            out.append(Field(path, name.replace("_", " "), "group", "", depth=depth))
            out.extend(fields(sub, value if isinstance(value, dict) else {}, f"{path}.", depth + 1))
        elif "array" in types and _types(sub.get("items") or {})[0] in SCALARS:
            out.extend(_array_fields(path, name, sub, value if isinstance(value, list) else [], depth))
        elif types[0] in SCALARS:
            out.append(Field(path, name.replace("_", " "), types[0], _shown(value),
                             tuple(str(o) for o in sub.get("enum", ())),
                             multiline=int(sub.get("maxLength", 0)) > LONG_TEXT, depth=depth))
        else:
            out.append(Field(path, name.replace("_", " "), "readonly", _shown(value), depth=depth))
    return out


def _array_fields(path: str, name: str, sub: dict[str, Any], value: list[Any], depth: int) -> list[Field]:
    kind = _types(sub.get("items") or {})[0]
    items = [Field(f"{path}.{i}", f"{name.replace('_', ' ')} {i + 1}", kind, _shown(v), depth=depth)
             for i, v in enumerate(value)]
    return items + [Field(f"{path}.{len(value)}", f"{name.replace('_', ' ')} (add)", kind, "", depth=depth)]


def _convert(kind: str, raw: str) -> Any:
    raw = raw.replace("\r\n", "\n")
    if kind == "string":
        return raw
    text = raw.strip()
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise ValueError("must be true or false")
        return text.lower() == "true"
    try:
        number = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if kind == "integer":
        if not number.is_integer():
            raise ValueError("must be a whole number")
        return int(number)
    return int(number) if number.is_integer() and "." not in text else number


def edits_from(form: Mapping[str, str], schema: dict[str, Any] | None,
               result: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """({JSON path: new value} for what the form changed, {path: why} for what cannot be read).
    An array is edited as a whole: its inputs in order, blank ones dropped."""
    edits: dict[str, Any] = {}
    errors: dict[str, str] = {}
    arrays: dict[str, list[Any]] = {}
    for f in fields(schema, result):
        if f.kind in ("readonly", "group") or f.path not in form:
            continue
        base, _, index = f.path.rpartition(".")
        in_array = index.isdigit() and base
        raw = str(form[f.path])
        if in_array and not raw.strip():
            arrays.setdefault(base, [])
            continue
        try:
            value = _convert(f.kind, raw)
        except ValueError as exc:
            errors[f.path] = str(exc)
            continue
        if in_array:
            arrays.setdefault(base, []).append(value)
        elif value != _lookup(result, f.path) and not (value == "" and _lookup(result, f.path) is None):
            edits[f.path] = value
    for base, values in arrays.items():
        if values != _lookup(result, base):
            edits[base] = values
    return edits, errors


def _lookup(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def error_for_field(errors: dict[str, str], path: str) -> str | None:
    """An array's error belongs beside its first input, an item's beside that item."""
    if path in errors:
        return errors[path]
    base, _, index = path.rpartition(".")
    return errors.get(base) if index == "0" else None
