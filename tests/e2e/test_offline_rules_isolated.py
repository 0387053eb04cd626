"""The offline provider's built-in rules run in a parser process: regular expressions over an
untrusted document stay off the event loop and under LLM_TIMEOUT_S, like the parsers.

The pool tests ask real parser processes (`builtins:eval` stands in for a rule whose cost the
test chooses); the daemon test drops a document that keeps the triage rules busy for about a
second beside ordinary files and watches the sidecars and /health.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from agentd.errors import DataError, InternalError
from agentd.llm.base import LLMRequest
from agentd.llm.offline import OfflineProvider, isolated_ref
from agentd.run.isolated import UNRESOLVABLE, ExtractPool
from agentd.workflows import triage_rules
from agentd.workflows.triage import TRIAGE, TRIAGE_SCHEMA
from tests.heavy_inputs import company_names_text
from tests.helpers import AgentdProcess, HealthPoller, sidecar_for, wait_until

EVAL = "builtins:eval"


@contextlib.asynccontextmanager
async def _pool(memory_mb: int = 512) -> AsyncIterator[ExtractPool]:
    pool = ExtractPool(size=1, memory_mb=memory_mb)
    try:
        yield pool
    finally:
        await pool.close()
RULE = TRIAGE.offline_rules["triage"]  # the workflow's declared rule: imports the rules where it runs


async def test_a_rule_answers_from_a_parser_process_with_its_json() -> None:
    async with _pool() as pool:
        answer, content = await pool.rule(EVAL, "{'pid': __import__('os').getpid(), 'text': 'ü'}", 5)
        assert answer["pid"] != os.getpid() and answer["pid"] in pool.pids()["idle"]
        assert content == '{"pid": %d, "text": "ü"}' % answer["pid"]


async def test_a_slow_rule_is_stopped_at_its_deadline_and_the_worker_replaced() -> None:
    async with _pool() as pool:
        with pytest.raises(DataError) as caught:
            await pool.rule(EVAL, "sum(range(10 ** 10))", 0.3)
        assert caught.value.reason == "rule_timeout" and "0.3s" in caught.value.detail
        assert (await pool.rule(EVAL, "[1, 2]", 5))[0] == [1, 2]
        assert pool.started == 2


async def test_a_rule_over_the_memory_limit_a_failing_rule_and_an_unknown_one() -> None:
    async with _pool(memory_mb=256) as pool:
        with pytest.raises(DataError) as memory:
            await pool.rule(EVAL, "'x' * (1 << 30)", 10)
        assert memory.value.reason == "rule_memory_limit"
        with pytest.raises(InternalError) as failing:
            await pool.rule(EVAL, "1 / 0", 5)
        assert failing.value.reason == "offline_rule_failed" and "ZeroDivisionError" in failing.value.detail
        assert await pool.rule("agentd.no_such_module:rule", "x", 5) is UNRESOLVABLE
        assert (await pool.rule(EVAL, "'still here'", 5))[0] == "still here"


def _request(document: str, task: str = "triage") -> LLMRequest:
    return LLMRequest(task=task, system="s", document=document, schema=TRIAGE_SCHEMA)


async def test_the_built_in_triage_runs_in_a_parser_process_and_answers_as_in_place() -> None:
    pool = ExtractPool(size=1, memory_mb=512)
    asked: list[str] = []

    async def isolate(ref: str, text: str, timeout_s: float) -> Any:
        asked.append(ref)
        return await pool.rule(ref, text, timeout_s)

    provider = OfflineProvider({"triage": RULE}, isolate=isolate, unresolvable=UNRESOLVABLE)
    document = "INVOICE\nAcme GmbH\nHauptstr. 1, 10115 Berlin\nTotal 1.234,50 EUR\nDatum: 03.02.2024\n"
    try:
        response = await provider.complete(_request(document), "offline-rules", 5)
        assert asked == ["agentd.workflows.triage_offline:offline_triage"] and pool.started == 1
        assert response.parsed == triage_rules.triage(document)
        assert response.parsed["party"] == "Acme GmbH" and response.parsed["entities"]["amounts"][0] == "1234.50 EUR"
    finally:
        await pool.close()


async def test_a_workflows_own_rule_runs_in_place_and_an_unimportable_one_falls_back_once() -> None:
    calls: list[str] = []

    async def isolate(ref: str, text: str, timeout_s: float) -> Any:
        calls.append(ref)
        return UNRESOLVABLE

    own = {"label": lambda document: {"label": document.upper()}}
    assert isolated_ref(own["label"]) is None and isolated_ref(RULE) is not None
    provider = OfflineProvider({**own, "triage": RULE}, isolate=isolate, unresolvable=UNRESOLVABLE)
    assert (await provider.complete(_request("abc", task="label"), "m", 5)).parsed == {"label": "ABC"}
    assert calls == []
    for _ in range(2):  # the parser process cannot import it: answered in place, asked of it once
        assert (await provider.complete(_request("Dear Bob"), "m", 5)).parsed == triage_rules.triage("Dear Bob")
    assert calls == ["agentd.workflows.triage_offline:offline_triage"]


def test_a_document_that_keeps_the_rules_busy_fails_at_llm_timeout_s_while_health_answers(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given the offline daemon with a model deadline of 0.3 s
    agent = daemon(LLM_TIMEOUT_S="0.3")
    incoming = home / "incoming"
    with HealthPoller(agent.url + "/health", interval_s=0.01) as poller:
        # When a text of 3,000 company names (about a second of the party rules) arrives with ordinary files
        (incoming / "names.txt").write_bytes(company_names_text())
        for i in range(6):
            (incoming / f"ordinary-{i}.txt").write_text(f"Invoice {i} from Acme GmbH: please pay 10.00 EUR.\n")
        metas = {name: wait_until(lambda name=name: sidecar_for(home, name), timeout=60, message=name)
                 for name in ["names.txt", *(f"ordinary-{i}.txt" for i in range(6))]}
    # Then it fails as data, rule_timeout, and the ordinary files are archived
    names = metas.pop("names.txt")
    assert (names["outcome"], names["error_class"], names["reason"]) == ("failed", "data", "rule_timeout"), names
    assert {m["outcome"] for m in metas.values()} == {"archived"}
    # And the event loop was never held up by the rules: /health answered fast throughout
    assert poller.failures == [] and poller.worst_s < 0.5, poller.worst_s
