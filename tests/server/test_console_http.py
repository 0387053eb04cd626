"""The review console over plain HTTP (aiohttp client, the real app on 127.0.0.1, a driven clock):
CSRF, roles, leases, GET never changing state, edits checked against the schema, login limits."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from agentd import config as config_mod
from agentd import workflows
from agentd.audit import AuditLog
from agentd.config import ConfigError
from agentd.server.app import make_app
from agentd.audit.redact import Redactor
from agentd.run.isolated import POOL
from agentd.server.console.app import Console, mount
from agentd.server.console.queue import stats
from tests.helpers import audit_events, sidecar_for
from tests.server.support import CONSOLE_ENV, TOKENS, review_item, snapshot, text_pdf

ENTERED = "2026-06-01T10:00:00.000Z"
T0 = datetime.fromisoformat(ENTERED.replace("Z", "+00:00")).timestamp()
CID_A = "aaaaaaaa11112222333344445555aaaa"
CID_B = "bbbbbbbb11112222333344445555bbbb"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    url: str
    home: Path
    clock: Clock
    sessions: list[aiohttp.ClientSession]

    async def login(self, user: str) -> tuple[aiohttp.ClientSession, str]:
        """A browser-like client logged in as `user`, and the CSRF token of its pages."""
        client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sessions.append(client)
        async with client.post(f"{self.url}/review/login", data={"token": TOKENS[user]}) as response:
            assert response.status == 200 and response.url.path == "/review", await response.text()
            page = await response.text()
        return client, re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


@pytest.fixture
async def served(home: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.chdir(home.parent)  # no developer .env
    config = config_mod.load(environ={"AGENTD_HOME": str(home), "REVIEW_LEASE_S": "600", "REVIEW_SLA_S": "3600",
                                      **CONSOLE_ENV})
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    audit = AuditLog(config.logs_dir, Redactor(config.secrets)).open()
    clock = Clock(T0 + 60)
    console = Console.local(lambda: config, audit, workflows.load(()), clock=clock)
    app = make_app(lambda: {"status": "ok"}, lambda: b"", lambda: "", lambda *_: {}, mount=lambda a: mount(a, console))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    review_item(home, "invoice.txt", CID_A, finished_at=ENTERED)
    review_item(home, "letter.txt", CID_B, finished_at=ENTERED, content=b"Dear Sir,\n")
    done = Served(str(server.make_url("")).rstrip("/"), home, clock, [])
    yield done
    for client in done.sessions:
        await client.close()
    await server.close()
    await POOL.close()  # a PDF preview's parser process belongs to this test's loop
    audit.close()


async def post(client: aiohttp.ClientSession, url: str, data: dict[str, Any]) -> tuple[int, str]:
    async with client.post(url, data=data, allow_redirects=False) as response:
        return response.status, await response.text()


async def test_a_post_without_the_csrf_token_is_403_and_nothing_moves(served: Served) -> None:
    client, csrf = await served.login("alice")
    before = snapshot(served.home)
    for path, data in ((f"/review/{CID_A}/decide", {"action": "approve"}),
                       (f"/review/{CID_A}/decide", {"action": "reject", "csrf": csrf[:-1] + "x"}),
                       ("/review/bulk/confirm", {"action": "reject", "ids": CID_A}),
                       ("/review/logout", {})):
        status, text = await post(client, served.url + path, data)
        assert status == 403 and "Nothing was changed" in text, path
    assert snapshot(served.home) == before and audit_events(served.home, "review_decision") == []
    status, _ = await post(client, f"{served.url}/review/{CID_A}/decide", {"action": "approve", "csrf": csrf})
    assert status == 303 and (served.home / "archive" / "invoice.txt").exists()  # the same POST with it works


async def test_a_viewer_sees_no_action_buttons_and_every_post_is_403(served: Served) -> None:
    client, csrf = await served.login("vic")
    async with client.get(f"{served.url}/review/{CID_A[:8]}") as response:
        page = await response.text()
    assert response.status == 200 and "invoice.txt" in page
    assert ">Approve<" not in page and ">Reject<" not in page and 'name="ids"' not in page
    for path, data in ((f"/review/{CID_A}/decide", {"action": "approve"}), ("/review/bulk", {"bulk": "reject-filter"}),
                       ("/review/bulk/confirm", {"action": "reject", "ids": CID_A}),
                       (f"/review/{CID_A}/release", {})):
        status, text = await post(client, served.url + path, {**data, "csrf": csrf})
        assert status == 403 and "may look but not decide" in text, path
    assert (served.home / "review" / "invoice.txt").exists() and audit_events(served.home, "review_decision") == []


async def test_an_item_leased_by_another_reviewer_is_409_until_the_lease_expires(served: Served) -> None:
    alice, _ = await served.login("alice")
    bob, bob_csrf = await served.login("bob")
    async with alice.get(f"{served.url}/review/{CID_A}") as response:
        assert "You hold this item" in await response.text()
    async with bob.get(f"{served.url}/review/{CID_A}") as response:
        assert "Held by <b>alice</b> until 2026-06-01 10:11 UTC" in await response.text()

    status, text = await post(bob, f"{served.url}/review/{CID_A}/decide", {"action": "reject", "csrf": bob_csrf})

    assert status == 409 and "alice holds this item until 2026-06-01 10:11 UTC" in text
    assert (served.home / "review" / "invoice.txt").exists() and audit_events(served.home, "review_decision") == []
    served.clock.now += 601  # the lease (REVIEW_LEASE_S=600) has run out: the item is free
    status, _ = await post(bob, f"{served.url}/review/{CID_A}/decide", {"action": "reject", "csrf": bob_csrf})
    assert status == 303 and sidecar_for(served.home, "invoice.txt")["review"]["reviewer"] == "bob"


async def test_an_admin_breaks_a_lease_and_the_break_is_audited(served: Served) -> None:
    alice, _ = await served.login("alice")
    bob, bob_csrf = await served.login("bob")
    admin, admin_csrf = await served.login("admin")
    async with alice.get(f"{served.url}/review/{CID_A}"):
        pass
    status, text = await post(bob, f"{served.url}/review/{CID_A}/release", {"csrf": bob_csrf})
    assert status == 403 and "Only an admin" in text
    async with admin.get(f"{served.url}/review/{CID_A}") as response:
        assert ">Break lease<" in await response.text()

    status, _ = await post(admin, f"{served.url}/review/{CID_A}/release", {"csrf": admin_csrf})

    assert status == 303
    [broken] = audit_events(served.home, "review_lease_broken")
    assert broken["correlation_id"] == CID_A and broken["holder"] == "alice" and broken["by"] == "admin"
    status, _ = await post(bob, f"{served.url}/review/{CID_A}/decide", {"action": "reject", "csrf": bob_csrf})
    assert status == 303 and (served.home / "failed" / "invoice.txt").exists()


async def test_get_never_changes_state(served: Served) -> None:
    (served.home / "review" / "photo.png").write_bytes(PNG)
    review_item(served.home, "photo.png", "cccccccc11112222333344445555cccc", content=PNG)
    alice, _ = await served.login("alice")
    anonymous = aiohttp.ClientSession()
    served.sessions.append(anonymous)
    before, decisions = snapshot(served.home), len(audit_events(served.home, "review_decision"))
    paths = ["/review", "/review?workflow=triage&reason=low_confidence", f"/review/{CID_A}", f"/review/{CID_A[:8]}",
             "/review/cccccccc/file", f"/review/{CID_A}/decide?action=approve", f"/review/{CID_A}/release",
             "/review/bulk?bulk=reject-filter", "/review/bulk/confirm?action=reject&ids=" + CID_A, "/review/logout",
             "/review/login"]
    for client in (alice, anonymous):
        for path in paths:
            async with client.get(served.url + path, allow_redirects=False) as response:
                assert response.status in (200, 303, 405), (path, response.status)
    assert snapshot(served.home) == before and len(audit_events(served.home, "review_decision")) == decisions
    async with alice.get(f"{served.url}/review") as response:  # still logged in: the GET /logout did nothing
        assert response.url.path == "/review" and "alice" in await response.text()


async def test_an_edit_that_fails_the_schema_moves_nothing_and_a_valid_one_is_recorded(served: Served) -> None:
    alice, csrf = await served.login("alice")
    url = f"{served.url}/review/{CID_A}/decide"

    status, page = await post(alice, url, {"csrf": csrf, "action": "approve", "confidence": "7",
                                           "document_type": "banana"})

    assert status == 422 and 'id="error-confidence"' in page and "7 is greater than the maximum of 1" in page
    assert 'id="error-document_type"' in page and 'value="banana"' in page  # the entry is kept for fixing
    assert (served.home / "review" / "invoice.txt").exists() and audit_events(served.home, "review_decision") == []
    status, page = await post(alice, url, {"csrf": csrf, "action": "approve", "confidence": "abc"})
    assert status == 422 and "must be a number" in page

    status, _ = await post(alice, url, {"csrf": csrf, "action": "approve", "party": "Acme Widgets Limited",
                                        "entities.emails.0": "billing@acme.example",
                                        "entities.emails.1": "ap@acme.example", "confidence": "0.41"})

    assert status == 303 and (served.home / "archive" / "invoice.txt").exists()
    meta = sidecar_for(served.home, "invoice.txt")
    edits = {"party": {"old": "Acme Widgets Ltd", "new": "Acme Widgets Limited"},
             "entities.emails": {"old": ["billing@acme.example"], "new": ["billing@acme.example", "ap@acme.example"]}}
    assert meta["review"]["edits"] == edits and meta["review"]["reviewer"] == "alice"
    assert meta["review"]["decision"] == "approve" and meta["review"]["at"]
    assert meta["result"]["party"] == "Acme Widgets Limited" and meta["outcome"] == "archived"
    [decision] = audit_events(served.home, "review_decision")
    assert decision["correlation_id"] == CID_A and decision["reviewer"] == "alice" and decision["edits"] == edits


async def test_a_second_decision_is_409_already_decided_by_whom_and_when(served: Served) -> None:
    alice, csrf = await served.login("alice")
    bob, bob_csrf = await served.login("bob")
    assert (await post(alice, f"{served.url}/review/{CID_A}/decide", {"csrf": csrf, "action": "reject"}))[0] == 303
    at = sidecar_for(served.home, "invoice.txt")["review"]["at"]

    status, text = await post(bob, f"{served.url}/review/{CID_A}/decide", {"csrf": bob_csrf, "action": "approve"})

    assert status == 409 and f"already decided by alice at {at}" in text
    assert len(audit_events(served.home, "review_decision")) == 1
    meta = sidecar_for(served.home, "invoice.txt")
    assert meta["reason"] == "rejected_by_reviewer" and meta["error_class"] == "policy"


async def test_failed_logins_are_rate_limited_and_audited_without_the_token(served: Served) -> None:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    served.sessions.append(client)
    for n in range(5):
        status, page = await post(client, f"{served.url}/review/login", {"token": f"guess-number-{n}"})
        assert status == 401 and "not valid" in page
    status, page = await post(client, f"{served.url}/review/login", {"token": TOKENS["alice"]})
    assert status == 429 and "Too many failed logins" in page  # even the right token, for now
    failures = audit_events(served.home, "review_login_failed")
    assert [f["failures"] for f in failures] == [1, 2, 3, 4, 5] and failures[0]["remote"] == "127.0.0.1"
    assert "guess-number" not in (served.home / "logs" / "audit.jsonl").read_text()
    async with client.post(f"{served.url}/review/login", data={"token": TOKENS["alice"]},
                           headers={"X-Forwarded-For": "203.0.113.9"}, allow_redirects=False) as response:
        assert response.status == 303  # another browser behind the same (loopback) proxy is not locked out
    served.clock.now += 301
    status, _ = await post(client, f"{served.url}/review/login", {"token": TOKENS["alice"]})
    assert status == 303
    logins = audit_events(served.home, "review_login")
    assert [(e["reviewer"], e["role"], e["remote"]) for e in logins] == [
        ("alice", "reviewer", "203.0.113.9"), ("alice", "reviewer", "127.0.0.1")]
    assert TOKENS["alice"] not in (served.home / "logs" / "audit.jsonl").read_text()


async def test_the_session_cookie_is_httponly_strict_and_secure_only_behind_https(served: Served) -> None:
    async with aiohttp.ClientSession() as client:
        for headers, secure in (({}, False), ({"X-Forwarded-Proto": "https"}, True)):
            async with client.post(f"{served.url}/review/login", data={"token": TOKENS["bob"]}, headers=headers,
                                   allow_redirects=False) as response:
                cookie = response.headers["Set-Cookie"]
            assert response.status == 303 and response.headers["Location"] == "/review"
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ("Secure" in cookie) is secure


async def test_a_logged_out_session_is_refused(served: Served) -> None:
    alice, csrf = await served.login("alice")
    status, _ = await post(alice, f"{served.url}/review/logout", {"csrf": csrf})
    assert status == 303
    async with alice.get(f"{served.url}/review", allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/review/login"
    status, _ = await post(alice, f"{served.url}/review/{CID_A}/decide", {"csrf": csrf, "action": "reject"})
    assert status == 403 and (served.home / "review" / "invoice.txt").exists()


async def test_the_file_route_serves_only_a_sniffed_image_and_every_page_has_a_strict_csp(served: Served) -> None:
    review_item(served.home, "scan.jpg", "dddddddd11112222333344445555dddd", content=PNG)  # a PNG named .jpg
    review_item(served.home, "page.png", "eeeeeeee11112222333344445555eeee", content=b"<svg onload=alert(1)>")
    alice, _ = await served.login("alice")
    async with alice.get(f"{served.url}/review/dddddddd/file") as response:
        assert response.status == 200 and response.headers["Content-Type"] == "image/png"
        assert response.headers["X-Content-Type-Options"] == "nosniff" and await response.read() == PNG
    async with alice.get(f"{served.url}/review/eeeeeeee/file") as response:
        assert response.status == 415
    async with alice.get(f"{served.url}/review/eeeeeeee") as response:
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "&lt;svg onload" in await response.text()


async def test_a_pdf_is_previewed_as_its_text_and_an_image_inline_from_its_own_route(served: Served) -> None:
    review_item(served.home, "scan.pdf", "ffffffff11112222333344445555ffff", content=text_pdf("Invoice 4410 <b>bold</b>"))
    review_item(served.home, "photo.png", "9999999911112222333344445555ffff", content=PNG)
    alice, _ = await served.login("alice")
    async with alice.get(f"{served.url}/review/ffffffff") as response:
        page = await response.text()
    assert "text extracted from a PDF of 1 pages" in page
    assert re.search(r'<pre class="preview" id="preview">Invoice 4410 &lt;b&gt;bold&lt;/b&gt;', page)
    async with alice.get(f"{served.url}/review/99999999") as response:
        page = await response.text()
    assert '<img class="preview" src="/review/9999999911112222333344445555ffff/file"' in page and "<pre" not in page


async def test_choose_links_the_candidate_and_approve_without_a_choice_moves_nothing(served: Served) -> None:
    candidates = [{"id": "c-100", "name": "Acme Widgets Ltd", "email": "billing@acme.example"},
                  {"id": "c-200", "name": "ACME Widgets Limited", "email": "ap@acme-uk.example"}]
    cid = "12341234aaaabbbbccccddddeeeeffff"
    review_item(served.home, "acme.txt", cid, reason="ambiguous_party", candidates=candidates)
    alice, csrf = await served.login("alice")
    async with alice.get(f"{served.url}/review/{cid}") as response:
        page = await response.text()
    assert page.count(">Choose</button>") == 2 and "ACME Widgets Limited" in page

    status, page = await post(alice, f"{served.url}/review/{cid}/decide", {"csrf": csrf, "action": "approve"})

    assert status == 400 and "Choose one of the 2 candidates" in page
    assert (served.home / "review" / "acme.txt").exists()
    status, _ = await post(alice, f"{served.url}/review/{cid}/decide", {"csrf": csrf, "choice": "2"})
    assert status == 303
    meta = sidecar_for(served.home, "acme.txt")
    assert meta["result"]["party_link"]["id"] == "c-200" and meta["result"]["party_link"]["chosen_by"] == "alice"
    assert meta["review"]["choice"] == 2 and meta["review"]["was"] == "ambiguous_party"


async def test_items_past_the_sla_are_overdue_in_the_queue_and_the_gauges(served: Served) -> None:
    alice, _ = await served.login("alice")
    async with alice.get(f"{served.url}/review") as response:
        page = await response.text()
    assert '<b id="count-overdue">0</b>' in page and "overdue</span>" not in page
    assert stats(served.home, 3600, served.clock()) == {"depth": 2, "oldest_age_s": 60.0, "overdue": 0}

    served.clock.now = T0 + 3601  # REVIEW_SLA_S=3600 after entering review/

    async with alice.get(f"{served.url}/review") as response:
        page = await response.text()
    assert '<b id="count-overdue">2</b>' in page and page.count('<span class="tag bad">overdue</span>') == 2
    assert stats(served.home, 3600, served.clock())["overdue"] == 2


async def test_bulk_reject_shows_how_many_and_which_before_anything_moves(served: Served) -> None:
    alice, csrf = await served.login("alice")
    status, page = await post(alice, f"{served.url}/review/bulk", {"csrf": csrf, "bulk": "reject-selected",
                                                                   "ids": CID_B})
    assert status == 200 and "Reject 1 item?" in page and "letter.txt" in page and "invoice.txt" not in page
    assert (served.home / "review" / "letter.txt").exists()
    form = aiohttp.FormData([("csrf", csrf), ("action", "reject"), ("ids", CID_B), ("reason", "duplicate")])
    async with alice.post(f"{served.url}/review/bulk/confirm", data=form) as response:
        assert response.status == 200 and "Rejected 1" in await response.text()
    meta = sidecar_for(served.home, "letter.txt")
    assert meta["outcome"] == "failed" and meta["reason"] == "rejected_by_reviewer" and meta["detail"] == "duplicate"
    assert (served.home / "review" / "invoice.txt").exists()


def test_console_tokens_are_secrets_but_the_names_are_not(home: Path) -> None:
    config = config_mod.load(environ={"AGENTD_HOME": str(home), **CONSOLE_ENV})
    assert config.reviewer_tokens == (("alice", "alice-secret-1"), ("bob", "bob-secret-22"))
    redact = Redactor(config.secrets)
    line = json.dumps({"reviewer": "alice", "token": "bob-secret-22", "viewer": "vic", "t": "viewer-secret-3"})
    assert json.loads(redact(line)) == {"reviewer": "alice", "token": "[REDACTED]", "viewer": "vic",
                                        "t": "[REDACTED]"}
    assert {"alice-secret-1", "bob-secret-22", "viewer-secret-3"} <= set(config.secrets)
    assert not {"alice", "bob", "vic"} & set(config.secrets)


@pytest.mark.parametrize("variable, value, problem", [
    ("REVIEWER_TOKENS", "alice", "entry 1 must be name:token"),
    ("REVIEWER_TOKENS", "alice:short", "at least 8 characters"),
    ("VIEWER_TOKENS", "a:12345678,a:abcdefgh", "listed twice"),
    ("REVIEW_LEASE_S", "soon", "must be a number"),
    ("REVIEW_SLA_S", "0", "must be a number"),
])
def test_a_bad_console_setting_names_the_variable(home: Path, variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.load(environ={"AGENTD_HOME": str(home), variable: value})
    assert caught.value.variable == variable and problem in str(caught.value)
    if "TOKENS" in variable:
        assert "short" not in str(caught.value) and "12345678" not in str(caught.value)
