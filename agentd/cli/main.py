"""The `agentd` command: argument parsing, exit codes, human and JSON output."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

from agentd import __version__
from agentd import config as config_mod
from agentd import logs
from agentd.cli.home import EX_SIGPIPE, no_home
from agentd.cli.status import cmd_status
from agentd.config import Config, ConfigError

from agentd.errors import EX_CONFIG, EX_OK, EX_PROBLEM, EX_USAGE  # noqa: E402  (one source)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# -- commands ---------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from agentd.lifecycle.daemon import Daemon
    from agentd.spool.lock import AlreadyRunning
    from agentd.server.app import ListenError
    from agentd.audit.redact import Redactor

    logs.configure(config.log_format, config.log_level, Redactor(config.secrets))
    daemon = Daemon(config, burst=args.burst, env_file=args.env_file)
    if sys.stdout.isatty() and not args.burst:
        print(f"agentd {__version__}: drop files into {config.incoming}/ "
              f"(health: http://{config.health_host}:{config.health_port}/health, Ctrl-C stops)", flush=True)
    try:
        return asyncio.run(daemon.serve())
    except AlreadyRunning as exc:
        print(f"agentd: {exc}", file=sys.stderr)
        return EX_PROBLEM
    except ListenError as exc:  # only the listener's own bind: any other OSError is not a config problem
        print(f"agentd: HEALTH_PORT: cannot listen on {config.health_host}:{config.health_port}: "
              f"{exc.strerror}", file=sys.stderr)
        return EX_CONFIG


def _audit(config: Config) -> Any:
    from agentd.audit import open_for

    return open_for(config)


def _store(config: Config, audit: Any) -> Any:
    """The spool store for a command that moves files (it is the only mover, also outside the daemon)."""
    from agentd.durable.group import GroupSync
    from agentd.spool.deferred import Deferrals
    from agentd.spool.store import Store

    return Store(config, audit, GroupSync(enabled=config.fsync), Deferrals(config.state_dir))


def _find_sidecars(config: Config, ident: str, outcomes: tuple[str, ...]) -> list[tuple[Path, dict]]:
    from agentd.spool.store import iter_sidecars

    return [(p, m) for p, m in iter_sidecars(config.home, outcomes)
            if str(m.get("correlation_id", "")).startswith(ident)]


def cmd_requeue(args: argparse.Namespace, config: Config) -> int:
    from agentd.spool import transitions

    if not args.failed and len(args.id) < 6:
        print("agentd: requeue: give at least 6 characters of the correlation id", file=sys.stderr)
        return EX_USAGE
    audit = _audit(config)
    store = _store(config, audit)
    with transitions.decision_lock(config.state_dir):  # one move at a time; a killed one finished first
        transitions.recover(store)
        return _requeue(args, config, store)


def _requeue(args: argparse.Namespace, config: Config, store: Any) -> int:
    from agentd.spool import transitions
    from agentd.spool.layout import DEFAULT_WORKFLOW, data_of, ignored_name
    from agentd.spool.store import iter_sidecars

    if args.failed:
        targets = list(iter_sidecars(config.home, ("failed",)))
    else:
        targets = _find_sidecars(config, args.id, ("failed", "review"))
        if not targets:
            print(f"agentd: requeue: no failed or review file with id {args.id}", file=sys.stderr)
            return EX_PROBLEM
        if len(targets) > 1:
            print(f"agentd: requeue: id {args.id} is ambiguous ({len(targets)} files)", file=sys.stderr)
            return EX_PROBLEM
    moved = 0
    for sidecar_path, meta in targets:
        data = data_of(sidecar_path)
        if not os.path.lexists(data):
            continue
        name = str(meta.get("original_name") or data.name)
        try:
            target = transitions.requeue(store, data, str(meta.get("workflow") or DEFAULT_WORKFLOW),
                                         str(meta.get("correlation_id", "")), by=_user(),
                                         name=name if not (ignored_name(name) or "/" in name) else data.name)
        except FileNotFoundError as exc:  # moved by someone else since it was listed
            print(f"agentd: requeue: {exc}", file=sys.stderr)
            continue
        moved += 1
        print(f"requeued {meta.get('correlation_id')} -> {target}")
    if not moved:
        print("nothing to requeue")
    return EX_OK


def _user() -> str:
    from agentd.guards.killswitch import _who
    return _who()


def cmd_kill_switch(args: argparse.Namespace, config: Config) -> int:
    from agentd.guards.killswitch import KillSwitch

    config.state_dir.mkdir(parents=True, exist_ok=True)
    kill = KillSwitch(config.state_dir)
    if args.action == "status":
        if args.json:
            _print_json(kill.state)
        else:
            state = kill.state
            print(f"kill switch: {'ON' if kill.engaged else 'off'}"
                  + (f" (since {state.get('at')}, by {state.get('by')}: {state.get('reason') or 'no reason'})"
                     if state.get("at") else ""))
        return EX_OK
    engage = args.action == "on"
    state = kill.set(engage, _audit(config), reason=args.reason or "", by=_user())
    print(f"kill switch {'ON' if engage else 'off'}" + (f": {state['reason']}" if state.get("reason") else ""))
    return EX_OK


def cmd_audit(args: argparse.Namespace, config: Config) -> int:
    from agentd.audit import verify_report
    from agentd.spool.store import iter_sidecars

    if not config.logs_dir.exists():
        print(f"agentd: no audit log under {config.logs_dir}", file=sys.stderr)
        return EX_PROBLEM
    report = verify_report(config.logs_dir, iter_sidecars(config.home), config.audit_hmac_key)
    for note in report.notes:
        print(f"note: {note}")
    if report.problems:
        print(f"audit log BROKEN: {report.problems[0]}")
        for extra in report.problems[1:5]:
            print(f"  also: {extra}")
        return EX_PROBLEM
    signed = ", anchor signature ok" if config.audit_hmac_key else ""
    print(f"audit log ok: {report.count} lines, hash chain intact, anchor agrees{signed}, sidecars agree")
    return EX_OK


def cmd_costs(args: argparse.Namespace, config: Config) -> int:
    from agentd.audit import iter_records

    rows: dict[str, dict[str, Any]] = {}
    total = {"calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": Decimal(0)}
    key_of: dict[str, Callable[[dict], str]] = {
        "day": lambda r: r["ts"][:10], "workflow": lambda r: r.get("workflow") or "-",
        "model": lambda r: f"{r.get('provider', '?')}:{r.get('model', '?')}",
        "run": lambda r: r.get("correlation_id") or "-"}
    pick = key_of[args.by]
    if config.logs_dir.exists():
        for record in iter_records(config.logs_dir):
            if record.get("event") != "llm_call" or (args.since and record["ts"][:10] < args.since):
                continue
            row = rows.setdefault(pick(record), {"calls": 0, "tokens_in": 0, "tokens_out": 0,
                                                 "cost_usd": Decimal(0)})
            for bucket in (row, total):
                bucket["calls"] += 1
                bucket["tokens_in"] += int(record.get("tokens_in", 0))
                bucket["tokens_out"] += int(record.get("tokens_out", 0))
                bucket["cost_usd"] += Decimal(str(record.get("cost_usd", 0)))
    ordered = sorted(rows.items())
    if args.json:
        _print_json({"by": args.by, "since": args.since,
                     "rows": [{args.by: k, **{**v, "cost_usd": float(v["cost_usd"])}} for k, v in ordered],
                     "total": {**total, "cost_usd": float(total["cost_usd"])}})
        return EX_OK
    width = max([len(args.by), 5, *(len(k) for k in rows)])
    print(f"{args.by:<{width}}  {'calls':>6}  {'tokens in':>10}  {'tokens out':>10}  {'cost USD':>12}")
    for key, row in ordered:
        print(f"{key:<{width}}  {row['calls']:>6}  {row['tokens_in']:>10}  {row['tokens_out']:>10}  "
              f"{row['cost_usd']:>12.6f}")
    print(f"{'total':<{width}}  {total['calls']:>6}  {total['tokens_in']:>10}  {total['tokens_out']:>10}  "
          f"{total['cost_usd']:>12.6f}")
    return EX_OK


def cmd_trace(args: argparse.Namespace, config: Config) -> int:
    from agentd.traces import timeline

    if len(args.id) < timeline.MIN_ID_CHARS:
        print(f"agentd: trace: give at least {timeline.MIN_ID_CHARS} characters of the correlation id",
              file=sys.stderr)
        return EX_USAGE
    if not config.logs_dir.exists():
        print(f"agentd: no audit log under {config.logs_dir}", file=sys.stderr)
        return EX_PROBLEM
    try:
        cid, records = timeline.records_of(config.logs_dir, args.id.lower())
    except timeline.TraceNotFound as exc:
        print(f"agentd: trace: {exc}", file=sys.stderr)
        return EX_PROBLEM
    root = timeline.build_tree(cid, records)
    if args.json:
        _print_json({"trace_id": cid, "root": timeline.as_json(root)})
    else:
        print(timeline.render_text(root))
    return EX_OK


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    from agentd import workflows
    from agentd.audit.redact import Redactor
    from agentd.lifecycle.reloading import applies_on_reload

    redact = Redactor(config.secrets)  # and URL credentials (LLM_BASE_URL=https://user:pw@host)
    try:
        found = workflows.load(config.workflows)
    except (ImportError, SyntaxError, ValueError, OSError) as exc:
        raise ConfigError("AGENTD_WORKFLOWS", redact.text(f"{exc.__class__.__name__}: {exc}")) from None
    print(f"configuration ok (agentd {__version__})")
    for name in sorted(config_mod.VARIABLES):
        attr = config_mod.VARIABLES[name][0]
        value = getattr(config, attr)
        if attr in ("reviewer_tokens", "viewer_tokens"):
            value = f"(set: {', '.join(n for n, _ in value)})" if value else "(empty)"  # names are not secret
        elif config_mod.is_secret_name(name) and not isinstance(value, (int, float)):  # counts are not secrets
            value = "(set)" if value else "(empty)"
        elif isinstance(value, tuple) and value and isinstance(value[0], tuple):
            value = ",".join(f"{k}={v}" for k, v in value)
        elif isinstance(value, (tuple, frozenset)):
            value = ",".join(sorted(value)) if isinstance(value, frozenset) else ",".join(value)
        when = "SIGHUP applies it" if applies_on_reload(attr) else "needs a restart"
        print(f"  {name}={redact.text(str(value))}    [{when}]")
    print("  (a running daemon picks up the [SIGHUP applies it] variables on `systemctl reload agentd`)")
    print(f"  workflows: {', '.join(sorted(found))}")
    return EX_OK


# -- parsing ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    env_help = "read variables from this file (default: ./.env if present)"
    parser = argparse.ArgumentParser(prog="agentd", description="Run AI agent workflows on files dropped into a folder.")
    parser.add_argument("--env-file", metavar="PATH", default=None, help=env_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", metavar="PATH", default=argparse.SUPPRESS, help=env_help)
    parser.add_argument("--version", action="version", version=f"agentd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    p.add_argument("--burst", action="store_true", help="process what is waiting, then exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", parents=[common], help="files per folder, oldest waiting, today's spend")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("costs", parents=[common], help="model spend from the audit log")
    p.add_argument("--by", choices=("day", "workflow", "model", "run"), default="day")
    p.add_argument("--since", metavar="YYYY-MM-DD", type=_date, help="only calls on or after this UTC day")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_costs)

    p = sub.add_parser("audit", parents=[common], help="check the audit log")
    audit_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = audit_sub.add_parser("verify", parents=[common], help="verify the hash chain and the sidecars")
    v.set_defaults(func=cmd_audit)

    p = sub.add_parser("requeue", parents=[common], help="send a failed file back to incoming/")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("id", nargs="?", help="correlation id (or its first 6+ characters)")
    group.add_argument("--failed", action="store_true", help="requeue every file in failed/")
    p.set_defaults(func=cmd_requeue)

    p = sub.add_parser("kill-switch", parents=[common], help="stop or allow all model and tool calls")
    p.add_argument("action", choices=("on", "off", "status"))
    p.add_argument("--reason", help="why (recorded in the audit log)")
    p.add_argument("--json", action="store_true", help="machine-readable status")
    p.set_defaults(func=cmd_kill_switch)

    p = sub.add_parser("trace", parents=[common], help="a run's timeline (steps, model and tool calls) from the audit log")
    p.add_argument("id", help="correlation id (or its first 6+ characters)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("check-config", parents=[common], help="validate the configuration and exit")
    p.set_defaults(func=cmd_check_config)

    _add_optional_commands(sub, common)
    return parser


def _add_optional_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Commands whose modules register themselves (the review queue, estimate/replay/eval)."""
    from agentd.server import review
    from agentd.cli import evals as cli_evals

    review.add_parser(sub, common)
    cli_evals.add_parser(sub, common)


def _date(value: str) -> str:
    try:
        time.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError("use YYYY-MM-DD") from None
    return value


def _load(args: argparse.Namespace) -> Config:
    try:
        return config_mod.load(args.env_file)
    except ConfigError as exc:
        if args.command != "estimate" or exc.variable != "LLM_API_KEY":
            raise
    # estimate sends nothing: a missing API key is no reason to refuse pricing a file
    config = config_mod.load(args.env_file, {**os.environ, "LLM_API_KEY": "-"})
    return config.replace(llm_api_key="")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = _load(args)
        problem = no_home(args, config)
        if problem:
            print(problem, file=sys.stderr)
            return EX_CONFIG
        code = args.func(args, config)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
        return code
    except ConfigError as exc:
        print(f"agentd: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except BrokenPipeError:
        # the reader went away (`| head`): no traceback, and nothing more to write at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EX_SIGPIPE
    except KeyboardInterrupt:
        return 130
