"""The command line: `agentd run | status | costs | audit | review | ...` and its exit codes."""
from agentd.cli.main import main

__all__ = ["main"]
