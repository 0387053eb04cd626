"""agentd eval: the right accuracy on a set with known mistakes, the gates, JUnit, baselines,
and live runs against the loopback model server recorded for replay with no network."""
from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import pytest

from agentd.workflows.triage_rules import triage
from tests.fakellm import FakeLLM
from tests.fakewire import Seen
from tests.helpers import base_env, cli

GOLDEN = Path(__file__).parent / "golden"  # 4 cases, 2 with deliberate mistakes (see its README)
BREAK_TYPES = '''
from agentd.workflows import Workflow
from agentd.workflows import triage as base


async def route(ctx):
    result = await base.route(ctx)
    return {**result, "document_type": "other"}


TRIAGE = Workflow("triage", steps=(base.extract_text, base.classify, route))
'''


def _eval(home: Path, *args: str, **env: str) -> tuple[int, Any, str]:
    done = cli(home, "eval", *args, **env)
    try:
        body = json.loads(done.stdout)
    except ValueError:
        body = done.stdout
    return done.returncode, body, done.stderr


def _field(report: dict, name: str) -> dict:
    return next(r for r in report["fields"] if r["field"] == name)


def test_eval_scores_a_set_with_known_mistakes(home: Path) -> None:
    code, report, _ = _eval(home, str(GOLDEN), "--json")
    assert code == 0
    assert (report["cases"], report["passed"], report["accuracy"]) == (4, 2, 0.5)
    assert _field(report, "document_type")["accuracy"] == 2 / 3
    assert _field(report, "requested_action")["accuracy"] == 0.5
    assert _field(report, "entities.amounts.0")["accuracy"] == 1.0  # numeric: "$1,250.00" == 1250
    assert report["outcomes"] == {"archived": 4, "review": 0, "failed": 0}
    assert report["cost_usd"] == 0 and report["latency_s"]["p95"] >= report["latency_s"]["p50"] > 0
    failing = {c["case"]: [f["field"] for f in c["failures"]] for c in report["results"] if not c["passed"]}
    assert failing == {"complaint.txt": ["requested_action"], "note.txt": ["document_type"]}
    code, table, _ = _eval(home, str(GOLDEN))
    assert "accuracy 0.500" in table and "complaint.txt" in table and "expected refund" in table


def test_eval_fails_the_gate_under_min_accuracy_and_writes_valid_junit(tmp_path: Path, home: Path) -> None:
    junit = tmp_path / "out" / "eval.xml"
    code, table, _ = _eval(home, str(GOLDEN), "--min-accuracy", "0.8", "--junit", str(junit))
    assert code == 1 and "GATE MISSED: accuracy 0.500 is under --min-accuracy 0.8" in table
    assert _eval(home, str(GOLDEN), "--min-accuracy", "0.5")[0] == 0
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "5" and suite.get("failures") == "3"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"invoice-acme.txt", "complaint.txt", "contract.txt", "note.txt", "gates"}
    assert cases["invoice-acme.txt"].find("failure") is None
    failure = cases["note.txt"].find("failure")
    assert failure is not None and "document_type" in (failure.text or "")
    gate = cases["gates"].find("failure")
    assert gate is not None and "min-accuracy" in (gate.get("message") or "")
    assert all(float(c.get("time", "x")) >= 0 for c in cases.values())


def test_baseline_names_the_fields_a_workflow_change_regressed(tmp_path: Path, home: Path) -> None:
    # Given a baseline report of today's workflow
    code, baseline, _ = _eval(home, str(GOLDEN), "--json")
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))
    # When a change makes every document "other"
    changed = tmp_path / "triage_broken.py"
    changed.write_text(BREAK_TYPES)
    code, report, _ = _eval(home, str(GOLDEN), "--json", "--baseline", str(tmp_path / "baseline.json"),
                            AGENTD_WORKFLOWS=str(changed))
    # Then the regression names document_type and the cases it broke, and the gate fails
    assert code == 1
    assert [r["field"] for r in report["regressions"]] == ["document_type"]
    regression = report["regressions"][0]
    assert (regression["before"], regression["after"]) == (2 / 3, 0.0)
    assert sorted(regression["cases"]) == ["complaint.txt", "invoice-acme.txt"]
    code, table, _ = _eval(home, str(GOLDEN), "--baseline", str(tmp_path / "baseline.json"),
                           AGENTD_WORKFLOWS=str(changed))
    assert "REGRESSION document_type: accuracy 0.667 -> 0.000" in table
    # and the unchanged workflow has no regression against its own baseline
    assert _eval(home, str(GOLDEN), "--baseline", str(tmp_path / "baseline.json"))[0] == 0


def _smart(seen: Seen) -> Any:
    """A model that answers like the offline rules."""
    return triage(seen.document or "")


def test_live_eval_against_the_model_server_then_replay_with_no_network(
        tmp_path: Path, home: Path, llm_server: Callable[..., FakeLLM]) -> None:
    cases = tmp_path / "cases"
    shutil.copytree(GOLDEN, cases)
    server = llm_server(responder=_smart, usage=(500, 80))
    env = server.env()
    # live, 4 at once, answers recorded beside the cases
    code, live, _ = _eval(home, str(cases), "--live", "--record", "--json", "--jobs", "4", **env)
    assert code == 0 and server.count() == 4
    assert live["accuracy"] == 0.5 and live["mode"] == "live"
    assert abs(live["cost_usd"] - 4 * (500 * 1.0 + 80 * 2.0) / 1e6) < 1e-9
    assert len(list(cases.glob("*.answers.jsonl"))) == 4
    # the cost gate: exit 1 over the limit
    code, table, _ = _eval(home, str(cases), "--live", "--max-cost-usd", "0.001", **env)
    assert code == 1 and "over --max-cost-usd" in table and server.count() == 8
    # replayed from the recordings with the server gone: same scores, no request
    server.stop_thread()
    code, replayed, _ = _eval(home, str(cases), "--replay", "--json", **env)
    assert code == 0 and replayed["missing_answers"] == 0
    assert replayed["accuracy"] == live["accuracy"] and replayed["fields"] == live["fields"]
    assert server.count() == 8


def test_latency_gate_and_missing_recordings(tmp_path: Path, home: Path,
                                             llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server(responder=_smart, delay_s=0.3)
    code, table, _ = _eval(home, str(GOLDEN), "--live", "--max-p95-s", "0.2", **server.env())
    assert code == 1 and "over --max-p95-s 0.2" in table
    # a real provider configured and no recordings: nothing is sent, every case says why it failed
    sent = server.count()
    code, report, _ = _eval(home, str(GOLDEN), "--replay", "--json", **server.env())
    assert report["outcomes"]["failed"] == 4 and report["missing_answers"] == 4 and report["accuracy"] == 0
    assert server.count() == sent


def test_a_progress_bar_only_on_a_terminal(home: Path) -> None:
    quiet = cli(home, "eval", str(GOLDEN))
    assert quiet.stderr == ""
    master, slave = pty.openpty()
    try:
        env = base_env(home)
        done = subprocess.run([sys.executable, "-m", "agentd", "eval", str(GOLDEN)], env=env,
                              cwd=home.parent, stdout=subprocess.PIPE, stderr=slave, timeout=60, check=False)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert done.returncode == 0 and b"4/4" in shown and b"eval [" in shown
    assert b"4/4" not in done.stdout


def test_bad_case_files_are_usage_errors(tmp_path: Path, home: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "a.txt.expected.json").write_text('{"party": {"value": "x", "match": "fuzzy"}}')
    code, _, err = _eval(home, str(tmp_path))
    assert code == 2 and "fuzzy" in err
    assert _eval(home, str(tmp_path / "nope"))[0] == 2
    assert _eval(home, str(GOLDEN), "--workflow", "nope")[0] == 2


@pytest.mark.parametrize("command", ["estimate", "replay", "eval"])
def test_each_command_has_help_and_json(home: Path, command: str) -> None:
    done = cli(home, command, "--help")
    assert done.returncode == 0 and "--json" in done.stdout
    assert cli(home, command).returncode == 2  # its argument is missing


def test_a_model_with_no_known_price_is_a_configuration_error(tmp_path: Path, home: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    done = cli(home, "estimate", str(tmp_path / "a.txt"), LLM_PROVIDER="openai", LLM_MODEL="no-such-model",
               LLM_API_KEY="sk-test-0000", LLM_BASE_URL="http://127.0.0.1:9/v1")
    assert done.returncode == 78 and "LLM_MODEL" in done.stderr
    assert _eval(home, str(GOLDEN), "--record")[0] == 2
