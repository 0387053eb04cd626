"""JSON Schema checks in one place: one cached, bounded set of validators keyed by the schema's content.

jsonschema (Draft 2020-12) is the authority: every "invalid" and every message comes from it.
A schema seen again that uses only plain keywords (types, properties, required, string
enums, lengths, bounds, anyOf/oneOf/allOf/not) also gets a fastjsonschema function, compiled
to Python code: a value it accepts is valid (about 30x faster than walking the schema with
jsonschema; a model's answers are checked on every call), anything else is asked of jsonschema.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # both are imported on the first check: start-up does not wait for them
    import jsonschema

MAX_CACHED = 256
FAST_AFTER_USES = 2  # a one-off inline schema is not worth compiling (about 3 ms)
_validators: "OrderedDict[str, _Cached]" = OrderedDict()
_by_identity: "OrderedDict[int, tuple[dict[str, Any], str]]" = OrderedDict()

# keywords that mean the same in Draft 2020-12 and in the draft-07 code fastjsonschema writes
PLAIN = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const",
                   "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
                   "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "format",
                   "anyOf", "oneOf", "allOf", "not",
                   "title", "description", "default", "examples", "$comment", "readOnly", "writeOnly",
                   "deprecated"})
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "readOnly", "writeOnly",
                         "deprecated"})


@dataclass
class _Cached:
    slow: "jsonschema.Draft202012Validator"
    plain: bool
    uses: int = 0
    fast: Callable[[Any], Any] | None = field(default=None)


def _key(schema: dict[str, Any]) -> str:
    """The schema's content as text; the same dict object is serialized once while it is cached."""
    known = _by_identity.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)
    _by_identity[id(schema)] = (schema, text)  # holding the dict keeps its id from being reused
    if len(_by_identity) > MAX_CACHED:
        _by_identity.popitem(last=False)
    return text


def _is_plain(schema: Any) -> bool:
    """Only keywords whose meaning both libraries share (enums and consts of strings only: 1 == True
    in Python, not in JSON Schema)."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for keyword, value in schema.items():
        if keyword not in PLAIN:
            return False
        if keyword in ANNOTATIONS:
            continue
        if keyword == "properties":
            if not isinstance(value, dict) or not all(_is_plain(s) for s in value.values()):
                return False
        elif keyword in ("items", "additionalProperties", "not"):
            if not _is_plain(value):
                return False
        elif keyword in ("anyOf", "oneOf", "allOf"):
            if not isinstance(value, list) or not all(_is_plain(s) for s in value):
                return False
        elif keyword == "enum":
            if not isinstance(value, list) or not all(isinstance(v, str) or v is None for v in value):
                return False
        elif keyword == "const" and not (isinstance(value, str) or value is None):
            return False
    return True


def _cached(schema: dict[str, Any]) -> _Cached:
    key = _key(schema)
    found = _validators.get(key)
    if found is not None:
        _validators.move_to_end(key)
        return found
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)
    found = _validators[key] = _Cached(jsonschema.Draft202012Validator(schema), _is_plain(schema))
    if len(_validators) > MAX_CACHED:
        _validators.popitem(last=False)
    return found


def validator(schema: dict[str, Any]) -> "jsonschema.Draft202012Validator":
    """A checked validator for `schema`, shared by every schema with the same content."""
    return _cached(schema).slow


def _fast_valid(cached: _Cached, value: Any) -> bool:
    if not cached.plain:
        return False
    import fastjsonschema

    if cached.fast is None:
        cached.uses += 1
        if cached.uses < FAST_AFTER_USES:
            return False
        try:
            cached.fast = fastjsonschema.compile(cached.slow.schema, use_formats=False)
        except fastjsonschema.JsonSchemaException:
            cached.plain = False
            return False
    try:
        cached.fast(value)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def check(schema: dict[str, Any], value: Any) -> str | None:
    """None when `value` matches `schema`, else where and what is wrong, in one line."""
    cached = _cached(schema)
    if _fast_valid(cached, value):
        return None
    from jsonschema.exceptions import best_match

    error = best_match(cached.slow.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message[:300]}"


def warm() -> None:
    """Import both libraries (in a thread after start-up: the first check must not wait on the loop)."""
    import fastjsonschema  # noqa: F401
    import jsonschema  # noqa: F401


def cache_size() -> int:
    return len(_validators)
