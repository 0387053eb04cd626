"""Which settings a running daemon applies on SIGHUP, and the merge of a reloaded Config into the running one.

One list (LIVE_FIELDS) decides: each field in it is read through the live config by the part that
uses it, or handed over by Services.reconfigure. Every other field named by a variable needs a
restart: a reload keeps its running value and names it (the log line, the audit line, check-config).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from agentd import config as config_mod
from agentd.config import VARIABLES, Config, ConfigError

LIVE_FIELDS = frozenset({
    "admin_token", "llm_api_key", "max_cost_per_run", "daily_budget_usd", "review_confidence",
    "breaker_failures", "breaker_reset_s", "llm_timeout_s", "llm_max_attempts", "llm_max_output_tokens",
    "llm_max_calls_per_run", "llm_retry_after_cap_s", "step_timeout_s", "llm_slow_call_s", "redact_pii",
    "allowed_services", "log_level", "settle_s", "rescan_s", "stale_open_s", "drain_timeout_s", "dedupe",
    "max_file_bytes", "max_resumes", "tool_timeout_s", "agent_max_steps", "agent_max_tool_calls", "webhook_url",
    "reviewer_tokens", "viewer_tokens", "review_lease_s", "review_sla_s", "review_base_url"})
DERIVED_FIELDS = frozenset({"secrets", "source"})  # follow the variables they come from


def applies_on_reload(field: str) -> bool:
    """Whether a running daemon picks up a new value of this Config field on SIGHUP."""
    return field in LIVE_FIELDS


def restart_fields() -> tuple[str, ...]:
    """The Config fields a SIGHUP cannot change (the listener, the home, the provider, the workers...)."""
    return tuple(f.name for f in dataclasses.fields(Config) if f.name not in LIVE_FIELDS | DERIVED_FIELDS)


def variables_of(fields: list[str]) -> list[str]:
    """The environment variables that set these Config fields."""
    return [name for name, (attr, _) in VARIABLES.items() if attr in fields]


def merge(running: Config, fresh: Config) -> tuple[Config, list[str], list[str]]:
    """(the config to run with, live fields that changed, restart fields that changed and were kept).

    An old secret stays masked too: it may still sit in a log line or an answer in flight."""
    changed = [f for f in restart_fields() if getattr(fresh, f) != getattr(running, f)]
    applied = sorted(f for f in LIVE_FIELDS if getattr(fresh, f) != getattr(running, f))
    secrets = tuple(sorted(set(fresh.secrets) | set(running.secrets), key=len, reverse=True))
    kept = fresh.replace(**{f: getattr(running, f) for f in changed}, secrets=secrets)
    return kept, applied, changed


def reread(env_file: str | os.PathLike[str] | None, running: Config, log: Any
           ) -> tuple[Config, list[str], list[str]] | None:
    """SIGHUP: the configuration read again (the env file the daemon was started with: under the
    shipped unit, the copy of /etc/agentd/agentd.env its reload has just made) and merged into the
    running one, as merge() says; None, logged, when a value is rejected (the running one stays)."""
    try:
        fresh = config_mod.load(env_file)
    except ConfigError as exc:
        log.error("reload_rejected", variable=exc.variable, problem=exc.problem)
        return None
    fresh, applied, changed = merge(running, fresh)
    if changed:
        log.warning("reload_needs_restart", fields=changed, variables=variables_of(changed))
    return fresh, applied, changed
