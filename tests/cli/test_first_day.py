"""Issue 24 point 7, first-day frictions as a user meets them: one home lookup from any folder,
estimate with no API key, replay of a file without the run's workflow, `| head` ending quietly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.helpers import AgentdProcess, base_env, sidecars, wait_until

STATE_COMMANDS = [("status",), ("costs",), ("audit", "verify"), ("trace", "abcdef12"), ("review", "list"),
                  ("replay", "abcdef12"), ("kill-switch", "status"), ("kill-switch", "on"), ("requeue", "--failed")]


def _env(**overrides: Any) -> dict[str, str]:
    """An environment with no AGENTD_HOME: the lookup has to find (or miss) the home itself."""
    env = base_env(Path("/nonexistent"), **overrides)
    env.pop("AGENTD_HOME")
    return env


def _agentd(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentd", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", STATE_COMMANDS, ids=lambda a: " ".join(a))
def test_a_state_command_where_no_home_is_says_so_in_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = _agentd(tmp_path, *args, env=_env())
    assert done.returncode == 78, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "no agentd home here: set AGENTD_HOME or run from the folder holding var/" in done.stderr
    assert str(tmp_path / "var") in done.stderr and done.stdout == ""
    assert not (tmp_path / "var").exists()  # nothing silently created


def test_a_var_folder_agentd_never_ran_in_is_not_taken_for_its_home(tmp_path: Path) -> None:
    # Given a ./var of something else (as / has: the system's /var)
    (tmp_path / "var" / "log").mkdir(parents=True)
    # When a state command runs there with no AGENTD_HOME
    done = _agentd(tmp_path, "status", env=_env())
    # Then it says no home is here instead of reporting on that folder
    assert done.returncode == 78 and "no agentd home here" in done.stderr, (done.stdout, done.stderr)
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["log"]


def test_the_home_is_found_the_same_way_from_any_folder(tmp_path: Path) -> None:
    (tmp_path / "var" / "state").mkdir(parents=True)  # a home agentd has run in
    (tmp_path / "agentd.env").write_text("AGENTD_HOME=./var\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    env = _env()
    # from the folder holding var/: the default
    here = _agentd(tmp_path, "status", "--json", env=env)
    assert here.returncode == 0, here.stderr
    assert json.loads(here.stdout)["home"] == str(tmp_path / "var")
    # from elsewhere, with the env file: a relative AGENTD_HOME there is relative to the file
    for cwd in (deep, Path("/")):
        there = _agentd(cwd, "--env-file", str(tmp_path / "agentd.env"), "status", "--json", env=env)
        assert there.returncode == 0, there.stderr
        assert json.loads(there.stdout)["home"] == str(tmp_path / "var")
    # AGENTD_HOME in the environment wins, from any folder
    env_home = _agentd(deep, "status", "--json", env={**env, "AGENTD_HOME": str(tmp_path / "var")})
    assert json.loads(env_home.stdout)["home"] == str(tmp_path / "var")
    assert not (deep / "var").exists()


def test_estimate_needs_no_api_key(tmp_path: Path) -> None:
    (tmp_path / "invoice.txt").write_text("INVOICE 2026-001\nACME Ltd\nTotal due: 120.00 EUR\n")
    env = _env(LLM_PROVIDER="openai")  # and no LLM_API_KEY: estimate sends nothing
    done = _agentd(tmp_path, "estimate", "invoice.txt", "--json", env=env)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["provider"] == "openai"
    # a command that would send still refuses without the key
    assert _agentd(tmp_path, "check-config", env=env).returncode == 78


OTHER_WORKFLOW = '''
from agentd.workflows import Workflow
from agentd.workflows import triage as base

OTHER = Workflow("other", steps=(base.extract_text, base.route))
'''


def _quiet_when_the_reader_goes(cwd: Path, *args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-m", "agentd", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before anything is written
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_replay_of_a_file_without_the_workflow_and_trace_into_a_closed_pipe(
        tmp_path: Path, home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    (home / "incoming" / "invoice.txt").write_text("INVOICE 2026-001\nACME Ltd\nTotal due: 120.00 EUR\n")
    meta = wait_until(lambda: sidecars(home), timeout=20, message="the run finished")[0]
    agent.stop()
    cid, workflow = meta["correlation_id"], meta["workflow"]
    other = tmp_path / "other.py"
    other.write_text(OTHER_WORKFLOW)
    # replay with a file that does not define the run's workflow: a usage error naming both
    done = _agentd(home.parent, "replay", cid, "--workflow-file", str(other), env=agent.env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert repr(workflow) in done.stderr and str(other) in done.stderr and "other" in done.stderr
    # `trace --json | head -1` and `status --json | head -c 10` end quietly
    for args in (("trace", cid, "--json"), ("status", "--json")):
        code, err = _quiet_when_the_reader_goes(home.parent, *args, env=agent.env)
        assert err == "" and code in (0, 141), (args, code, err)
        piped = subprocess.run(f"{sys.executable} -m agentd {' '.join(args)} | head -c 10", shell=True,
                               cwd=home.parent, env=agent.env, capture_output=True, text=True, timeout=60)
        assert piped.returncode == 0 and piped.stderr == "" and len(piped.stdout) == 10
