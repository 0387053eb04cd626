"""agentd estimate: never below the billed cost of the real run, close to it for text, no network."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest

from tests.evals.corpus import billed_usage, drop_copies, mixed_corpus, text
from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, audit_events, cli, sidecars, wait_until

MODEL = "gpt-4o-mini"  # an OpenAI model: the estimate counts with its own tokenizer (o200k_base)


def _estimate(agent: AgentdProcess, *paths: Path, **env: str) -> dict:
    done = cli(None, "estimate", *map(str, paths), "--json", env={**agent.env, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_estimate_is_never_below_the_billed_cost_and_within_3x_for_text(
        tmp_path: Path, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    # Given a server that bills tokens as OpenAI counts them, and a mixed corpus
    server = llm_server(usage=billed_usage)
    kinds = mixed_corpus(tmp_path / "corpus")
    agent = daemon(**server.env(model=MODEL), LLM_MAX_OUTPUT_TOKENS="300")
    # When the estimate runs first (sending nothing), then the real runs
    report = _estimate(agent, tmp_path / "corpus")
    assert server.count() == 0
    drop_copies(tmp_path / "corpus", home / "incoming")
    wait_until(lambda: len(sidecars(home)) == len(kinds), timeout=30, message="every file finished")
    # Then every file's bound holds, and text files are within 3x of what they cost
    assert report["tokenizer"] == "o200k_base"
    billed = {m["original_name"]: Decimal(str(m["cost_usd"])) for m in sidecars(home)}
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert set(by_name) == set(kinds)
    assert server.count() == sum(1 for m in sidecars(home) if m["llm_calls"])  # the runs made the only calls
    for name, kind in kinds.items():
        bound, first_try = (Decimal(str(by_name[name][k])) for k in ("max_cost_usd", "first_try_usd"))
        assert bound >= first_try >= billed[name], (name, bound, first_try, billed[name])
        if kind == "text":  # answered at once: the first-try figure is close to the bill
            assert billed[name] > 0 and first_try <= 3 * billed[name], (name, first_try / billed[name])
    assert by_name["photo.png"]["calls"] == 0 and billed["photo.png"] == 0
    assert abs(report["total"]["max_cost_usd"] - sum(f["max_cost_usd"] for f in report["files"])) < 1e-12


def test_estimate_names_the_files_max_cost_per_run_refuses_and_the_budget_left(
        tmp_path: Path, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    # Given a run cap that a long file's reservation crosses and a short one's does not
    server = llm_server(usage=billed_usage)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "short.txt").write_text(text(2))
    (tmp_path / "docs" / "long.txt").write_text(text(200))
    agent = daemon(**server.env(model=MODEL), LLM_MAX_OUTPUT_TOKENS="300", MAX_COST_PER_RUN="0.02",
                   DAILY_BUDGET_USD="5")
    report = _estimate(agent, tmp_path / "docs")
    refused = {Path(f["path"]).name for f in report["files"] if f["refused_by_max_cost_per_run"]}
    # When the daemon runs them for real
    drop_copies(tmp_path / "docs", home / "incoming")
    wait_until(lambda: len(sidecars(home)) == 2, timeout=30, message="both finished")
    failed = {m["original_name"] for m in sidecars(home) if m.get("reason") == "run_budget_exceeded"}
    # Then the estimate named exactly the file the cap refused
    assert refused == failed == {"long.txt"}
    assert "MAX_COST_PER_RUN" in next(f["why"] for f in report["files"] if f["refused_by_max_cost_per_run"])
    # And it reads today's spend as the daemon keeps it: the total fits 5 USD, not a budget nearly spent
    spent = sum(m["cost_usd"] for m in sidecars(home))
    again = _estimate(agent, tmp_path / "docs")
    assert abs(again["budget"]["spent_today_usd"] - spent) < 1e-9
    assert again["budget"]["fits"] is True
    tight = _estimate(agent, tmp_path / "docs", DAILY_BUDGET_USD=f"{spent + 0.0001:.6f}")
    assert tight["budget"]["fits"] is False and tight["budget"]["remaining_usd"] < tight["total"]["max_cost_usd"]
    human = cli(None, "estimate", str(tmp_path / "docs"), env=agent.env).stdout
    assert "REFUSED" in human and "o200k_base" in human and "fits" in human


def test_estimate_of_a_model_without_an_offline_tokenizer_uses_the_byte_bound(
        tmp_path: Path, home: Path, llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server(usage=billed_usage)
    (tmp_path / "a.txt").write_text(text(5))
    env = {**server.env(model="fake-model"), "AGENTD_HOME": str(home)}
    done = cli(None, "estimate", str(tmp_path / "a.txt"), "--json", env={**_base(home), **env})
    found = json.loads(done.stdout)
    assert found["tokenizer"] == "bytes"
    assert found["files"][0]["tokens"]["input"] > len(text(5).encode())
    assert server.count() == 0


def _base(home: Path) -> dict[str, str]:
    from tests.helpers import base_env
    return base_env(home)


def test_a_re_asked_run_costs_more_than_the_first_try_figure_but_never_the_max_cost(
        tmp_path: Path, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    # Given a model whose first two answers fail the schema: the gateway re-asks twice
    server = llm_server(usage=billed_usage, script=["schema_invalid", "schema_invalid"])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "invoice.txt").write_text(text(12))
    agent = daemon(**server.env(model=MODEL), LLM_MAX_OUTPUT_TOKENS="300")
    [found] = _estimate(agent, tmp_path / "docs")["files"]
    drop_copies(tmp_path / "docs", home / "incoming")
    [meta] = wait_until(lambda: sidecars(home), timeout=20, message="the run finished")
    # Then three calls were billed, over the first-try figure and within the bound
    assert meta["outcome"] == "archived" and meta["llm_calls"] == 3 and server.count() == 3
    billed = Decimal(str(meta["cost_usd"]))
    assert Decimal(str(found["first_try_usd"])) < billed <= Decimal(str(found["max_cost_usd"]))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_bound_holds_for_a_run_with_a_re_ask_a_billed_timeout_and_a_500(
        provider: str, tmp_path: Path, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    # Given a model whose first answer is not JSON (a re-ask), whose re-ask first times out (billed at
    # its reservation: the request may have been billed), then gets a 500 (not billed), then answers
    server = llm_server(usage=billed_usage, script=["not_json", "hang", "500"], hang_s=3)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "invoice.txt").write_text(text(12))
    model = MODEL if provider == "openai" else "claude-3-5-haiku-latest"
    agent = daemon(**server.env(provider=provider, model=model), LLM_MAX_OUTPUT_TOKENS="300", LLM_TIMEOUT_S="1")
    [found] = _estimate(agent, tmp_path / "docs")["files"]
    assert server.count() == 0
    drop_copies(tmp_path / "docs", home / "incoming")
    [meta] = wait_until(lambda: sidecars(home), timeout=40, message="the run finished")
    # Then the run made four calls, paid for three of them, and the estimate's bound is not below that
    assert meta["outcome"] == "archived" and meta["llm_calls"] == 4 and server.count() == 4, meta
    statuses = [e["status"] for e in audit_events(home, "llm_call")]
    assert statuses == ["ok", "timeout", "500", "ok"], statuses
    billed = Decimal(str(meta["cost_usd"]))
    assert Decimal(str(found["first_try_usd"])) < billed <= Decimal(str(found["max_cost_usd"])), (found, billed)
