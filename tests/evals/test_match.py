"""Field matching of eval cases: each way a field may be compared, and bad specs refused."""
from __future__ import annotations

import pytest

from agentd.evals.match import CaseError, parse

RESULT = {"party": "ACME  Widgets Ltd.", "entities": {"amounts": ["$1,250.00", "1.234,56 EUR"],
                                                      "emails": ["b@x.example", "a@x.example"]},
          "summary": "An invoice for November.", "confidence": 0.9, "tags": []}


@pytest.mark.parametrize("spec, ok", [
    ({"party": "ACME  Widgets Ltd."}, True),
    ({"party": "acme widgets ltd."}, False),
    ({"party": {"value": "acme widgets ltd.", "match": "casefold"}}, True),
    ({"entities.amounts.0": {"value": 1250, "match": "numeric"}}, True),
    ({"entities.amounts.1": {"value": "1234.50", "match": "numeric", "tolerance": 0.1}}, True),
    ({"entities.amounts.1": {"value": 1234, "match": "numeric", "tolerance": 0.5}}, False),
    ({"entities.emails": {"value": ["a@x.example", "B@x.example"], "match": "set"}}, True),
    ({"entities.emails": {"value": ["a@x.example"], "match": "set"}}, False),
    ({"entities.emails": {"value": "a@x.example", "match": "contains"}}, True),
    ({"summary": {"value": "INVOICE", "match": "contains"}}, True),
    ({"confidence": 0.9, "tags": []}, True),
    ({"entities.amounts.5": "x"}, False),
    ({"party.name": "x"}, False),
])
def test_a_field_matches_as_its_spec_says(spec: dict, ok: bool) -> None:
    assert all(e.check(RESULT)[0] for e in parse(spec, "case")) is ok


def test_a_missing_field_is_reported_absent() -> None:
    [expected] = parse({"entities.people.0": "Jane"}, "case")
    assert expected.check(RESULT) == (False, "<absent>")
    assert expected.check(None) == (False, "<absent>")


def test_an_expected_object_that_is_not_a_spec_is_matched_as_a_value() -> None:
    [expected] = parse({"entities": {"value": 1, "other": 2}}, "case")
    assert expected.match == "exact" and expected.value == {"value": 1, "other": 2}


@pytest.mark.parametrize("raw", [[], {}, {"a": {"value": 1, "match": "fuzzy"}},
                                 {"a": {"value": 1, "match": "numeric", "tolerance": -1}}])
def test_bad_specs_are_refused(raw: object) -> None:
    with pytest.raises(CaseError):
        parse(raw, "case")
