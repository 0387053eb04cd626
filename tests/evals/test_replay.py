"""agentd replay: a finished run again from its recorded answers, with nothing sent or moved."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from tests.evals.corpus import text
from tests.fakellm import FakeLLM
from tests.fakewire import Seen, default_answer
from tests.helpers import AgentdProcess, audit_events, cli, sidecars, wait_until

CHANGED_WORKFLOW = '''
from agentd.workflows import Workflow
from agentd.workflows import triage as base

SYSTEM = base.SYSTEM + " NEW PROMPT: name the party in full."


async def classify(ctx):
    extracted = ctx.outputs["extract_text"]
    return await ctx.ask(task="triage", system=SYSTEM, document=extracted["text"], schema=base.TRIAGE_SCHEMA)


TRIAGE = Workflow("triage", steps=(base.extract_text, classify, base.route))
'''


def _answers(seen: Seen) -> Any:
    """ACME for the old prompt, its full name for the new one."""
    party = "ACME Widgets Ltd." if "NEW PROMPT" in seen.prompt else "ACME"
    return {**default_answer(seen), "document_type": "invoice", "party": party}


def _tree(home: Path) -> dict[str, int]:
    """Every file under the home but the audit log, with its size."""
    found = {}
    for root, _, files in os.walk(home):
        for name in files:
            path = Path(root, name)
            if path.name != "audit.jsonl" and "agentd.lock" not in name:
                found[str(path.relative_to(home))] = path.stat().st_size
    return found


def _finished_run(home: Path, daemon: Callable[..., AgentdProcess], server: FakeLLM) -> tuple[AgentdProcess, str]:
    agent = daemon(**server.env())
    (home / "incoming" / "invoice.txt").write_text(text(4))
    meta = wait_until(lambda: sidecars(home), timeout=20, message="the run finished")[0]
    assert meta["outcome"] == "archived" and meta["result"]["party"] == "ACME"
    agent.stop()
    return agent, meta["correlation_id"]


def test_replay_with_the_server_stopped_shows_no_change_and_sends_nothing(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a finished run whose model answer is journaled, and the model server gone
    server = llm_server(responder=_answers)
    agent, cid = _finished_run(home, daemon, server)
    assert (home / "logs" / "journals" / f"{cid}.journal.jsonl").is_file()
    sent = server.count()
    server.stop_thread()
    before, lines_before = _tree(home), len(audit_events(home))
    # When it is replayed
    done = cli(None, "replay", cid[:10], "--json", env=agent.env)
    # Then it succeeds with no change, nothing was moved or written but one replay audit line
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["changed"] is False and report["changes"] == [] and report["missing"] == []
    assert report["served"] == 1 and report["outcome"] == {"before": "archived", "after": "archived"}
    assert report["cost_usd"] == report["original_cost_usd"] > 0 and report["live_cost_usd"] == 0
    assert server.count() == sent
    assert _tree(home) == before
    new = audit_events(home)[lines_before:]
    assert [e["event"] for e in new] == ["replay"] and new[0]["correlation_id"] == cid
    human = cli(None, "replay", cid, env=agent.env).stdout
    assert "no change" in human and "nothing paid now" in human
    assert cli(None, "audit", "verify", env=agent.env).returncode == 0


def test_after_a_prompt_change_replay_reports_missing_answers_and_live_meters_them(
        tmp_path: Path, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server(responder=_answers, usage=(400, 60))
    agent, cid = _finished_run(home, daemon, server)
    port = server.port
    server.stop_thread()
    changed = tmp_path / "triage_v2.py"
    changed.write_text(CHANGED_WORKFLOW)
    # When the changed workflow is replayed with no server: the answer it needs was never recorded
    done = cli(None, "replay", cid, "--workflow-file", str(changed), "--json", env=agent.env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [m["key"] for m in report["missing"]] == ["classify:ask:1"]
    assert report["missing"][0]["asked_live"] is False and report["outcome"]["after"] == "failed"
    human = cli(None, "replay", cid, "--workflow-file", str(changed), env=agent.env).stdout
    assert "missing answer classify:ask:1" in human and "--live" in human
    # When it is replayed --live against the model: the missing answer is asked for and metered
    live = FakeLLM(responder=_answers, usage=(400, 60), port=port).start_thread()
    try:
        done = cli(None, "replay", cid, "--workflow-file", str(changed), "--live", "--json", env=agent.env)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert live.count() == 1 and live.count(contains="NEW PROMPT") == 1
    finally:
        live.stop_thread()
    expected_usd = (400 * 1.00 + 60 * 2.00) / 1_000_000  # FakeLLM.env() prices
    assert abs(report["live_cost_usd"] - expected_usd) < 1e-9
    assert report["missing"][0]["asked_live"] is True
    assert {"field": "party", "before": "ACME", "after": "ACME Widgets Ltd."} in report["changes"]
    line = audit_events(home, "replay")[-1]
    assert line["live"] is True and abs(line["live_cost_usd"] - expected_usd) < 1e-9
    assert "party" in line["changed_fields"]
    # the original run is untouched
    assert sidecars(home, "archive")[0]["result"]["party"] == "ACME"


def test_replay_of_an_unknown_run_is_a_clear_error(home: Path, daemon: Callable[..., AgentdProcess],
                                                   llm_server: Callable[..., FakeLLM]) -> None:
    agent, _ = _finished_run(home, daemon, llm_server(responder=_answers))
    done = cli(None, "replay", "ffffffffff", env=agent.env)
    assert done.returncode == 1 and "no finished run with id ffffffffff" in done.stderr
    assert cli(None, "replay", "abc", env=agent.env).returncode == 1
    assert audit_events(home, "replay") == []
