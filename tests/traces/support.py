"""Helpers for trace tests: a Config for an in-process burst daemon, documents to drop."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from agentd import config as config_mod
from agentd.config import Config
from agentd.lifecycle.daemon import Daemon

SPANS_PER_TRIAGE = 5  # the run, three steps, one model call


def make_config(home: Path, **env: Any) -> Config:
    values = {"AGENTD_HOME": str(home), "AGENTD_SETTLE_S": "0", "AGENTD_LOG_FORMAT": "json",
              "AGENTD_PROBE_INTERVAL_S": "0", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    values.update({k: str(v) for k, v in env.items()})
    return config_mod.load(environ=values)


def drop(home: Path, count: int, prefix: str = "doc") -> None:
    """`count` small invoices into incoming/, named <prefix>-<n>.txt."""
    (home / "incoming").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        text = f"Invoice {prefix} {index}: amount due $12.{index:02d} by Friday, please pay.\n"
        (home / "incoming" / f"{prefix}-{index}.txt").write_text(text)


async def burst(config: Config) -> None:
    """`agentd run --burst` in this process: drains incoming/, exports, stops."""
    daemon = Daemon(config, burst=True)
    try:
        assert await daemon.serve() == 0
    finally:
        daemon.notifier.socket.close()  # the notify_socket fixture's peer
