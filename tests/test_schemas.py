"""JSON Schema checks (agentd.schemas): validators shared by content, in a bounded cache."""
from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from agentd import schemas
from agentd.schemas import MAX_CACHED, cache_size, check, validator

DISTINCT_INLINE_SCHEMAS = 2_000  # 8x the bound; bench/schema_cache.py runs 20,000 and prints figures


def inline(n: int) -> dict[str, Any]:
    """A schema a step builds on the fly (a different one each time: its enum comes from the file)."""
    return {"type": "object", "required": ["label"], "properties": {"label": {"enum": [f"kind-{n}", "other"]}}}


def churn(count: int, start: int = 10_000_000) -> None:
    for n in range(start, start + count):
        validator(inline(n))


def test_thousands_of_distinct_inline_schemas_keep_the_cache_bounded() -> None:
    # Given a workflow whose every ask carries a new inline schema
    peak = 0
    for n in range(DISTINCT_INLINE_SCHEMAS):
        assert check(inline(n), {"label": f"kind-{n}"}) is None
        peak = max(peak, cache_size())
    # Then the cache never held more than its bound, yet every check was right
    assert peak == MAX_CACHED
    assert cache_size() <= MAX_CACHED
    assert check(inline(7), {"label": "kind-8"}) is not None  # an evicted schema is built again, still right


def test_the_same_content_twice_shares_one_validator() -> None:
    first = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    same_in_another_order = {"properties": {"b": {"type": "string"}, "a": {"type": "integer"}}, "type": "object"}
    marker = {"$comment": "unique to this test", **first}
    before = cache_size()
    one = validator(marker)
    other = validator({**same_in_another_order, "$comment": "unique to this test"})
    assert one is other
    assert cache_size() == min(MAX_CACHED, before + 1)


def test_different_content_gets_its_own_validator() -> None:
    assert validator({"type": "string", "$comment": "x1"}) is not validator({"type": "string", "$comment": "x2"})


def test_a_schema_in_use_is_kept_while_others_come_and_go() -> None:
    hot = {"type": "integer", "$comment": "hot"}
    kept = validator(hot)
    for n in range(MAX_CACHED * 2):
        validator(inline(20_000_000 + n))
        assert validator(hot) is kept  # used between the others: the least recently used go first


def test_a_schema_not_used_for_a_while_is_evicted_and_rebuilt() -> None:
    cold = {"type": "integer", "$comment": "cold"}
    first = validator(cold)
    churn(MAX_CACHED, start=30_000_000)
    again = validator(cold)
    assert again is not first
    assert again.is_valid(3) and not again.is_valid("3")


def test_an_invalid_schema_is_refused_and_not_cached() -> None:
    bad = {"type": "no-such-type", "$comment": "bad"}
    with pytest.raises(jsonschema.SchemaError):
        validator(bad)
    assert schemas._key(bad) not in schemas._validators  # the cache is the unit under test


@pytest.mark.parametrize(("value", "problem"), [
    ({"label": "kind-1"}, None),
    ({}, "(root): 'label' is a required property"),
    ({"label": "nope"}, "label: 'nope' is not one of ['kind-1', 'other']"),
    ("text", "(root): 'text' is not of type 'object'"),
])
def test_check_says_where_and_what(value: Any, problem: str | None) -> None:
    assert check(inline(1), value) == problem


# -- the compiled fast check: it may only ever say "valid" where jsonschema does ----------------
def _values(rng: Any, depth: int = 0) -> Any:
    """Random JSON-ish values, heavy on the ones the two libraries could tell apart."""
    pool: list[Any] = [None, True, False, 0, 1, -1, 1.0, 0.5, 2.5, 1e300, "", "a", "invoice", "x" * 40, "ü",
                       [], {}, 3, 10]
    if depth < 3:
        pool += [[_values(rng, depth + 1) for _ in range(rng.randint(0, 3))],
                 {rng.choice(["a", "b", "label", "n", "extra"]): _values(rng, depth + 1) for _ in range(rng.randint(0, 3))}]
    return rng.choice(pool)


DIFFERENTIAL_SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "required": ["label"], "additionalProperties": False,
     "properties": {"label": {"type": "string", "enum": ["invoice", "a", "other"]}, "n": {"type": "integer"},
                    "b": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 3}, "maxItems": 2}}},
    {"type": "object", "properties": {"a": {"type": ["string", "null"], "maxLength": 1},
                                      "b": {"anyOf": [{"type": "boolean"}, {"type": "integer", "exclusiveMinimum": 0}]},
                                      "n": {"oneOf": [{"type": "number"}, {"type": "integer"}]}}},
    {"type": "array", "minItems": 1, "items": {"not": {"type": "object"}}},
    {"type": "object", "properties": {"a": {"const": "a"}, "b": {"type": "string", "pattern": "^[a-z]+$"},
                                      "label": {"type": "number"}}, "minProperties": 1},
    {"type": "object", "properties": {"a": {"enum": [1, True]}, "b": {"uniqueItems": True}}},  # not plain
]


def test_the_fast_check_never_accepts_what_jsonschema_rejects() -> None:
    import random
    from agentd.workflows.triage import TRIAGE_SCHEMA
    rng = random.Random(5)
    for schema in [*DIFFERENTIAL_SCHEMAS, TRIAGE_SCHEMA]:
        slow = jsonschema.Draft202012Validator(schema)
        agreed = 0
        for _ in range(3000):
            value = _values(rng)
            if schema is TRIAGE_SCHEMA and isinstance(value, dict):
                value = {**_triage_answer(), **value}
            verdict = check(schema, value)
            assert (verdict is None) == slow.is_valid(value), (schema, value, verdict)
            agreed += verdict is None
        assert agreed > 0 or schema is TRIAGE_SCHEMA


def _triage_answer() -> dict[str, Any]:
    return {"document_type": "invoice", "summary": "s", "entities": {k: [] for k in
            ("people", "organizations", "emails", "amounts", "dates")}, "requested_action": "pay", "party": "",
            "confidence": 0.5}


@pytest.mark.parametrize("value, valid", [
    ({"n": True}, False), ({"n": 1.0}, True), ({"n": 1.5}, False), ({"label": 1}, False), ({"label": True}, False),
    ({"b": [True]}, False), ({"b": [0, 3]}, True), ({"b": [0, 3, 1]}, False), ({"label": "invoice"}, True)])
def test_booleans_integers_and_floats_are_told_apart_as_json_schema_does(value: dict[str, Any], valid: bool) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "label": {"enum": ["invoice"]},
                                               "b": {"type": "array", "maxItems": 2, "items": {"type": "number"}}}}
    for _ in range(schemas.FAST_AFTER_USES + 1):  # the compiled check is in use from the second one on
        assert (check(schema, value) is None) is valid


def test_only_plain_schemas_get_the_compiled_check() -> None:
    assert schemas._is_plain(DIFFERENTIAL_SCHEMAS[0]) and schemas._is_plain(DIFFERENTIAL_SCHEMAS[1])
    assert not schemas._is_plain(DIFFERENTIAL_SCHEMAS[4])  # an enum of numbers and booleans
    assert not schemas._is_plain({"type": "object", "patternProperties": {"^x": {"type": "string"}}})
    assert not schemas._is_plain({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"})
    assert not schemas._is_plain({"prefixItems": [{"type": "string"}]})
