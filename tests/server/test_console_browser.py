"""The review console in a real headless Chromium (selenium, the system chromedriver) against the
real daemon: log in, the queue, an item, edits checked against the schema, leases, a viewer,
bulk reject of a filter, CSRF, and a hostile HTML file previewed inert. One browser per module.

Screenshots of the queue and an item page go to docs/ when AGENTD_SCREENSHOTS=docs (else tmp)."""
from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import ROOT, AgentdProcess, audit_events, base_env, cli, sidecar_for, wait_until
from tests.server.support import CONSOLE_ENV, MEMO_WORKFLOW, TOKENS

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extras: pip install -e '.[test]'")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("needs the Debian packages chromium and chromium-driver (scripts/test-deps installs them as root)",
                allow_module_level=True)

from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,  # noqa: E402
                                        WebDriverException)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

INVOICE = ("INVOICE 2291\nAcme Widgets Ltd, 12 Mill Road\nBill to: Nordwind GmbH\n"
           "Amount due: $1,240.00 by 2026-07-01.\nQuestions: billing@acme-widgets.example\n")
LETTER = "Dear Ms Brandt,\nplease review the attached lease renewal and let me know.\nKind regards,\nJonas Weber\n"
EVIL = ("<!doctype html><html><head><title>Quarterly report</title>"
        "<script>document.title='PWNED'; document.documentElement.setAttribute('data-pwned', '1')</script></head>"
        "<body><h1>Report</h1><img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"
        "<p>Quarterly findings attached.</p></body></html>")


@pytest.fixture(scope="module")
def agentd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentdProcess]:
    root = tmp_path_factory.mktemp("console")
    home = root / "var"
    home.mkdir()
    (root / "memo.py").write_text(MEMO_WORKFLOW)
    env = base_env(home, AGENTD_REVIEW_CONFIDENCE="0.99", AGENTD_WORKFLOWS=str(root / "memo.py"), **CONSOLE_ENV)
    proc = AgentdProcess(home, env).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def drop(agentd: AgentdProcess, name: str, text: str, workflow: str = "") -> str:
    """Drop a file; return its correlation id once it waits in review/."""
    folder = agentd.home / "incoming" / workflow if workflow else agentd.home / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f".{name}.tmp").write_text(text)
    os.rename(folder / f".{name}.tmp", folder / name)
    meta = wait_until(lambda: sidecar_for(agentd.home, name), timeout=20, message=f"{name} in review/")
    assert meta["outcome"] == "review", meta
    return meta["correlation_id"]


def login(driver: webdriver.Chrome, agentd: AgentdProcess, user: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{agentd.url}/review/login")
    driver.find_element(By.NAME, "token").send_keys(TOKENS[user])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(driver, lambda d: urllib.parse.urlparse(d.current_url).path == "/review")


REPLACED = "does not belong to the document"  # Chromium's word for a stale element, at times


def until(driver: webdriver.Chrome, predicate):  # type: ignore[no-untyped-def]
    """Wait for `predicate(driver)`; a page being replaced under it is retried, not an error."""
    def attempt(d: webdriver.Chrome):  # type: ignore[no-untyped-def]
        try:
            return predicate(d)
        except WebDriverException as exc:
            if REPLACED not in (exc.msg or ""):
                raise
            return False

    return WebDriverWait(driver, 10, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(attempt)


def button(driver: webdriver.Chrome, name: str):  # type: ignore[no-untyped-def]
    return driver.find_element(By.XPATH, f"//button[normalize-space()='{name}']")


def buttons(driver: webdriver.Chrome, name: str) -> list:
    return driver.find_elements(By.XPATH, f"//button[normalize-space()='{name}']")


def screenshot(driver: webdriver.Chrome, name: str, tmp_path: Path) -> Path:
    """The whole page (not only the window) as a PNG."""
    import base64

    folder = ROOT / "docs" if os.environ.get("AGENTD_SCREENSHOTS") == "docs" else tmp_path
    height = driver.execute_script("return document.querySelector('main').getBoundingClientRect().bottom")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": min(max(int(height) + 8, 300), 2400), "deviceScaleFactor": 1, "mobile": False})
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path = folder / name
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000
    return path


def test_a_reviewer_logs_in_sees_the_queue_and_opens_an_item(browser: webdriver.Chrome, agentd: AgentdProcess,
                                                             tmp_path: Path) -> None:
    invoice = drop(agentd, "invoice-2291.txt", INVOICE)
    drop(agentd, "lease-renewal.txt", LETTER)
    drop(agentd, "q3-price-change.txt", "Memo: prices rise 4% from October.\n", workflow="memo")

    login(browser, agentd, "alice")

    row_link = browser.find_element(By.CSS_SELECTOR, f"a[href='/review/{invoice}']")
    assert row_link.text == "invoice-2291.txt"
    assert browser.find_element(By.ID, "count-waiting").text == "3"
    cells = [td.text for td in row_link.find_element(By.XPATH, "./ancestor::tr").find_elements(By.TAG_NAME, "td")]
    meta = sidecar_for(agentd.home, "invoice-2291.txt")
    assert cells[2:5] == ["triage", "low_confidence", f"{meta['confidence']:.2f}"]
    screenshot(browser, "review-queue.png", tmp_path)
    row_link.click()
    until(browser, lambda d: urllib.parse.urlparse(d.current_url).path == f"/review/{invoice}")
    assert "INVOICE 2291" in browser.find_element(By.ID, "preview").text
    assert browser.find_element(By.NAME, "party").get_attribute("value") == "Acme Widgets Ltd"
    assert browser.find_element(By.NAME, "entities.emails.0").get_attribute("value") == "billing@acme-widgets.example"
    assert buttons(browser, "Approve") and buttons(browser, "Reject")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.trace tbody tr")
    events = [tr.find_elements(By.TAG_NAME, "td")[1].text for tr in rows]
    assert [e for e in events if e != "step"] == ["claimed", "llm_call", "outcome"] and events.count("step") == 3
    call = browser.find_element(By.CSS_SELECTOR, "table.trace tr.ev-llm_call").text
    assert "model offline-rules" in call and "tokens_in" in call and "latency_ms" in call and "cost_usd" in call
    screenshot(browser, "review-item.png", tmp_path)


def test_approve_with_an_edit_that_fails_the_schema_then_with_a_valid_one(browser: webdriver.Chrome,
                                                                          agentd: AgentdProcess) -> None:
    cid = drop(agentd, "invoice-3301.txt", INVOICE.replace("2291", "3301"))
    old_confidence = sidecar_for(agentd.home, "invoice-3301.txt")["result"]["confidence"]
    login(browser, agentd, "alice")
    browser.get(f"{agentd.url}/review/{cid[:8]}")
    confidence = browser.find_element(By.NAME, "confidence")
    confidence.clear()
    confidence.send_keys("1.5")

    button(browser, "Approve").click()

    until(browser, lambda d: d.find_elements(By.ID, "error-confidence"))
    assert "1.5 is greater than the maximum of 1" in browser.find_element(By.ID, "error-confidence").text
    assert (agentd.home / "review" / "invoice-3301.txt").exists()
    assert not [e for e in audit_events(agentd.home, "review_decision") if e["correlation_id"] == cid]
    confidence = browser.find_element(By.NAME, "confidence")
    confidence.clear()
    confidence.send_keys("0.5")
    party = browser.find_element(By.NAME, "party")
    party.clear()
    party.send_keys("Acme Widgets Limited")

    button(browser, "Approve").click()

    until(browser, lambda d: "Approved invoice-3301.txt" in d.page_source)
    assert (agentd.home / "archive" / "invoice-3301.txt").exists()
    meta = sidecar_for(agentd.home, "invoice-3301.txt")
    assert meta["outcome"] == "archived" and meta["result"]["party"] == "Acme Widgets Limited"
    assert meta["review"]["reviewer"] == "alice" and meta["review"]["decision"] == "approve"
    assert meta["review"]["edits"] == {"party": {"old": "Acme Widgets Ltd", "new": "Acme Widgets Limited"},
                                       "confidence": {"old": old_confidence, "new": 0.5}}
    [line] = [e for e in audit_events(agentd.home, "review_decision") if e["correlation_id"] == cid]
    assert line["reviewer"] == "alice" and line["decision"] == "approve" and line["edits"] == meta["review"]["edits"]
    verified = cli(agentd.home, "audit", "verify", env=agentd.env)
    assert verified.returncode == 0, verified.stdout


def test_a_second_reviewer_sees_the_lease_and_cannot_decide(browser: webdriver.Chrome, agentd: AgentdProcess) -> None:
    cid = drop(agentd, "contract-77.txt", "Service agreement between Acme Widgets Ltd and Nordwind GmbH.\n")
    login(browser, agentd, "alice")
    browser.get(f"{agentd.url}/review/{cid}")
    assert "You hold this item" in browser.find_element(By.ID, "lease").text
    login(browser, agentd, "bob")
    browser.get(f"{agentd.url}/review/{cid}")

    assert "Held by alice until" in browser.find_element(By.ID, "lease").text
    button(browser, "Reject").click()

    until(browser, lambda d: "alice holds this item until" in d.page_source)
    assert (agentd.home / "review" / "contract-77.txt").exists()
    browser.get(f"{agentd.url}/review")
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-id='{cid}']")
    assert "alice" in row.find_elements(By.TAG_NAME, "td")[-1].text


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_403(browser: webdriver.Chrome, agentd: AgentdProcess) -> None:
    cid = drop(agentd, "receipt-9.txt", "Receipt: thank you for your purchase. Paid with card, $12.00.\n")
    login(browser, agentd, "vic")
    browser.get(f"{agentd.url}/review/{cid}")
    assert "receipt-9.txt" in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.find_elements(By.TAG_NAME, "button") == []  # no action of any kind; Log out is an input
    assert browser.find_elements(By.CSS_SELECTOR, "input[type=submit][value='Log out']")
    browser.get(f"{agentd.url}/review")
    assert not browser.find_elements(By.NAME, "ids") and not buttons(browser, "Reject selected")
    csrf = browser.find_element(By.NAME, "csrf").get_attribute("value")
    cookie = browser.get_cookie("agentd_review")["value"]  # type: ignore[index]

    status, body = agentd.request("POST", f"/review/{cid}/decide", body=urllib.parse.urlencode(
        {"csrf": csrf, "action": "approve"}).encode(), headers={"Cookie": f"agentd_review={cookie}",
                                                               "Content-Type": "application/x-www-form-urlencoded"})

    assert status == 403 and b"may look but not decide" in body
    assert (agentd.home / "review" / "receipt-9.txt").exists()


def test_bulk_reject_of_a_filter(browser: webdriver.Chrome, agentd: AgentdProcess) -> None:
    memos = [drop(agentd, f"memo-{n}.txt", f"Memo {n}: the office is closed on Friday.\n", workflow="memo")
             for n in (1, 2)]
    login(browser, agentd, "alice")
    browser.get(f"{agentd.url}/review?workflow=memo")
    waiting = {tr.get_attribute("data-id") for tr in browser.find_elements(By.CSS_SELECTOR, "table.queue tbody tr")}
    assert set(memos) <= waiting and all(sidecar_for(agentd.home, n)["workflow"] == "memo" for n in ("memo-1.txt",))
    triage_before = [m for m in (json.loads(p.read_text()) for p in (agentd.home / "review").glob("*.meta.json"))
                     if m["workflow"] == "triage"]

    browser.find_element(By.XPATH, "//button[starts-with(normalize-space(), 'Reject all')]").click()
    until(browser, lambda d: d.find_elements(By.ID, "bulk-items"))

    assert browser.find_element(By.TAG_NAME, "h1").text == f"Reject {len(waiting)} items?"
    listed = browser.find_element(By.ID, "bulk-items").text
    assert "memo-1.txt" in listed and "memo-2.txt" in listed and "invoice" not in listed
    assert (agentd.home / "review" / "memo-1.txt").exists()  # nothing moves before the confirmation
    browser.find_element(By.NAME, "reason").send_keys("old memos")
    button(browser, f"Confirm: reject {len(waiting)}").click()

    until(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == f"Rejected {len(waiting)}")
    for name in ("memo-1.txt", "memo-2.txt", "q3-price-change.txt"):
        meta = sidecar_for(agentd.home, name)
        assert meta["outcome"] == "failed" and meta["reason"] == "rejected_by_reviewer", name
        assert meta["error_class"] == "policy" and meta["review"]["note"] == "old memos"
    assert all((agentd.home / "review" / m["original_name"]).exists() for m in triage_before)


def test_a_post_without_its_csrf_token_is_refused(browser: webdriver.Chrome, agentd: AgentdProcess) -> None:
    cid = drop(agentd, "order-5.txt", "Purchase order 5: please ship 10 units.\n")
    login(browser, agentd, "alice")
    browser.get(f"{agentd.url}/review/{cid}")
    browser.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")

    button(browser, "Reject").click()

    until(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Refused")
    assert "Nothing was changed" in browser.page_source
    assert (agentd.home / "review" / "order-5.txt").exists()
    assert not [e for e in audit_events(agentd.home, "review_decision") if e["correlation_id"] == cid]


def test_a_dropped_html_file_with_a_script_is_previewed_inert(browser: webdriver.Chrome, agentd: AgentdProcess) -> None:
    cid = drop(agentd, "report.html", EVIL)
    login(browser, agentd, "alice")

    browser.get(f"{agentd.url}/review/{cid}")

    preview = browser.find_element(By.ID, "preview")
    assert "<script>document.title='PWNED'" in preview.text and "onerror=" in preview.text
    assert browser.title == "report.html · agentd"
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.CSS_SELECTOR, "img[src=x]") == []
    assert browser.execute_script("return document.documentElement.getAttribute('data-pwned') || "
                                  "document.body.getAttribute('data-pwned')") is None
    with pytest.raises(NoSuchElementException):
        browser.find_element(By.CSS_SELECTOR, "img.preview")
    status, _ = agentd.request("GET", f"/review/{cid}/file",
                               headers={"Cookie": f"agentd_review={browser.get_cookie('agentd_review')['value']}"})
    assert status == 415  # the file route never serves it
