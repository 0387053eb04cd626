"""Where a CLI command's home is: a state command run where no agentd home is says so in one line."""
from __future__ import annotations

import argparse
from pathlib import Path

from agentd import config as config_mod
from agentd.config import Config

# the commands that read (or change) an existing home's state: a missing default ./var is an error
STATE_COMMANDS = frozenset({"status", "costs", "audit", "review", "trace", "replay", "kill-switch", "requeue"})
EX_SIGPIPE = 141  # what a shell shows for a process ended by SIGPIPE (`agentd trace ID --json | head`)


def is_home(path: Path) -> bool:
    """A folder agentd has run in (it makes these at its first start); a ./var of something else is not one."""
    return any((path / part).is_dir() for part in ("incoming", "processing", "state"))


def no_home(args: argparse.Namespace, config: Config) -> str | None:
    """The one-line complaint when a state command runs where no home is, else None."""
    if args.command not in STATE_COMMANDS or config_mod.home_given(config) or is_home(config.home):
        return None
    env_file = Path(args.env_file or ".env").absolute()
    return (f"agentd: no agentd home here: set AGENTD_HOME or run from the folder holding var/ "
            f"(looked in: $AGENTD_HOME, {env_file}, {config.home})")
