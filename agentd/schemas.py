"""JSON Schema checks in one place: one cached, bounded set of validators keyed by the schema's content."""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import jsonschema

MAX_CACHED = 256
_validators: "OrderedDict[str, jsonschema.Draft202012Validator]" = OrderedDict()


def _key(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A checked validator for `schema`, shared by every schema with the same content."""
    key = _key(schema)
    found = _validators.get(key)
    if found is not None:
        _validators.move_to_end(key)
        return found
    jsonschema.Draft202012Validator.check_schema(schema)
    found = _validators[key] = jsonschema.Draft202012Validator(schema)
    if len(_validators) > MAX_CACHED:
        _validators.popitem(last=False)
    return found


def check(schema: dict[str, Any], value: Any) -> str | None:
    """None when `value` matches `schema`, else where and what is wrong, in one line."""
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message[:300]}"


def cache_size() -> int:
    return len(_validators)
