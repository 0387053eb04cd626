"""Redaction removes secrets and nothing else: both ways, in logs, audit lines, sidecars and the CLI."""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Callable

import pytest

from agentd import config as config_mod
from agentd import logs
from agentd.audit import AuditLog
from agentd.audit.redact import MASK, Redactor
from agentd.spool.layout import claim_name, new_correlation_id
from tests.fakewire import Seen, default_answer
from tests.helpers import AgentdProcess, audit_events, base_env, cli, sidecar_for, wait_until

ADMIN = "adm-canary-5f1e9d77"
API_KEY = "sk-canaryKEY0123456789abcd"
NOT_SECRETS = {"LLM_MAX_OUTPUT_TOKENS": "2048", "AGENT_MAX_TOOL_CALLS": "8", "REVIEW_LEASE_S": "600",
               "SOME_FLAG_TOKEN": "true", "CACHE_KEY_TTL": "30s", "MAX_COST_PER_RUN": "0.50"}


def _config(home: Path, **extra: str) -> config_mod.Config:
    return config_mod.load(environ=base_env(home, ADMIN_TOKEN=ADMIN, **NOT_SECRETS, **extra))


def test_only_values_that_look_like_secrets_are_secrets(home: Path) -> None:
    config = _config(home, REVIEWER_TOKENS="alice:rev-tok-aaaa1111,bob:rev-tok-bbbb2222")
    assert ADMIN in config.secrets and "rev-tok-aaaa1111" in config.secrets
    for value in NOT_SECRETS.values():
        assert value not in config.secrets
    assert "alice" not in config.secrets  # the reviewer's name is not the secret, the token is


def test_a_record_loses_the_secret_and_keeps_numbers_amounts_and_names(home: Path) -> None:
    redact = Redactor(_config(home).secrets)
    record = redact({"original_name": "invoice-2048.pdf", "file": "invoice-2048.pdf", "tokens_out": 2048,
                     "detail": f"401 from model with token {ADMIN}; asked for 2048 tokens, amount 2048.00 EUR",
                     "result": {"summary": f"pay 2048.00 EUR, ref {ADMIN}", "amounts": ["2048.00 EUR"]}})
    assert ADMIN not in json.dumps(record)
    assert record["detail"] == f"401 from model with token {MASK}; asked for 2048 tokens, amount 2048.00 EUR"
    assert record["result"] == {"summary": f"pay 2048.00 EUR, ref {MASK}", "amounts": ["2048.00 EUR"]}
    assert (record["original_name"], record["file"], record["tokens_out"]) == ("invoice-2048.pdf",) * 2 + (2048,)


def test_state_fields_are_never_rewritten_even_when_they_hold_a_secret(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "logs", Redactor([ADMIN])).open()
    log.append("claimed", correlation_id="c" * 32, original_name=f"scan-{ADMIN}.pdf", note=f"from {ADMIN}")
    log.flush_now()
    record = json.loads(log.path.read_text().splitlines()[-1])
    assert record["original_name"] == f"scan-{ADMIN}.pdf"  # recovery renames to exactly this
    assert record["note"] == f"from {MASK}"


def test_a_daemon_run_keeps_2048_everywhere_and_the_secret_nowhere(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon(ADMIN_TOKEN=ADMIN, LLM_MAX_OUTPUT_TOKENS="2048")
    (home / "incoming" / "invoice-2048.txt").write_text(f"Invoice 2048\nAmount due: 2048.00 EUR\nref {ADMIN}\n")
    meta = wait_until(lambda: sidecar_for(home, "invoice-2048.txt"))
    agent.stop()
    assert (home / "archive" / "invoice-2048.txt").exists()
    assert meta["original_name"] == "invoice-2048.txt" and "2048.00 EUR" in meta["result"]["entities"]["amounts"]
    assert [r["file"] for r in audit_events(home, "outcome")] == ["invoice-2048.txt"]
    assert [r["original_name"] for r in audit_events(home, "claimed")] == ["invoice-2048.txt"]
    everything = agent.output() + "".join(p.read_text() for p in home.rglob("*.json*"))
    assert ADMIN not in everything and "[REDACTED].txt" not in everything and "-[REDACTED]" not in everything


def test_recovery_puts_a_file_back_under_its_name_not_a_redacted_one(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a crash right after a claim: the file in processing/ and its claimed line, whose
    # name holds both a number that is not a secret and a value that is one
    name = f"report-2048-{ADMIN}.txt"
    cid = new_correlation_id()
    (home / "processing").mkdir()
    (home / "processing" / claim_name(cid, "triage")).write_text("Report 2048, no action needed.")
    log = AuditLog(home / "logs", Redactor([ADMIN])).open()
    log.append("claimed", correlation_id=cid, workflow="triage", original_name=name, size=30, kind="file")
    log.flush_now()
    log.close()
    # When the daemon starts and recovers it
    agent = daemon(ADMIN_TOKEN=ADMIN, LLM_MAX_OUTPUT_TOKENS="2048")
    wait_until(lambda: sidecar_for(home, name), message="the recovered file finished")
    # Then it is finished under its own name, and the secret is still absent from the logs
    finished = [p.name for p in (home / "archive").iterdir()] + [p.name for p in (home / "review").iterdir()]
    assert name in finished
    assert ADMIN not in agent.output()


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_tracebacks_are_rendered_then_redacted(log_format: str) -> None:
    stream = io.StringIO()
    logs.configure(log_format, "info", Redactor([ADMIN]), stream=stream)

    def failing_step() -> None:
        raise RuntimeError(f"model said 401 for {ADMIN} after 2048 tokens")

    try:
        failing_step()
    except RuntimeError:
        logs.get().exception("step_crashed", step="extract")
    try:
        raise ValueError(f"library error with {ADMIN}")
    except ValueError:
        logging.getLogger("aiohttp.client").exception("request failed")
    text = stream.getvalue()
    assert ADMIN not in text
    assert text.count("Traceback (most recent call last)") == 2 and "in failing_step" in text
    assert f"model said 401 for {MASK} after 2048 tokens" in text and '"exc_info": true' not in text
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["event"] == "step_crashed" and "failing_step" in lines[0]["exception"]


def test_urls_in_log_lines_lose_their_credentials_only() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", Redactor(), stream=stream)
    logs.get().warning("webhook_failed", url="https://bot:pa55word-x@127.0.0.1:9/hook?sig=abcdef123&id=2048",
                       error="POST http://u:p4ss@127.0.0.1:9/v1?access_token=zzzz9999 failed")
    line = json.loads(stream.getvalue())
    assert line["url"] == f"https://{MASK}@127.0.0.1:9/hook?sig={MASK}&id=2048"
    assert line["error"] == f"POST http://{MASK}@127.0.0.1:9/v1?access_token={MASK} failed"


def test_check_config_masks_url_credentials_and_prints_numbers(home: Path) -> None:
    result = cli(home, "check-config", LLM_BASE_URL="https://alice:hunter2pw@127.0.0.1:9/v1?api_key=q-key-777&m=x",
                 NOTIFY_WEBHOOK_URL="http://hook:w3bh00k-pw@127.0.0.1:9/in", LLM_MAX_OUTPUT_TOKENS="2048",
                 ADMIN_TOKEN=ADMIN, LLM_API_KEY=API_KEY, AUDIT_HMAC_KEY="hmac-canary-0101")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for secret in ("hunter2pw", "q-key-777", "w3bh00k-pw", ADMIN, API_KEY, "hmac-canary-0101", "alice"):
        assert secret not in out
    assert f"LLM_BASE_URL=https://{MASK}@127.0.0.1:9/v1?api_key={MASK}&m=x" in out
    assert f"NOTIFY_WEBHOOK_URL=http://{MASK}@127.0.0.1:9/in" in out
    assert "LLM_MAX_OUTPUT_TOKENS=2048" in out and "AUDIT_HMAC_KEY=(set)" in out


def test_a_bad_url_is_named_without_its_credentials(home: Path) -> None:
    result = cli(home, "check-config", LLM_BASE_URL="ftp://bob:s3cret-pw@127.0.0.1/v1")
    assert result.returncode == 78
    assert "LLM_BASE_URL" in result.stderr and "s3cret-pw" not in result.stderr and "127.0.0.1/v1" in result.stderr


def _every_rule(value: str) -> str:
    """What the shapes do to a string when every rule is applied, with no quick check first."""
    from agentd.audit.redact import RULES, URL_RULES
    for pattern, replacement in RULES + URL_RULES:
        value = pattern.sub(replacement, value)
    return value


SHAPES = ["Bearer abcdefgh12345678", "BASIC dXNlcjpwYXNzd29yZA==", "sk-proj-abcdefghijkl0123", "sk-ant-x_y-0123456789",
          "AKIAABCDEFGHIJKLMNOP", "ASIA0123456789ABCDEF", "x-api-key: zzzzzzzzzzzz", 'API_KEY="abcdefghijk"',
          "apikey=0123456789ab", "Authorization: tok-0123456789", "basic QWxhZGRpbjpvcGVu", "aws_secret_access_key = abcdEFGH1234",
          "ghp_abcdefghijklmnopqrstuvwxyz", "xoxb-0123456789-abcdef", "https://user:pw@example.org/x",
          "see postgres://admin:hunter2@db:5432/app", "https://h/x?session_id=abc123&x=1",
          "https://h/x?sig=abcdef;token=zzz", "/cb?AccessToken=abc#frag"]
# letters re's IGNORECASE takes for ASCII ones: the Kelvin sign, the long s, dotless and dotted i
LOOKALIKES = {"k": "\u212a", "s": "\u017f", "i": "\u0131"}


def test_the_quick_check_never_lets_a_shape_through() -> None:
    """The literal pre-check skips the regexes only for strings no rule would change."""
    import random
    rng = random.Random(11)
    prose = ["Invoice 2024-001", "amount due 1.234,50 EUR", "please reply by Friday", "key figures", "a=b",
             "Dear Ms Rossi", "ghost town", "taxonomy", "http://example.org/plain", "e-mail: a@b.example"]
    samples = list(SHAPES) + prose
    for shape in SHAPES:
        samples += [shape.upper(), shape.lower(), f"({shape})", f"{rng.choice(prose)} {shape} {rng.choice(prose)}"]
        for ascii_letter, lookalike in LOOKALIKES.items():
            samples += [shape.replace(ascii_letter, lookalike), shape.lower().replace(ascii_letter, lookalike)]
    redactor = Redactor()
    changed = 0
    for sample in samples:
        expected = _every_rule(sample)
        assert redactor.text(sample) == expected, sample
        changed += expected != sample
    assert changed >= len(SHAPES) * 4  # the corpus does hold shapes the rules take


def test_a_secret_loaded_later_is_masked_in_a_string_scrubbed_before() -> None:
    redactor = Redactor(["first-secret-value"])
    line = "the new key is second-secret-value"
    assert redactor.text(line) == line
    redactor.secrets = ["first-secret-value", "second-secret-value"]  # what SIGHUP does
    assert redactor.text(line) == f"the new key is {MASK}"
    assert redactor.text("first-secret-value!") == f"{MASK}!"


# after Bearer/Basic: prose, names, amounts and dates stay; tokens (base64, hex, JWT, keys) go
PROSE_AFTER_SCHEME = ["Basic functionality is included", "Bearer bonds and Bearer Instruments Ltd",
                      "the Basic Configuration guide", "Basic PowerPoint skills", "Basic 2048.00 EUR",
                      "Basic 20480000 units", "Bearer 2024-01-15", "Basic Input/Output System",
                      "Bearer docs.example.com", "BASIC INFORMATION", "Basic well-known-terms"]
CREDENTIALS_AFTER_SCHEME = ["Basic dXNlcjpwYXNzd29yZA==", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig0",
                            "bearer 9f86d081884c7d659a2feaa0c55ad015", "BASIC QWxhZGRpbjpvcGVu",
                            "Bearer rev-tok-aaaa1111", "Bearer 738261940573826194057382"]


@pytest.mark.parametrize("text", PROSE_AFTER_SCHEME)
def test_an_ordinary_word_after_basic_or_bearer_is_kept(text: str) -> None:
    assert Redactor().text(text) == text


@pytest.mark.parametrize("text", CREDENTIALS_AFTER_SCHEME)
def test_a_credential_shaped_value_after_basic_or_bearer_is_masked(text: str) -> None:
    scheme, token = text.split(" ", 1)
    assert Redactor().text(f"header: {text}; amount 2048.00 EUR") == f"header: {scheme} {MASK}; amount 2048.00 EUR"
    assert token not in Redactor().text(text)


def test_a_daemon_run_keeps_prose_after_basic_and_bearer_and_masks_only_credentials(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., object]) -> None:
    # Given a model whose summary holds prose after Basic/Bearer, an amount, a credential and the admin token
    credential = "dXNlcjpwYXNzd29yZA=="
    summary = (f"Basic functionality and Bearer bonds, 2048.00 EUR due; header Basic {credential}; "
               f"admin {ADMIN}")

    def responder(seen: Seen) -> dict:
        return {**default_answer(seen), "summary": summary, "party": "Bearer Instruments Ltd"}

    server = llm_server(responder=responder)
    agent = daemon(ADMIN_TOKEN=ADMIN, LLM_MAX_OUTPUT_TOKENS="2048", **server.env())  # type: ignore[attr-defined]
    (home / "incoming" / "basic-invoice-2048.txt").write_text("Invoice 2048: amount due 2048.00 EUR")
    meta = wait_until(lambda: sidecar_for(home, "basic-invoice-2048.txt"))
    agent.stop()
    # Then the sidecar and the outcome line keep the prose, the amount and the party; lose the secrets
    expected = f"Basic functionality and Bearer bonds, 2048.00 EUR due; header Basic {MASK}; admin {MASK}"
    assert meta["result"]["summary"] == expected and meta["result"]["party"] == "Bearer Instruments Ltd"
    outcome = audit_events(home, "outcome")[0]
    assert outcome["file"] == "basic-invoice-2048.txt" and expected in json.dumps(outcome)
    said = [agent.output(), *(p.read_text() for p in (home / "logs").glob("audit*.json*")),
            *(p.read_text() for p in home.glob("*/*.meta.json"))]  # not the run's journal: a state file
    assert all(credential not in text and ADMIN not in text for text in said)
    assert [r["max_tokens"] for r in audit_events(home, "llm_call")] == [2048]  # a *_TOKENS number kept
