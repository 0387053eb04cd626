"""The sweep's drivers: for each scenario of agentd/durable/crash.py, a run that reaches its points.

offline   a letter and a copy of it (the copy reuses the first run's result), the offline provider,
          the audit log rotating every 4 KiB (AGENTD_AUDIT_MAX_BYTES' least)
model     the same through LLM_PROVIDER=openai against tests/fakellm.py: one paid answer per run
waiting   model with a first life's day cap below one call's worst case: each claim is stopped at its
          reservation, before any paid work, and goes back to incoming/ to wait
tool      the agent workflow: the model proposes a notification, the webhook receives it, the model sums up
review    a note sent to review/, then `agentd review approve` (the CLI) or the console's Approve
requeue   a file failed too_large and a note in review/, then `agentd requeue --failed` or `requeue ID`

A driver starts the process that must die with AGENTD_CRASH_AT, gives the restart a different
configuration, and checks what only it can count (requests at the model's and the tool's servers).
"""
from __future__ import annotations

import http.client
import re
import subprocess
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.e2e.sweep.invariants import Checks, Decided, journals
from tests.fakellm import FakeLLM, Seen, answer, tool_call
from tests.helpers import AgentdProcess, cli, sidecar_for, terminal_files, wait_until
from tests.tools.webhook import Webhook

LETTER = b"Dear team, the quarterly report is attached. Kind regards, Ann Example\n"
NOTE = b"A short note about nothing much.\n"
BIG = b"This file is larger than the first life's AGENTD_MAX_FILE_BYTES allows.\n"
BOILER = b"The boiler in room 4 is leaking.\n"
RESULTS_MARKER = "=== TOOL RESULTS "  # the agent's second turn carries its tools' results
SUMMARY = {"summary": "notified the operators", "actions": ["notification"]}
REVIEWER, REVIEWER_TOKEN = "rita", "rita-sweep-token-1"
DEATH_S = 20.0  # how long the first life may take to reach its point


@dataclass
class Case:
    """One sweep case: a point, a restart variant, the state root and the servers it talks to."""

    point: str
    restart: str  # "other_config" or "kill_switch"
    home: Path
    daemon: Callable[..., AgentdProcess]
    llm: FakeLLM
    hook: Webhook
    dropped: dict[str, bytes] = field(default_factory=dict)
    lives: list[dict[str, str]] = field(default_factory=list)  # each life's configuration (the caps)
    notes: dict[str, Any] = field(default_factory=dict)

    def drop(self, name: str, content: bytes, folder: str = "") -> None:
        target = self.home / "incoming" / folder
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(content)
        self.dropped[name] = content


def _all_terminal(home: Path, names: set[str]) -> bool:
    return {p.name for paths in terminal_files(home).values() for p in paths} >= names


def first_life(case: Case, env: dict[str, str]) -> tuple[int | None, str]:
    """Start the daemon with AGENTD_CRASH_AT on the files already dropped; its exit status and log."""
    case.lives.append(env)
    agent = case.daemon(wait=False, AGENTD_CRASH_AT=case.point, **env)
    assert agent.proc is not None
    names = set(case.dropped)
    wait_until(lambda: agent.proc.poll() is not None or _all_terminal(case.home, names), timeout=DEATH_S,
               message=f"the daemon to reach {case.point}")
    try:  # everything done: the point may be the last step of the last file; else it was not reached
        agent.proc.wait(timeout=2)
    except subprocess.TimeoutExpired:  # alive with nothing left to do: the point was never reached
        agent.kill()
        return None, agent.output()
    return agent.proc.returncode, agent.output()


class Scenario:
    name = ""
    calls_per_run = 0  # paid model calls of one run that does not reuse another's result

    def provoke(self, case: Case) -> tuple[int | None, str]:
        """Run until the process dies at case.point: (its exit status, what it wrote)."""
        raise NotImplementedError

    def restart_env(self, case: Case) -> dict[str, str]:
        """The second life's configuration: not the first's."""
        raise NotImplementedError

    def after_restart(self, case: Case, agent: AgentdProcess) -> None:
        """What a person does once agentd is back (a second decision, ...)."""

    def calls(self, case: Case) -> tuple[int, int]:
        """(requests at the model's server, deliveries at the tool's)."""
        return case.llm.count(), len(case.hook.deliveries)

    def check(self, checks: Checks, case: Case, found: dict[str, tuple[str, dict]], before: Decided) -> None:
        """No paid call repeated: the server saw each run's calls once; a reused result cost none."""
        runs = [meta for _, meta in found.values() if not meta.get("duplicate_of")]
        capped = [meta for meta in runs if meta.get("error_class") == "budget"]  # stopped by a cap: fewer calls
        seen = case.llm.count()
        checks.that(self.calls_per_run * (len(runs) - len(capped)) <= seen <= self.calls_per_run * len(runs),
                    "the model's server saw each run's paid calls once", (seen, len(runs), len(capped)))
        for _, meta in found.values() if self.calls_per_run else ():
            if meta in capped:
                continue
            want = 0 if meta.get("duplicate_of") else self.calls_per_run
            # an intent the kill left unanswered counts as a call (charged at its worst case), once
            checks.that(want <= (meta.get("llm_calls") or 0) <= want + (want > 0),
                        f"{meta['original_name']}'s sidecar counts its calls once", (meta.get("llm_calls"), want))


class Offline(Scenario):
    name = "offline"
    rotating = {"AGENTD_AUDIT_MAX_BYTES": "4096"}  # the smallest: the audit log rotates during the run

    def provoke(self, case: Case) -> tuple[int | None, str]:
        case.drop("letter.txt", LETTER)
        case.drop("letter-copy.txt", LETTER)
        return first_life(case, dict(self.rotating))

    def restart_env(self, case: Case) -> dict[str, str]:
        return {"AGENTD_REVIEW_CONFIDENCE": "0.99", **self.rotating}  # a letter decided again would go to review/


class Model(Scenario):
    name = "model"
    calls_per_run = 1
    caps = {"MAX_COST_PER_RUN": "0.02", "DAILY_BUDGET_USD": "0.10"}
    # one call's worst case (~$0.004 here) fits the run cap, two do not: a run whose call the kill left
    # unanswered (charged at its worst case) cannot afford to ask again and fails for its budget
    stricter = {"MAX_COST_PER_RUN": "0.006", "DAILY_BUDGET_USD": "0.08"}

    def provoke(self, case: Case) -> tuple[int | None, str]:
        case.drop("letter.txt", LETTER)
        case.drop("letter-copy.txt", LETTER)
        return first_life(case, {**case.llm.env(), **self.caps})

    def restart_env(self, case: Case) -> dict[str, str]:
        # every answer says 0.9: a run decided again would go to review/
        return {**case.llm.env(), **self.stricter, "AGENTD_REVIEW_CONFIDENCE": "0.95"}


class Waiting(Model):
    name = "waiting"
    starved = "0.0001"  # the first life's day cap, below one call's worst case: its claims go back to wait

    def provoke(self, case: Case) -> tuple[int | None, str]:
        case.drop("letter.txt", LETTER)
        case.drop("letter-copy.txt", LETTER)
        # each claim is stopped at its first reservation (no intent, no paid work): unclaimed to incoming/
        died = first_life(case, {**case.llm.env(), **self.caps, "DAILY_BUDGET_USD": self.starved})
        assert case.llm.count() == 0, "the starved first life sent a request"
        # it spent nothing: its cap is not one the later lives' spend must fit (as the sweep's budget_spent)
        case.lives[-1] = {**case.lives[-1], "DAILY_BUDGET_USD": self.caps["DAILY_BUDGET_USD"]}
        return died


def agent_responder(seen: Seen) -> Any:
    if RESULTS_MARKER not in (seen.document or ""):
        return tool_call("notification", {"message": "the boiler is leaking", "severity": "critical"})
    return answer(SUMMARY)


class Tool(Model):
    name = "tool"
    calls_per_run = 2  # the turn that proposes the notification, then the summary

    def env(self, case: Case) -> dict[str, str]:
        case.llm.responder = agent_responder
        return {**case.llm.env(model="test-model"), "AGENTD_WORKFLOWS": "agentd.workflows.agent",
                "ALLOWED_SERVICES": "notification", "NOTIFY_WEBHOOK_URL": case.hook.url}

    def provoke(self, case: Case) -> tuple[int | None, str]:
        case.drop("boiler.txt", BOILER, folder="agent")
        case.drop("boiler-copy.txt", BOILER, folder="agent")
        died = first_life(case, {**self.env(case), **self.caps})
        case.notes["sent"] = Counter(d.headers.get("Idempotency-Key") for d in case.hook.deliveries)
        case.notes["open"] = open_tool_intents(case.home)
        return died

    def restart_env(self, case: Case) -> dict[str, str]:
        return {**self.env(case), **self.stricter, "AGENTD_REVIEW_CONFIDENCE": "0.95"}

    def check(self, checks: Checks, case: Case, found: dict[str, tuple[str, dict]], before: Decided) -> None:
        super().check(checks, case, found, before)
        keys = Counter(d.headers.get("Idempotency-Key") for d in case.hook.deliveries)
        runs = [meta for _, meta in found.values() if not meta.get("duplicate_of")]
        checks.that(len(keys) == len(runs), "one notification per run at the webhook (by key)", keys)
        checks.that(all(k and k.startswith(tuple(m["correlation_id"] for m in runs)) for k in keys),
                    "every delivery carries its run's idempotency key", keys)
        # sent again only when the kill came between its intent and its result, with the same key, once
        resent = {k: n for k, n in keys.items() if n > 1}
        allowed = {k: 2 for k in case.notes["open"] if case.notes["sent"][k] == 1}
        checks.that(resent.items() <= allowed.items(), "no side effect repeated after its result was journaled",
                    (resent, case.notes["open"], dict(case.notes["sent"])))


def open_tool_intents(home: Path) -> set[str]:
    """Idempotency keys whose intent is in a run's journal in processing/ with no result (nor void)."""
    intents, results = set(), set()
    for entries in journals(home).values():
        for entry in entries:
            value = entry.get("value") if isinstance(entry.get("value"), dict) else {}
            if str(entry.get("key", "")).startswith("intent:") and not value.get("void"):
                intents.add(str(value.get("key")))
            elif str(entry.get("key", "")).startswith("tool:"):
                results.add(str(value.get("key")))
    return intents - results


def _into_review(case: Case, **env: str) -> None:
    """The first life, without a crash: `agentd run --burst` sends the note to review/ (and more)."""
    case.drop("note.txt", NOTE)
    done = cli(case.home, "run", "--burst", AGENTD_REVIEW_CONFIDENCE="0.99", **env)
    assert done.returncode == 0, done.stderr
    case.notes["cid"] = sidecar_for(case.home, "note.txt")["correlation_id"]  # type: ignore[index]


class Review(Scenario):
    name = "review"
    console = {"REVIEWER_TOKENS": f"{REVIEWER}:{REVIEWER_TOKEN}"}

    def provoke(self, case: Case) -> tuple[int | None, str]:
        _into_review(case)
        if case.restart == "other_config":  # the CLI decides
            done = cli(case.home, "review", "approve", case.notes["cid"], AGENTD_CRASH_AT=case.point)
            return done.returncode, done.stderr
        agent = case.daemon(AGENTD_CRASH_AT=case.point, **self.console)  # the console decides
        console_approve(agent, case.notes["cid"])
        assert agent.proc is not None
        agent.proc.wait(timeout=DEATH_S)
        return agent.proc.returncode, agent.output()

    def restart_env(self, case: Case) -> dict[str, str]:
        return {"AGENTD_REVIEW_CONFIDENCE": "0.3", **self.console}

    def after_restart(self, case: Case, agent: AgentdProcess) -> None:
        # a second reviewer tries the other decision: refused if the first one holds
        second = cli(case.home, "review", "reject", case.notes["cid"], "--reason", "a second reviewer")
        case.notes["second"] = second

    def check(self, checks: Checks, case: Case, found: dict[str, tuple[str, dict]], before: Decided) -> None:
        super().check(checks, case, found, before)
        second = case.notes["second"]
        folder, meta = found["note.txt"]
        cid = case.notes["cid"]
        if cid in before.reviews or before.records.get(cid) == "review":
            checks.that(second.returncode != 0, "a decision recorded before the kill holds: the second is refused",
                        (second.returncode, second.stdout[-300:]))
        if second.returncode == 0:  # the first decision was undone: the second one decides
            checks.that(folder == "failed", "the second decision (reject) is where the file is", folder)
        else:
            checks.that("already decided" in second.stderr + second.stdout, "the second decision is refused "
                        "saying it was already decided", second.stderr)
            checks.that(folder == "archive", "the first decision (approve) is where the file is", folder)
        checks.that((meta.get("review") or {}).get("decision") == {"archive": "approve", "failed": "reject"}[folder],
                    "the sidecar records the decision that moved the file", meta.get("review"))


def console_approve(agent: AgentdProcess, cid: str) -> None:
    """Log in as the reviewer, open the item, press Approve (the daemon may die answering)."""
    port = int(agent.env["HEALTH_PORT"])

    def send(method: str, path: str, body: dict[str, str] | None = None, cookie: str = "") -> tuple[int, str, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **({"Cookie": cookie} if cookie else {})}
        try:
            connection.request(method, path, body=urllib.parse.urlencode(body) if body else None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace"), \
                (response.getheader("Set-Cookie") or "").split(";")[0]
        except (ConnectionError, http.client.RemoteDisconnected):
            return 0, "", ""  # the daemon died answering: the sweep proves it by its exit status
        finally:
            connection.close()

    status, _, cookie = send("POST", "/review/login", {"token": REVIEWER_TOKEN})
    assert status == 303 and cookie, status
    status, page, _ = send("GET", f"/review/{cid}", cookie=cookie)
    assert status == 200, page[:500]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None, page[:500]
    send("POST", f"/review/{cid}/decide", {"action": "approve", "csrf": csrf.group(1)}, cookie=cookie)


class Requeue(Scenario):
    name = "requeue"
    first = {"AGENTD_MAX_FILE_BYTES": "40"}

    def provoke(self, case: Case) -> tuple[int | None, str]:
        case.drop("big.txt", BIG)
        _into_review(case, **self.first)  # big.txt fails too_large, note.txt waits in review/
        command = ("--failed",) if case.restart == "other_config" else (case.notes["cid"],)
        done = cli(case.home, "requeue", *command, AGENTD_CRASH_AT=case.point, **self.first)
        # the operator runs both commands again after the one that died (what is left, if anything)
        case.notes["retries"] = [cli(case.home, "requeue", *c) for c in (("--failed",), (case.notes["cid"],))]
        return done.returncode, done.stderr

    def restart_env(self, case: Case) -> dict[str, str]:
        return {}  # the default size limit and review threshold: both files are archived this time

    def check(self, checks: Checks, case: Case, found: dict[str, tuple[str, dict]], before: Decided) -> None:
        super().check(checks, case, found, before)
        for retry in case.notes["retries"]:
            checks.that(retry.returncode in (0, 1) and "Traceback" not in retry.stderr,
                        "requeue run again after the kill answers plainly", retry.stderr[-800:])
        for name in ("big.txt", "note.txt"):
            checks.that(found[name][0] == "archive", f"{name} was requeued and ran again under the new config",
                        found[name][0])


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (Offline(), Model(), Waiting(), Tool(), Review(), Requeue())}
