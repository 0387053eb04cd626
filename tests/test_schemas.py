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
