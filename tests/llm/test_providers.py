"""The OpenAI and Anthropic providers over real HTTP against the fake API, and the gateway on top."""
from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from agentd import config as configuration
from agentd.durable.group import GroupSync
from agentd.errors import ModelError
from agentd.durable.journal import Journal
from agentd.llm.base import LLMRequest, LLMResponse, Provider, ProviderError
from agentd.llm.http import retry_after_s
from agentd.lifecycle.services import build
from agentd.workflows.triage import TRIAGE_SCHEMA
from tests.fakellm import FakeLLM, fake_llm, status, tool_call  # noqa: F401  (fake_llm is a fixture)
from tests.helpers import audit_events

with warnings.catch_warnings():
    # gateway.py passes tenacity's deprecated `initial=` (DeprecationWarning on tenacity >= 9.1)
    warnings.simplefilter("ignore", DeprecationWarning)
    from agentd.llm.gateway import Gateway, make_provider

CANARY_KEY = "sk-canary-0123456789abcdefSECRET"
WIRES = ["openai", "anthropic"]
REQUEST = LLMRequest(task="triage", system="You triage documents.", document="Invoice 42 from ACME Ltd.",
                     schema=TRIAGE_SCHEMA, schema_name="triage result", max_tokens=300)
LOOKUP = {"name": "lookup", "description": "Find a party", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}


def load_config(tmp_path: Path, env: dict[str, str]) -> configuration.Config:
    env_file = tmp_path / "empty.env"  # so a stray ./.env cannot leak into the test
    env_file.touch()
    return configuration.load(env_file=env_file, environ={"AGENTD_HOME": str(tmp_path / "var"), **env})


Connect = Callable[..., Awaitable[tuple[FakeLLM, Provider]]]


@pytest.fixture
async def connect(fake_llm: Callable[..., Awaitable[FakeLLM]], tmp_path: Path) -> AsyncIterator[Connect]:
    """connect(wire, key=..., **server): a started FakeLLM and a provider pointed at it (closed at the end)."""
    providers: list[Provider] = []

    async def make(wire: str, key: str = CANARY_KEY, **server_kwargs: Any) -> tuple[FakeLLM, Provider]:
        server = await fake_llm(**server_kwargs)
        provider = make_provider(load_config(tmp_path, {**server.env(wire), "LLM_API_KEY": key}))
        providers.append(provider)
        return server, provider

    yield make
    for provider in providers:
        await provider.close()


async def failure(provider: Provider, timeout_s: float = 5.0, request: LLMRequest = REQUEST) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request, "fake-model", timeout_s)
    return caught.value


# -- request shape ---------------------------------------------------------------------------------
async def test_openai_sends_a_strict_json_schema_and_the_bearer_key(connect: Connect) -> None:
    server, provider = await connect("openai")
    response = await provider.complete(REQUEST, "fake-model", 5)
    seen = server.requests[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {CANARY_KEY}"
    wanted = seen.body["response_format"]
    assert wanted["type"] == "json_schema" and wanted["json_schema"]["name"] == "triage_result"
    assert wanted["json_schema"]["strict"] is True
    sent = wanted["json_schema"]["schema"]
    assert sent["required"] == TRIAGE_SCHEMA["required"] and sent["additionalProperties"] is False
    assert "maxLength" not in sent["properties"]["summary"]  # strict mode refuses it; the gateway checks it
    assert [m["role"] for m in seen.body["messages"]] == ["system", "user"]
    assert seen.body["max_tokens"] == 300 and "tools" not in seen.body
    assert seen.document == REQUEST.document
    # the gateway parses and validates: the provider hands back the text
    assert response.parsed is None and json.loads(response.content or "")["confidence"] == 0.9


async def test_openai_sends_a_schema_strict_mode_cannot_take_as_a_plain_hint(connect: Connect) -> None:
    server, provider = await connect("openai")
    loose = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 5}}}
    await provider.complete(LLMRequest(**{**REQUEST.__dict__, "schema": loose}), "fake-model", 5)
    sent = server.requests[0].body["response_format"]["json_schema"]
    assert sent["strict"] is False and sent["schema"] == loose


def test_openai_asks_api_openai_com_for_max_completion_tokens(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"LLM_PROVIDER": "openai", "LLM_API_KEY": CANARY_KEY})
    body = make_provider(config).body(REQUEST, "gpt-4o-mini")  # type: ignore[attr-defined]
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body


async def test_openai_sends_no_authorization_header_without_a_key(connect: Connect) -> None:
    server, provider = await connect("openai", key="")
    await provider.complete(REQUEST, "fake-model", 5)
    assert "Authorization" not in server.requests[0].headers


async def test_anthropic_forces_the_answer_tool_and_returns_its_input(connect: Connect) -> None:
    server, provider = await connect("anthropic")
    response = await provider.complete(REQUEST, "fake-model", 5)
    seen = server.requests[0]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == CANARY_KEY and seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == REQUEST.system and seen.body["messages"][0]["role"] == "user"
    assert seen.body["tools"][0]["input_schema"] == TRIAGE_SCHEMA
    assert seen.body["tool_choice"] == {"type": "tool", "name": "triage_result"}
    assert response.parsed["document_type"] == "other" and json.loads(response.content or "") == response.parsed
    assert response.finish_reason == "stop"


@pytest.mark.parametrize("wire", WIRES)
async def test_usage_is_reported_with_cached_input_tokens(connect: Connect, wire: str) -> None:
    _, provider = await connect(wire, usage=(1000, 200), cached_tokens=300)
    response = await provider.complete(REQUEST, "fake-model", 5)
    assert (response.tokens_in, response.tokens_out, response.cached_in) == (1000, 200, 300)


# -- failures -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("code", [500, 503, 529, 408, 409, 429])
async def test_server_errors_and_rate_limits_are_retryable(connect: Connect, wire: str, code: int) -> None:
    _, provider = await connect(wire, script=[code])
    error = await failure(provider)
    assert (error.retryable, error.kind, error.status, error.label) == (True, "network", code, str(code))


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(connect: Connect, wire: str, code: int) -> None:
    _, provider = await connect(wire, script=[code])
    error = await failure(provider)
    assert (error.retryable, error.kind, error.status) == (False, "model", code)


@pytest.mark.parametrize(("fault", "wait_s"), [
    (status(429, retry_after_s=7), 7.0),
    (status(503, retry_after_ms=1500), 1.5),
    (status(429, retry_after_s=9, retry_after_ms=250), 0.25),
    (status(429), None),
])
async def test_retry_after_headers_set_the_wait(connect: Connect, fault: Any, wait_s: float | None) -> None:
    _, provider = await connect("openai", script=[fault])
    assert (await failure(provider)).retry_after_s == wait_s


def test_retry_after_accepts_an_http_date_and_ignores_garbage() -> None:
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert retry_after_s({"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}, now=now) == 30.0
    assert retry_after_s({"retry-after": "Tue, 14 Nov 2023 22:00:00 GMT"}, now=now) == 0.0
    assert retry_after_s({"retry-after": "soon", "retry-after-ms": "x"}) is None


@pytest.mark.parametrize("wire", WIRES)
async def test_credential_errors_point_at_the_key_without_showing_it(connect: Connect, wire: str) -> None:
    # Given a server that rejects the key and, like a careless proxy, echoes it back
    _, provider = await connect(wire, api_key="the-right-key")
    error = await failure(provider)
    assert error.status == 401 and not error.retryable and "LLM_API_KEY" in str(error)
    assert CANARY_KEY not in str(error) and CANARY_KEY not in repr(error.args)


@pytest.mark.parametrize("wire", WIRES)
async def test_no_error_message_ever_contains_the_key(connect: Connect, wire: str) -> None:
    faults = [400, 401, 403, 404, 429, 500, 503, "malformed", "empty", "disconnect", "hang"]
    _, provider = await connect(wire, script=faults, hang_s=2)
    messages = [str(await failure(provider, timeout_s=0.3)) for _ in faults]
    assert all(message and CANARY_KEY not in message for message in messages)
    assert all("DOCUMENT" not in message and REQUEST.document not in message for message in messages)


@pytest.mark.parametrize("wire", WIRES)
async def test_a_hung_server_times_out_as_retryable(connect: Connect, wire: str) -> None:
    _, provider = await connect(wire, script=["hang"], hang_s=5)
    started = asyncio.get_running_loop().time()
    error = await failure(provider, timeout_s=0.2)
    assert (error.retryable, error.label, error.status) == (True, "timeout", None)
    assert asyncio.get_running_loop().time() - started < 2


async def test_a_refused_connection_is_retryable(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = load_config(tmp_path, {"LLM_PROVIDER": "openai", "LLM_BASE_URL": f"http://127.0.0.1:{port}/v1",
                                    "LLM_MODEL": "fake-model", "LLM_PRICE_INPUT_PER_MTOK": "1",
                                    "LLM_PRICE_OUTPUT_PER_MTOK": "1"})
    provider = make_provider(config)
    try:
        error = await failure(provider)
    finally:
        await provider.close()
    assert (error.retryable, error.kind, error.label) == (True, "network", "network")


@pytest.mark.parametrize("wire", WIRES)
async def test_a_dropped_connection_is_retryable(connect: Connect, wire: str) -> None:
    _, provider = await connect(wire, script=["disconnect"])
    error = await failure(provider)
    # the request went out: it may be billed, so its cost counts as unknown (settled at the reservation)
    assert (error.retryable, error.kind, error.cost_unknown) == (True, "connection_lost", True)


@pytest.mark.parametrize("wire", WIRES)
async def test_a_body_that_is_not_json_is_a_retryable_malformed_answer_of_unknown_cost(
        connect: Connect, wire: str) -> None:
    _, provider = await connect(wire, script=["malformed"])
    error = await failure(provider)
    assert (error.retryable, error.kind, error.label, error.cost_unknown) == (True, "malformed", "malformed", True)


@pytest.mark.parametrize("wire", WIRES)
async def test_a_json_body_without_the_answer_is_malformed_but_its_tokens_count(connect: Connect, wire: str) -> None:
    _, provider = await connect(wire, script=["empty"], usage=(120, 30))
    error = await failure(provider)
    assert (error.retryable, error.kind, error.tokens_in, error.tokens_out) == (True, "malformed", 120, 30)


# -- answers that are not a plain JSON object -------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
async def test_tool_calls_are_offered_and_parsed(connect: Connect, wire: str) -> None:
    server, provider = await connect(wire, script=[tool_call("lookup", {"q": "ACME"})])
    request = LLMRequest(**{**REQUEST.__dict__, "tools": (LOOKUP,)})
    response = await provider.complete(request, "fake-model", 5)
    assert [(c["name"], c["arguments"]) for c in response.tool_calls] == [("lookup", {"q": "ACME"})]
    assert response.tool_calls[0]["id"]
    body = server.requests[0].body
    if wire == "openai":
        assert body["tools"] == [{"type": "function", "function": LOOKUP}] and body["tool_choice"] == "auto"
        assert "response_format" not in body
    else:
        assert body["tools"] == [{"name": "lookup", "description": "Find a party",
                                  "input_schema": LOOKUP["parameters"]}]
        assert body["tool_choice"] == {"type": "auto"}


async def test_openai_tool_arguments_that_are_not_json_are_kept_raw(connect: Connect) -> None:
    _, provider = await connect("openai", script=[tool_call("lookup", "{q: ACME")])
    response = await provider.complete(LLMRequest(**{**REQUEST.__dict__, "tools": (LOOKUP,)}), "fake-model", 5)
    assert response.tool_calls[0]["arguments"] == {"_raw": "{q: ACME"}


@pytest.mark.parametrize(("wire", "fault", "finish"), [
    ("openai", "length", "length"), ("anthropic", "length", "length"),
    ("openai", "refusal", "refusal"), ("anthropic", "refusal", "refusal"),
    ("openai", "content_filter", "content_filter"),
])
async def test_finish_reasons_are_mapped(connect: Connect, wire: str, fault: str, finish: str) -> None:
    _, provider = await connect(wire, script=[fault])
    assert (await provider.complete(REQUEST, "fake-model", 5)).finish_reason == finish


@pytest.mark.parametrize("wire", WIRES)
async def test_an_answer_that_is_not_json_is_passed_on_for_the_gateway_to_judge(connect: Connect, wire: str) -> None:
    _, provider = await connect(wire, script=["not_json"])
    response = await provider.complete(REQUEST, "fake-model", 5)
    assert response.parsed is None and response.content and not response.content.startswith("{")


@pytest.mark.parametrize("wire", WIRES)
async def test_tool_history_is_sent_in_each_wire_format(connect: Connect, wire: str) -> None:
    server, provider = await connect(wire)
    history = ({"role": "assistant", "content": None,
                "tool_calls": [{"id": "c1", "name": "lookup", "arguments": {"q": "ACME"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": '{"found": true}'})
    await provider.complete(LLMRequest(**{**REQUEST.__dict__, "tools": (LOOKUP,), "history": history}), "m", 5)
    messages = server.requests[0].body["messages"]
    if wire == "openai":
        assert messages[2]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q": "ACME"}'}
        assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": '{"found": true}'}
    else:
        assert messages[1] == {"role": "assistant", "content": [
            {"type": "tool_use", "id": "c1", "name": "lookup", "input": {"q": "ACME"}}]}
        assert messages[2]["content"] == [{"type": "tool_result", "tool_use_id": "c1", "content": '{"found": true}'}]


async def test_concurrent_calls_share_one_pooled_session(connect: Connect) -> None:
    server, provider = await connect("openai", delay_s=0.05)
    responses = await asyncio.gather(*(provider.complete(REQUEST, "fake-model", 5) for _ in range(20)))
    assert all(isinstance(r, LLMResponse) for r in responses) and server.count() == 20
    session = provider._session  # type: ignore[attr-defined]
    await provider.close()
    assert session is not None and session.closed


# -- through the real gateway ----------------------------------------------------------------------------
@dataclass
class FakeRun:
    cid: str
    workflow: str
    journal: Journal
    models: list[tuple[str, str]] = field(default_factory=list)
    step: str = "classify"

    @property
    def cost_usd(self) -> Any:
        return self.journal.cost_usd

    @property
    def memo(self) -> Journal:
        return self.journal

    def note_model(self, provider: str, model: str) -> None:
        self.models.append((provider, model))


@dataclass
class Harness:
    server: FakeLLM
    gateway: Gateway
    run: FakeRun
    home: Path
    waits_s: list[float]

    def calls(self) -> list[dict[str, Any]]:
        return audit_events(self.home, "llm_call")


@pytest.fixture
async def harness(fake_llm: Callable[..., Awaitable[FakeLLM]], tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """harness(**server): a Gateway over the openai provider and a FakeLLM, with backoff recorded, not slept."""
    made: list[Harness] = []

    async def make(fallbacks: str = "", **server_kwargs: Any) -> Harness:
        server = await fake_llm(**server_kwargs)
        config = load_config(tmp_path, server.env("openai", fallbacks=fallbacks))
        config.state_dir.mkdir(parents=True)
        waits_s: list[float] = []

        async def sleep(seconds: float) -> None:
            waits_s.append(seconds)

        services = build(config)  # the real wiring: guards, budget, breakers, metering, the openai provider
        gateway = services.gateway
        gateway._sleep = sleep
        run = FakeRun("cid-1", "triage", Journal(tmp_path / "journal.jsonl", GroupSync()))
        services.budget.start_run(run.cid)
        made.append(Harness(server, gateway, run, config.home, waits_s))
        return made[-1]

    yield make
    for h in made:
        await h.gateway.close()
        h.gateway.audit.close()


async def test_gateway_retries_a_500_and_meters_both_attempts(harness: Callable[..., Any]) -> None:
    h: Harness = await harness(script=[status(500, retry_after_s=2)])
    answer = await h.gateway.structured(h.run, REQUEST, "classify")
    assert answer["document_type"] == "other" and h.server.count() == 2
    assert [(c["attempt"], c["status"]) for c in h.calls()] == [(1, "500"), (2, "ok")]
    assert h.calls()[1]["cost_usd"] > 0 and h.waits_s == [2.0]
    assert h.run.models == [("openai", "fake-model")]


async def test_gateway_asks_again_after_two_schema_invalid_answers(harness: Callable[..., Any]) -> None:
    h: Harness = await harness(script=["schema_invalid", "schema_invalid"])
    answer = await h.gateway.structured(h.run, REQUEST, "classify")
    assert answer["confidence"] == 0.9 and h.server.count() == 3
    assert "not valid" in h.server.requests[-1].prompt  # the re-ask names the problem
    assert len(h.calls()) == 3


async def test_gateway_gives_up_after_three_schema_invalid_answers(harness: Callable[..., Any]) -> None:
    h: Harness = await harness(faults={"schema_invalid": 1.0})
    with pytest.raises(ModelError) as caught:
        await h.gateway.structured(h.run, REQUEST, "classify")
    assert caught.value.reason == "invalid_output" and h.server.count() == 3
    assert [c["status"] for c in h.calls()] == ["ok"] * 3


async def test_gateway_falls_back_when_the_primary_model_is_down(harness: Callable[..., Any]) -> None:
    h: Harness = await harness(fallbacks="fake-backup", models={"fake-model": {"down": True}})
    answer = await h.gateway.structured(h.run, REQUEST, "classify")
    assert answer["document_type"] == "other"
    assert [(c["model"], c["status"]) for c in h.calls()] == [("fake-model", "503")] * 3 + [("fake-backup", "ok")]
    assert h.run.models == [("openai", "fake-backup")]


# -- the fake itself, as the daemon tests drive it from sync code ---------------------------------------
def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def ask(server: FakeLLM, model: str, document: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": f"<<<DOCUMENT 00ff\n{document}\nDOCUMENT 00ff>>>"}]}
    return post(server.openai_url + "/chat/completions", body)[0]


def test_the_fake_runs_in_a_thread_with_per_model_outages_and_counts_documents() -> None:
    with FakeLLM() as server:
        server.down("primary")
        assert [ask(server, "primary", "doc A"), ask(server, "backup", "doc A"), ask(server, "backup", "doc B")] \
            == [503, 200, 200]
        server.up("primary")
        server.down()
        assert ask(server, "backup", "doc B") == 503
        server.up()
        assert ask(server, "primary", "doc B") == 200
        assert server.documents() == {"doc A": 2, "doc B": 3}
        assert server.count("doc B", fault="ok") == 2 and server.count(model="primary", fault="503") == 1


def test_the_fakes_random_faults_repeat_for_the_same_seed() -> None:
    def outcomes(seed: int) -> list[str]:
        with FakeLLM(faults={"503": 0.3, "429": 0.2}, seed=seed) as server:
            for _ in range(20):
                ask(server, "m", "doc")
            return [s.fault for s in server.requests]

    first = outcomes(7)
    assert first == outcomes(7) and {"503", "429", "ok"} <= set(first)
