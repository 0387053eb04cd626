"""`agentd status`: the daemon's state, queues, spend and what it could not read, for a person or as JSON."""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

from agentd.config import Config
from agentd.errors import EX_OK


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from agentd.guards.budget import Budget
    from agentd.spool.lock import state_lock_holder
    from agentd.guards.killswitch import KillSwitch
    from agentd.server.console.queue import stats
    from agentd.spool.counts import count_entries, oldest_waiting_age_s

    home = config.home
    counts = {sub: count_entries(home / sub, sub) for sub in ("incoming", "processing", "archive", "failed", "review")}
    pid = state_lock_holder(home)
    kill = KillSwitch(config.state_dir) if config.state_dir.exists() else None
    budget = Budget(config.max_cost_per_run, config.daily_budget_usd, config.state_dir).load()
    oldest = oldest_waiting_age_s(config.incoming, time.time())
    status = {
        "home": str(home),
        "running": pid is not None,
        "pid": pid,
        "counts": counts,
        "waiting": counts["incoming"],
        "in_flight": counts["processing"],
        "oldest_waiting_s": None if oldest is None else round(oldest, 1),
        "kill_switch": bool(kill and kill.engaged),
        "spend_today_usd": float(budget.spent_today),
        "daily_budget_usd": float(config.daily_budget_usd),
        "unreadable": _unreadable(config),
        "review_overdue": stats(home, config.review_sla_s, time.time())["overdue"],
    }
    if args.json:
        _print_json(status)
        return EX_OK
    state = f"running (pid {pid})" if pid else "not running"
    print(f"agentd on {home}: {state}")
    for sub, n in counts.items():
        extra = f"   oldest waiting {_age(oldest)}" if sub == "incoming" and oldest is not None else ""
        extra = "   in flight" if sub == "processing" and n else extra
        extra = f"   {status['review_overdue']} overdue" if sub == "review" and status["review_overdue"] else extra
        print(f"  {sub:<11}{n:>7}{extra}")
    for path, why in status["unreadable"].items():
        print(f"skipped (cannot read): {path}: {why}")
    print(f"kill switch: {'ON' if status['kill_switch'] else 'off'}")
    cap = f" of ${config.daily_budget_usd}" if config.daily_budget_usd > 0 else " (no daily budget)"
    print(f"spent today: ${budget.spent_today:.4f}{cap}")
    return EX_OK


def _unreadable(config: Config) -> dict[str, str]:
    """Entries of incoming/ the running daemon had to skip (it keeps the list in state/)."""
    from agentd.intake.watcher import UNREADABLE_FILE

    try:
        found = json.loads((config.state_dir / UNREADABLE_FILE).read_text("utf-8", "surrogateescape"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
