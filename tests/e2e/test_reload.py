"""SIGHUP against the real daemon: every live setting takes effect on the next file or request, and a
setting that needs a restart keeps its running value and is named (audit, log, check-config)."""
from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, audit_events, base_env, cli, free_port, sidecar_for, wait_until


class ReloadableAgentd(AgentdProcess):
    """`agentd --env-file F run` whose reloadable variables live only in F (the real environment wins
    over the file, so a variable set in both could never change on SIGHUP)."""

    def __init__(self, home: Path, env_file: Path, file_vars: dict[str, str], **env: Any):
        self.env_file = env_file
        self.port = int(file_vars.get("HEALTH_PORT") or env.get("HEALTH_PORT") or free_port())
        full = base_env(home, **env)
        for name in file_vars:
            full.pop(name, None)
        if "HEALTH_PORT" in file_vars:
            full.pop("HEALTH_PORT", None)
        else:
            full["HEALTH_PORT"] = str(self.port)
        self.write(file_vars)
        super().__init__(home, full, args=("--env-file", str(env_file)))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, file_vars: dict[str, str]) -> None:
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in file_vars.items()))

    def reload(self, file_vars: dict[str, str]) -> dict:
        """Write the new file, SIGHUP, and wait for the reload's audit line (returned)."""
        before = len(audit_events(self.home, "config_reloaded"))
        self.write(file_vars)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        return wait_until(lambda: audit_events(self.home, "config_reloaded")[before:], timeout=10,
                          message="config_reloaded")[0]


@pytest.fixture
def reloadable(home: Path, tmp_path: Path) -> Iterator[Callable[..., ReloadableAgentd]]:
    started: list[ReloadableAgentd] = []

    def start(file_vars: dict[str, str], **env: Any) -> ReloadableAgentd:
        proc = ReloadableAgentd(home, tmp_path / "agentd.env", file_vars, **env)
        started.append(proc)
        return proc.start()  # type: ignore[return-value]

    yield start
    for proc in started:
        proc.kill()


def _drop(home: Path, name: str) -> dict:
    (home / "incoming" / name).write_text(f"{name}: please pay the attached invoice of 120 EUR.")
    return wait_until(lambda: sidecar_for(home, name), timeout=20, message=f"{name} finished")


def test_a_lower_run_cap_after_sighup_refuses_the_next_call(
        home: Path, reloadable: Callable[..., ReloadableAgentd], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a daemon whose run cap allows a call
    server = llm_server()
    agent = reloadable({"MAX_COST_PER_RUN": "0.50"}, **server.env())
    assert _drop(home, "first.txt")["outcome"] == "archived" and server.count() == 1
    # When the cap is lowered below one call's reservation and the daemon gets SIGHUP
    line = agent.reload({"MAX_COST_PER_RUN": "0.0001"})
    assert "max_cost_per_run" in line["applied"] and line["restart_needed"] == []
    # Then the next file fails on its budget and the model server is not asked
    meta = _drop(home, "second.txt")
    assert (meta["outcome"], meta["error_class"], meta["reason"]) == ("failed", "budget", "run_budget_exceeded")
    assert server.count() == 1


def _kill_switch(agent: AgentdProcess, method: str, token: str) -> int:
    return agent.request(method, "/admin/kill-switch", headers={"Authorization": f"Bearer {token}"})[0]


def test_a_new_admin_token_and_api_key_take_effect_on_sighup(
        home: Path, reloadable: Callable[..., ReloadableAgentd], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    env = server.env()
    old = {"ADMIN_TOKEN": "admin-old-0123456789", "LLM_API_KEY": "sk-old-key-0123456789", "LLM_MODEL": "fake-model"}
    new = {"ADMIN_TOKEN": "admin-new-9876543210", "LLM_API_KEY": "sk-new-key-9876543210", "LLM_MODEL": "other-model"}
    del env["LLM_API_KEY"], env["LLM_MODEL"]
    agent = reloadable(old, **env)
    assert _kill_switch(agent, "DELETE", old["ADMIN_TOKEN"]) == 200
    _drop(home, "before.txt")
    assert server.requests[-1].headers["Authorization"] == f"Bearer {old['LLM_API_KEY']}"
    # When both credentials are rotated in the env file and the daemon gets SIGHUP
    line = agent.reload(new)
    assert {"admin_token", "llm_api_key"} <= set(line["applied"]) and line["restart_needed"] == ["llm_model"]
    # Then /admin takes the new token only, and the model server receives the new key
    assert _kill_switch(agent, "POST", old["ADMIN_TOKEN"]) == 401
    assert agent.health()["kill_switch"]["engaged"] is False
    assert _kill_switch(agent, "POST", new["ADMIN_TOKEN"]) == 200
    assert agent.health()["status"] == "degraded"
    assert _kill_switch(agent, "DELETE", new["ADMIN_TOKEN"]) == 200
    meta = _drop(home, "after.txt")
    assert meta["outcome"] == "archived" and server.count() == 2
    assert server.requests[-1].headers["Authorization"] == f"Bearer {new['LLM_API_KEY']}"
    assert server.requests[-1].model == "fake-model"  # a new model needs a restart: the running one is kept
    # and neither key is written anywhere a user reads
    for secret in (old["ADMIN_TOKEN"], old["LLM_API_KEY"], new["ADMIN_TOKEN"], new["LLM_API_KEY"]):
        assert secret not in agent.output() and secret not in (home / "logs" / "audit.jsonl").read_text()


def test_a_higher_review_threshold_after_sighup_routes_the_next_file_to_review(
        home: Path, reloadable: Callable[..., ReloadableAgentd], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()  # answers with confidence 0.9
    agent = reloadable({"AGENTD_REVIEW_CONFIDENCE": "0.5"}, **server.env())
    assert _drop(home, "sure.txt")["outcome"] == "archived"
    agent.reload({"AGENTD_REVIEW_CONFIDENCE": "0.95"})
    meta = _drop(home, "unsure.txt")
    assert (meta["outcome"], meta["reason"]) == ("review", "low_confidence")
    assert (home / "review" / "unsure.txt").exists()


def _serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def test_a_changed_health_port_is_named_as_needing_a_restart_and_the_old_port_keeps_serving(
        home: Path, reloadable: Callable[..., ReloadableAgentd]) -> None:
    old_port, new_port = free_port(), free_port()
    agent = reloadable({"HEALTH_PORT": str(old_port), "MAX_COST_PER_RUN": "0.50"})
    new_file = {"HEALTH_PORT": str(new_port), "MAX_COST_PER_RUN": "0.40"}
    line = agent.reload(new_file)
    # Then the port is named as needing a restart (audit and log), the live cap is applied
    assert line["restart_needed"] == ["health_port"] and line["applied"] == ["max_cost_per_run"]
    assert "reload_needs_restart" in agent.output() and "HEALTH_PORT" in agent.output()
    # and the old port keeps serving while nothing listens on the new one
    assert _serves(old_port) and not _serves(new_port)
    assert _drop(home, "still.txt")["outcome"] == "archived"
    # check-config says the same for each variable, from the same list
    shown = cli(None, "--env-file", str(agent.env_file), "check-config",
                env={k: v for k, v in agent.env.items()})
    assert shown.returncode == 0, shown.stderr
    lines = {ln.split("=", 1)[0].strip(): ln for ln in shown.stdout.splitlines() if "=" in ln}
    assert lines["HEALTH_PORT"].endswith("[needs a restart]") and str(new_port) in lines["HEALTH_PORT"]
    for name in ("MAX_COST_PER_RUN", "ADMIN_TOKEN", "LLM_API_KEY", "AGENTD_REVIEW_CONFIDENCE",
                 "LLM_BREAKER_FAILURES", "DAILY_BUDGET_USD"):
        assert lines[name].endswith("[SIGHUP applies it]"), lines[name]
    for name in ("AGENTD_HOME", "AGENTD_CONCURRENCY", "LLM_PROVIDER", "LLM_BASE_URL"):
        assert lines[name].endswith("[needs a restart]"), lines[name]


def test_a_rejected_key_holds_the_files_until_sighup_loads_a_good_one(
        home: Path, reloadable: Callable[..., ReloadableAgentd], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a model server that takes only the new key, and a daemon that has the revoked one
    server = llm_server(api_key="sk-good-key-0123456789")
    env = server.env()
    del env["LLM_API_KEY"]
    agent = reloadable({"LLM_API_KEY": "sk-revoked-0123456789"}, **env)
    for name in ("one.txt", "two.txt"):
        (home / "incoming" / name).write_text(f"{name}: please pay the attached invoice of 120 EUR.")
    # Then the daemon pauses on the rejected credentials instead of failing the backlog
    wait_until(lambda: "model credentials rejected" in agent.health()["reasons"], timeout=15,
               message="degraded: model credentials rejected")
    assert server.count(fault="401") >= 1 and not list((home / "failed").iterdir())
    # When SIGHUP loads the good key
    agent.reload({"LLM_API_KEY": "sk-good-key-0123456789"})
    # Then both files finish by themselves, none failed, and the daemon is healthy again
    metas = [wait_until(lambda n=n: sidecar_for(home, n), timeout=30, message=n) for n in ("one.txt", "two.txt")]
    assert [m["outcome"] for m in metas] == ["archived", "archived"]
    wait_until(lambda: agent.health()["status"] == "ok", timeout=10, message="healthy again")
    assert server.requests[-1].headers["Authorization"] == "Bearer sk-good-key-0123456789"


def test_a_daily_budget_lowered_below_todays_spend_holds_files_until_raised_again(
        home: Path, reloadable: Callable[..., ReloadableAgentd], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    agent = reloadable({"DAILY_BUDGET_USD": "0"}, **server.env())
    assert _drop(home, "paid.txt")["outcome"] == "archived"
    # When the daily budget is lowered below what today already cost and the daemon gets SIGHUP
    agent.reload({"DAILY_BUDGET_USD": "0.00001"})
    (home / "incoming" / "held.txt").write_text("held.txt: please pay the attached invoice of 120 EUR.")
    # Then the next file waits in incoming/ (seen and held, not failed) and /health says why
    wait_until(lambda: agent.health()["claiming_paused"] is not None, timeout=10, message="claiming paused")
    health = agent.health()
    assert health["status"] == "degraded" and "daily budget spent" in health["reasons"]
    assert (home / "incoming" / "held.txt").exists() and server.count() == 1
    # When the budget is raised again, the held file finishes by itself
    agent.reload({"DAILY_BUDGET_USD": "5.00"})
    assert wait_until(lambda: sidecar_for(home, "held.txt"), timeout=20, message="held.txt")["outcome"] == "archived"
    assert server.count() == 2
