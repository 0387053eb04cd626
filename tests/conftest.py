"""Fixtures as factories that clean up: a tmp AGENTD_HOME and real agentd processes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.helpers import AgentdProcess, base_env

pytest_plugins = ["tests.fakellm"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
def daemon(home: Path) -> Iterator[Callable[..., AgentdProcess]]:
    """daemon(**env) starts `agentd run` on `home` with those variables; killed at the end."""
    started: list[AgentdProcess] = []

    def start(wait: bool = True, **overrides: Any) -> AgentdProcess:
        proc = AgentdProcess(home, base_env(home, **overrides))
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.kill()
