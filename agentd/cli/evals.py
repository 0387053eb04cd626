"""`agentd estimate | replay | eval`: the commands that make changing a workflow safe."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agentd import logs
from agentd.config import Config, ConfigError

from agentd.errors import EX_OK, EX_PROBLEM, EX_USAGE  # noqa: E402


def _quiet_logs(config: Config) -> None:
    """Warnings and errors of the in-process runs go to stderr; stdout is the report."""
    from agentd.audit.redact import Redactor
    logs.configure(config.log_format, "warning", Redactor(config.secrets), stream=sys.stderr)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _fail(command: str, message: str, code: int = EX_USAGE) -> int:
    print(f"agentd {command}: {message}", file=sys.stderr)
    return code


def _check_workflow(config: Config, name: str, extra: tuple[str, ...] = ()) -> str | None:
    from agentd import workflows
    try:
        found = workflows.load(config.workflows + extra)
    except (ImportError, SyntaxError, ValueError, OSError) as exc:
        raise ConfigError("AGENTD_WORKFLOWS", f"{exc.__class__.__name__}: {exc}") from None
    if name not in found:
        return f"no workflow named {name!r} (known: {', '.join(sorted(found))})"
    return None


def cmd_estimate(args: argparse.Namespace, config: Config) -> int:
    from agentd.evals import estimate, harness, report

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        return _fail("estimate", f"no such file or folder: {missing[0]}")
    problem = _check_workflow(config, args.workflow)
    if problem:
        return _fail("estimate", problem)
    _quiet_logs(config)
    paths = [Path(p) for p in args.paths]
    progress = harness.Progress(len(estimate.expand(paths)), "estimate")
    found = asyncio.run(estimate.estimate(config, paths, args.workflow, args.jobs, progress))
    progress.close()
    if args.json:
        _print_json(found)
    else:
        print("\n".join(report.estimate_lines(found)))
    return EX_OK


def cmd_replay(args: argparse.Namespace, config: Config) -> int:
    from agentd.evals import replay, report

    if args.workflow_file and not Path(args.workflow_file).is_file():
        return _fail("replay", f"no such workflow file: {args.workflow_file}")
    _quiet_logs(config)
    try:
        found = asyncio.run(replay.replay(config, args.cid, args.workflow_file, args.live))
    except replay.WorkflowFileError as exc:
        return _fail("replay", str(exc))
    except replay.ReplayError as exc:
        return _fail("replay", str(exc), EX_PROBLEM)
    if args.json:
        _print_json(found)
    else:
        print("\n".join(report.replay_lines(found)))
    unanswered = [m for m in found["missing"] if not m["asked_live"]]
    return EX_PROBLEM if unanswered else EX_OK


def cmd_eval(args: argparse.Namespace, config: Config) -> int:
    if args.target[0] == "collect":
        return _collect(args, config)
    if len(args.target) != 1:
        return _fail("eval", "give one folder: agentd eval DIR (or agentd eval collect DIR --from review)")
    if args.source is not None:
        return _fail("eval", "--from goes with `agentd eval collect DIR`")
    if args.record and not args.live:
        return _fail("eval", "--record saves the answers of a --live run")
    return _evaluate(args, config, Path(args.target[0]))


def _evaluate(args: argparse.Namespace, config: Config, folder: Path) -> int:
    from agentd.evals import harness, junit, match, report, runner

    if not folder.is_dir():
        return _fail("eval", f"no such folder: {folder}")
    problem = _check_workflow(config, args.workflow)
    if problem:
        return _fail("eval", problem)
    baseline = None
    if args.baseline:
        try:
            baseline = json.loads(Path(args.baseline).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            return _fail("eval", f"--baseline {args.baseline}: {exc}")
    _quiet_logs(config)
    mode = "live" if args.live else "replay"
    try:
        progress = harness.Progress(len(runner.load_cases(folder)), "eval")
        found = asyncio.run(runner.evaluate(config, folder, args.workflow, mode, args.jobs, progress, args.record))
    except match.CaseError as exc:
        return _fail("eval", str(exc))
    progress.close()
    missed = runner.gates(found, args.min_accuracy, args.max_cost_usd, args.max_p95_s)
    regressed = runner.regressions(found, baseline) if baseline is not None else []
    missed += [f"field {r['field']} regressed: {r['before']:.3f} -> {r['after']:.3f}" for r in regressed]
    found.update(gates_missed=missed, regressions=regressed)
    if args.junit:
        junit.write(Path(args.junit), found, missed)
    if args.json:
        _print_json(found)
    else:
        print("\n".join(report.eval_lines(found, missed, regressed)))
    return EX_PROBLEM if missed else EX_OK


def _collect(args: argparse.Namespace, config: Config) -> int:
    from agentd.evals import collect

    if len(args.target) != 2:
        return _fail("eval collect", "give the folder to write the cases into: agentd eval collect DIR --from review")
    if args.source != "review":
        return _fail("eval collect", "say where the cases come from: --from review")
    made = collect.collect(config, Path(args.target[1]), args.workflow if args.workflow_given else None)
    if args.json:
        _print_json({"cases": made})
        return EX_OK
    for case in made:
        print(f"collected {case['case']} (run {case['correlation_id']}, reviewer {case['reviewer']}, "
              f"{len(case['edits'])} edit(s), {case['fields']} field(s), {case['answers']} recorded answer(s))")
    print(f"{len(made)} new case(s) in {args.target[1]}")
    return EX_OK


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


class _Workflow(argparse.Action):
    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        namespace.workflow, namespace.workflow_given = values, True


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `agentd estimate`, `agentd replay` and `agentd eval` on the CLI's subparsers."""
    p = sub.add_parser("estimate", parents=[common], help="the most each file's run could cost (no network)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--workflow", default="triage", help="the workflow to price (default: triage)")
    p.add_argument("--jobs", type=_positive_int, default=4, help="files priced at once (default 4)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("replay", parents=[common], help="re-run a finished run from its recorded answers")
    p.add_argument("cid", metavar="CID", help="correlation id (or its first 6+ characters)")
    p.add_argument("--workflow-file", metavar="F", help="a .py file with the changed workflow (same name)")
    p.add_argument("--live", action="store_true", help="ask the model (metered) where no recorded answer fits")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("eval", parents=[common], help="score a golden set; exit 1 when a gate is missed",
                       description="agentd eval DIR: run each input with a <name>.expected.json beside it and "
                                   "score the result's fields. agentd eval collect DIR --from review: turn "
                                   "approved review decisions into cases.")
    p.add_argument("target", nargs="+", metavar="DIR", help="the case folder (or: collect DIR)")
    p.add_argument("--workflow", action=_Workflow, default="triage", help="the workflow (default: triage)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--replay", action="store_true",
                      help="recorded answers (<name>.answers.jsonl), no network (the default)")
    mode.add_argument("--live", action="store_true", help="ask the configured model (metered)")
    p.add_argument("--record", action="store_true", help="with --live: save the answers for later --replay")
    p.add_argument("--min-accuracy", type=float, metavar="X", help="gate: exit 1 when accuracy is under X (0..1)")
    p.add_argument("--max-cost-usd", type=float, metavar="Y", help="gate: exit 1 when the set costs over Y USD")
    p.add_argument("--max-p95-s", type=float, metavar="Z", help="gate: exit 1 when p95 latency is over Z s")
    p.add_argument("--baseline", metavar="FILE", help="an earlier --json report: regressed fields fail the gate")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML here")
    p.add_argument("--jobs", type=_positive_int, default=4, help="cases run at once (default 4)")
    p.add_argument("--from", dest="source", choices=("review",), help="collect: where the cases come from")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_eval, workflow_given=False)
