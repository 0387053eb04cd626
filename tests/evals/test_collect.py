"""agentd eval collect --from review: every approved review decision becomes an eval case."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from agentd.durable.group import write_json
from tests.evals.corpus import text
from tests.fakellm import FakeLLM
from tests.fakewire import Seen, default_answer
from tests.helpers import AgentdProcess, cli, sidecars, wait_until

FULL_NAME = "ACME Widgets Ltd."


def _unsure(seen: Seen) -> Any:
    """A model that names the party by its short name and is not sure of it."""
    return {**default_answer(seen), "document_type": "invoice", "party": "ACME", "confidence": 0.3}


def _right(seen: Seen) -> Any:
    return {**default_answer(seen), "document_type": "invoice", "party": FULL_NAME, "confidence": 0.9}


def _approve(agent: AgentdProcess, home: Path, name: str) -> dict:
    meta = next(m for m in sidecars(home, "review") if m["original_name"] == name)
    done = cli(None, "review", "approve", meta["correlation_id"], env=agent.env)
    assert done.returncode == 0, done.stderr
    return meta


def _as_console_edit(home: Path, name: str, edits: dict[str, Any]) -> None:
    """What the review console writes when a reviewer edits fields and approves."""
    path = next(p for p in (home / "archive").glob("*.meta.json") if json.loads(p.read_text())["original_name"] == name)
    meta = json.loads(path.read_text())
    result = {**meta["result"], **edits}
    write_json(path, {**meta, "result": result,
                      "review": {"reviewer": "alice", "decision": "approve", "at": meta["review"]["at"],
                                 "edits": edits}})


def test_collect_turns_approved_and_edited_reviews_into_cases(
        tmp_path: Path, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    # Given two runs sent to review for low confidence; one approved as is (CLI), one edited (console)
    server = llm_server(responder=_unsure)
    agent = daemon(**server.env())
    for name in ("plain.txt", "edited.txt", "rejected.txt"):
        (home / "incoming" / name).write_text(text(3) + name)
    wait_until(lambda: len(sidecars(home, "review")) == 3, timeout=20, message="three in review/")
    _approve(agent, home, "plain.txt")
    _approve(agent, home, "edited.txt")
    _as_console_edit(home, "edited.txt", {"party": FULL_NAME})
    rejected = next(m for m in sidecars(home, "review") if m["original_name"] == "rejected.txt")
    assert cli(None, "review", "reject", rejected["correlation_id"], env=agent.env).returncode == 0
    # When they are collected
    cases = tmp_path / "cases"
    done = cli(None, "eval", "collect", str(cases), "--from", "review", "--json", env=agent.env)
    assert done.returncode == 0, done.stderr
    made = {c["case"]: c for c in json.loads(done.stdout)["cases"]}
    # Then each approved one is a case with the reviewer's result as expected, and its recorded answers
    assert set(made) == {"plain.txt", "edited.txt"}
    assert made["edited.txt"]["reviewer"] == "alice" and made["edited.txt"]["edits"] == {"party": FULL_NAME}
    assert made["plain.txt"]["reviewer"]  # the CLI's `by`
    expected = json.loads((cases / "edited.txt.expected.json").read_text())
    assert expected["party"] == FULL_NAME and expected["document_type"]["value"] == "invoice"
    assert "confidence" not in expected and "summary" not in expected
    assert (cases / "edited.txt").read_text() == text(3) + "edited.txt"
    assert (cases / "plain.txt.answers.jsonl").is_file()
    again = cli(None, "eval", "collect", str(cases), "--from", "review", env=agent.env)
    assert "0 new case(s)" in again.stdout
    # With the recorded answers (no network) the edit is the truth the old answer misses
    sent = server.count()
    code = cli(None, "eval", str(cases), "--replay", "--json", env=agent.env)
    replayed = {c["case"]: c for c in json.loads(code.stdout)["results"]}
    assert replayed["plain.txt"]["passed"] is True
    assert [f["field"] for f in replayed["edited.txt"]["failures"]] == ["party"]
    assert server.count() == sent
    # and a model that now gets it right passes the edited case
    server.responder = _right
    live = json.loads(cli(None, "eval", str(cases), "--live", "--json", env=agent.env).stdout)
    assert {c["case"]: c["passed"] for c in live["results"]}["edited.txt"] is True


def test_collect_needs_from_review(tmp_path: Path, home: Path) -> None:
    done = cli(home, "eval", "collect", str(tmp_path / "cases"))
    assert done.returncode == 2 and "--from review" in done.stderr
