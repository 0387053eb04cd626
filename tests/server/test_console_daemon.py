"""The console's deadlines seen from outside the real daemon: /metrics review gauges and
`agentd status` counting what is overdue; the console answers on the daemon's own listener."""
from __future__ import annotations

import http.client
import json
import re
import signal
from pathlib import Path
from typing import Callable

from tests.helpers import AgentdProcess, audit_events, base_env, cli, sidecar_for, wait_until
from tests.server.support import CONSOLE_ENV


def gauges(proc: AgentdProcess) -> dict[str, float]:
    status, body = proc.request("GET", "/metrics")
    assert status == 200
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(agentd_review_\w+) (\S+)$", body.decode(), re.M)}


def test_review_gauges_and_status_show_the_queue_and_what_is_overdue(home: Path,
                                                                     daemon: Callable[..., AgentdProcess]) -> None:
    proc = daemon(AGENTD_REVIEW_CONFIDENCE="0.99", REVIEW_SLA_S="5", **CONSOLE_ENV)
    assert gauges(proc) == {"agentd_review_queue_depth": 0, "agentd_review_oldest_age_seconds": 0,
                            "agentd_review_overdue": 0}
    (home / "incoming" / "note.txt").write_text("A short note about nothing much.\n")
    wait_until(lambda: sidecar_for(home, "note.txt"), timeout=20, message="note.txt in review/")
    # the gauges are counted in a thread every 2 s (never on a scrape)
    first = wait_until(lambda: (g := gauges(proc))["agentd_review_queue_depth"] == 1 and g, timeout=10,
                       message="the item in the queue gauge")
    assert first["agentd_review_overdue"] == 0

    # REVIEW_SLA_S=5: the item becomes overdue as its age passes five seconds
    later = wait_until(lambda: (g := gauges(proc))["agentd_review_overdue"] == 1 and g, timeout=15,
                       message="the item overdue in /metrics")

    assert later["agentd_review_oldest_age_seconds"] >= 5 and later["agentd_review_queue_depth"] == 1
    status = cli(home, "status", "--json", REVIEW_SLA_S="5")
    assert json.loads(status.stdout)["review_overdue"] == 1
    text = cli(home, "status", REVIEW_SLA_S="5").stdout
    assert re.search(r"review\s+1\s+1 overdue", text), text
    login_status, page = proc.request("GET", "/review/login")
    assert login_status == 200 and b'name="token"' in page


def call(proc: AgentdProcess, method: str, path: str, body: str = "", cookie: str = "") -> tuple[int, str, str]:
    """(status, Location, the session cookie set) of one request; redirects are not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", int(proc.env["HEALTH_PORT"]), timeout=5)
    headers = {"Content-Type": "application/x-www-form-urlencoded", **({"Cookie": cookie} if cookie else {})}
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        response.read()
        cookie_set = (response.getheader("Set-Cookie") or "").split(";")[0]
        return response.status, response.getheader("Location") or "", cookie_set
    finally:
        connection.close()


def login_status(proc: AgentdProcess, token: str) -> int:
    status, _, cookie = call(proc, "POST", "/review/login", f"token={token}")
    assert (status == 303) == cookie.startswith("agentd_review=")
    return status


def test_sighup_changes_who_may_log_in_and_tokens_never_reach_the_logs(home: Path) -> None:
    env_file = home.parent / "agentd.env"
    env_file.write_text("REVIEWER_TOKENS=alice:alice-token-old1\n")
    proc = AgentdProcess(home, base_env(home), args=("--env-file", str(env_file))).start()
    try:
        status, _, alice = call(proc, "POST", "/review/login", "token=alice-token-old1")
        assert status == 303 and call(proc, "GET", "/review", cookie=alice)[0] == 200
        env_file.write_text("REVIEWER_TOKENS=dave:dave-token-new22\n")

        proc.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

        wait_until(lambda: audit_events(home, "config_reloaded"), timeout=10, message="the reload")
        assert login_status(proc, "dave-token-new22") == 303
        assert login_status(proc, "alice-token-old1") == 401
        assert call(proc, "GET", "/review", cookie=alice)[:2] == (303, "/review/login")  # her session ended too
        audit = (home / "logs" / "audit.jsonl").read_text()
        assert "review_login_failed" in audit and '"reviewer":"dave"' in audit
        for token in ("alice-token-old1", "dave-token-new22"):
            assert token not in audit and token not in proc.output()
    finally:
        proc.kill()


def test_an_item_entering_review_is_announced_once_with_a_link_that_only_shows_it(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    from tests.tools.webhook import Webhook

    with Webhook() as hook:
        proc = daemon(AGENTD_REVIEW_CONFIDENCE="0.99", NOTIFY_WEBHOOK_URL=hook.url,
                      REVIEW_BASE_URL="https://review.example.com", **CONSOLE_ENV)
        (home / "incoming" / "note.txt").write_text("A short note about nothing much.\n")
        cid = wait_until(lambda: sidecar_for(home, "note.txt"), timeout=20, message="in review/")["correlation_id"]

        wait_until(lambda: hook.deliveries, timeout=10, message="the webhook delivery")
        (home / "incoming" / "probe.txt").write_text("Another note, to show a later tick ran.\n")
        wait_until(lambda: len(hook.deliveries) == 2, timeout=15, message="the second item's delivery")

        first = hook.deliveries[0]
        assert first.body["url"] == f"https://review.example.com/review/{cid}"
        assert first.body["correlation_id"] == cid and first.body["reason"] == "low_confidence"
        assert first.headers["Idempotency-Key"] == f"review-{cid}"
        assert [d.body["correlation_id"] for d in hook.deliveries].count(cid) == 1  # once, not every tick
        status, page = proc.request("GET", f"/review/{cid}")  # the link without a session: the login page
        assert status == 200 and b'name="token"' in page and (home / "review" / "note.txt").exists()


def test_a_webhook_url_set_by_a_reload_announces_what_waits_in_review(home: Path) -> None:
    from tests.tools.webhook import Webhook

    env_file = home.parent / "agentd.env"
    env_file.write_text("AGENTD_REVIEW_CONFIDENCE=0.99\n")
    with Webhook() as hook:
        proc = AgentdProcess(home, base_env(home), args=("--env-file", str(env_file))).start()
        try:
            (home / "incoming" / "note.txt").write_text("A short note about nothing much.\n")
            cid = wait_until(lambda: sidecar_for(home, "note.txt"), timeout=20, message="in review/")["correlation_id"]
            env_file.write_text(f"AGENTD_REVIEW_CONFIDENCE=0.99\nNOTIFY_WEBHOOK_URL={hook.url}\n")

            proc.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

            wait_until(lambda: hook.deliveries, timeout=15, message="the delivery after the reload (within 10 s)")
            assert [d.body["correlation_id"] for d in hook.deliveries] == [cid]
        finally:
            proc.kill()


def test_check_config_names_the_console_users_but_not_their_tokens(home: Path) -> None:
    shown = cli(home, "check-config", **CONSOLE_ENV)
    assert shown.returncode == 0, shown.stderr
    assert "REVIEWER_TOKENS=(set: alice, bob)" in shown.stdout and "VIEWER_TOKENS=(set: vic)" in shown.stdout
    assert "REVIEW_LEASE_S=600.0" in shown.stdout and "secret" not in shown.stdout
    bad = cli(home, "check-config", REVIEWER_TOKENS="alice:short")
    assert bad.returncode == 78 and "REVIEWER_TOKENS" in bad.stderr and "short" not in bad.stderr


def test_the_console_bench_runs_and_prints_its_figures(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import ROOT

    done = subprocess.run([sys.executable, str(ROOT / "bench" / "review_console.py"), "--items", "5", "--rounds", "2"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    figures = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert figures["review items"].strip() == "5"
    assert all(figures[k].strip().endswith("ms") or "ms per" in figures[k] for k in (
        "queue page (median)", "item page (median)", "review gauges"))
