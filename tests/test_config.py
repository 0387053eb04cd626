"""Configuration: one object from env + env file; a bad value stops start-up with exit 78."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.config import ConfigError
from tests.helpers import cli


@pytest.fixture(autouse=True)
def _away_from_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load() reads ./.env: run where no developer's .env is."""
    monkeypatch.chdir(tmp_path)


def test_defaults_run_offline_with_no_file_and_no_key(tmp_path: Path) -> None:
    config = config_mod.load(environ={"AGENTD_HOME": str(tmp_path)})
    assert config.llm_provider == "offline"
    assert config.concurrency == 4
    assert config.max_file_bytes == 26214400
    assert config.max_cost_per_run == Decimal("0.50")
    assert config.daily_budget_usd == 0
    assert config.health_port == 8080 and config.health_host == "127.0.0.1"
    assert config.extract_timeout_s == 60 and config.extract_memory_mb == 512


def test_the_real_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "agentd.env"
    env_file.write_text("AGENTD_CONCURRENCY=7\nHEALTH_PORT=9000\n")
    config = config_mod.load(env_file, environ={"AGENTD_CONCURRENCY": "2"})
    assert config.concurrency == 2
    assert config.health_port == 9000


@pytest.mark.parametrize("variable,value,words", [
    ("AGENTD_CONCURRENCY", "abc", "whole number"),
    ("AGENTD_CONCURRENCY", "0", "whole number"),
    ("HEALTH_PORT", "99999", "whole number"),
    ("LLM_PROVIDER", "gpt", "one of"),
    ("MAX_COST_PER_RUN", "-1", "USD"),
    ("ALLOWED_SERVICES", "ocr,shell", "unknown service"),
    ("AGENTD_DEDUPE", "maybe", "1 or 0"),
    ("AGENTD_EXTRACT_TIMEOUT_S", "0", "number from 0.05"),
    ("AGENTD_EXTRACT_TIMEOUT_S", "soon", "number"),
    ("AGENTD_EXTRACT_MEMORY_MB", "64", "whole number from 128"),
])
def test_a_bad_value_names_the_variable(tmp_path: Path, variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.load(environ={"AGENTD_HOME": str(tmp_path), variable: value})
    assert caught.value.variable == variable
    assert words in str(caught.value)


def test_an_unpriced_model_is_a_configuration_error_not_free(tmp_path: Path) -> None:
    env = {"AGENTD_HOME": str(tmp_path), "LLM_PROVIDER": "openai", "LLM_BASE_URL": "http://127.0.0.1:9/v1",
           "LLM_MODEL": "my-local-model"}
    with pytest.raises(ConfigError, match="LLM_MODEL"):
        config_mod.load(environ=env)
    priced = config_mod.load(environ={**env, "LLM_PRICE_INPUT_PER_MTOK": "0.2", "LLM_PRICE_OUTPUT_PER_MTOK": "0.4"})
    assert priced.price("my-local-model").output == Decimal("0.4")


def test_start_up_with_a_bad_value_exits_78_with_one_line(home: Path) -> None:
    result = cli(home, "run", AGENTD_CONCURRENCY="lots")
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "AGENTD_CONCURRENCY" in lines[0] and "lots" in lines[0]


def test_a_bad_secret_is_named_but_its_value_never_shown(home: Path) -> None:
    result = cli(home, "check-config", ALLOWED_SERVICES="notification", LLM_API_KEY="sk-canary-123456789",
                 ADMIN_TOKEN="tok-canary-987654321")
    assert result.returncode == 78
    assert "NOTIFY_WEBHOOK_URL" in result.stderr
    ok = cli(home, "check-config", LLM_API_KEY="sk-canary-123456789", ADMIN_TOKEN="tok-canary-987654321")
    assert ok.returncode == 0, ok.stderr
    assert "LLM_API_KEY=(set)" in ok.stdout
    for output in (result.stdout, result.stderr, ok.stdout, ok.stderr):
        assert "canary" not in output


def test_an_env_file_that_does_not_exist_is_a_configuration_error(home: Path) -> None:
    result = cli(home, "--env-file", str(home / "missing.env"), "status")
    assert result.returncode == 78
    assert "--env-file" in result.stderr


def test_a_dot_env_in_the_working_folder_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGENTD_CONCURRENCY=3\nLLM_API_KEY=sk-from-dotenv-0000\n")
    config = config_mod.load(environ={"AGENTD_HOME": str(tmp_path)})
    assert config.concurrency == 3
    assert "sk-from-dotenv-0000" in config.secrets and "sk-from-dotenv" not in repr(config)
