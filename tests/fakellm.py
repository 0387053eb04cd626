"""A fake model API for tests: a real aiohttp server on 127.0.0.1 speaking the OpenAI and Anthropic
wire formats (tests/fakewire.py), counting what it is asked, and failing on cue: scripted,
seeded-random, per model, changeable while it runs.

In-process:   async with FakeLLM() as server: ...        (or the `fake_llm` fixture)
In a thread:  with FakeLLM() as server: ...              (or `llm_server`; for agentd subprocesses)
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator

import pytest
from aiohttp import web

from tests.fakewire import (OK, Fault, FaultSpec, Seen, anthropic_answer, anthropic_seen, answer, broken,
                            default_answer, error_body, openai_answer, openai_seen, status, tool_call)
from tests.loopback import LoopbackServer

__all__ = ["FakeLLM", "Fault", "Seen", "answer", "fake_llm", "llm_server", "status", "tool_call"]


@dataclass
class _Behaviour:
    script: deque[Fault] = field(default_factory=deque)
    faults: list[tuple[Fault, float]] = field(default_factory=list)
    down: bool = False

    def next(self, rng: random.Random) -> Fault | None:
        if self.down:
            return status(503)
        if self.script:
            return self.script.popleft()
        draw, total = rng.random(), 0.0
        for fault, probability in self.faults:
            total += probability
            if draw < total:
                return fault
        return None


class FakeLLM(LoopbackServer):
    def __init__(self, *, script: Iterable[FaultSpec] = (), faults: dict[FaultSpec, float] | None = None,
                 seed: int = 0, usage: tuple[int, int] | Callable[[Seen, Any], tuple[int, int]] = (100, 50),
                 cached_tokens: int = 0,
                 responder: Callable[[Seen], Any] | None = None, api_key: str | None = None,
                 hang_s: float = 30.0, delay_s: float = 0.0, port: int = 0,
                 models: dict[str, dict[str, Any]] | None = None):
        self.usage, self.cached_tokens = usage, cached_tokens
        self.responder, self.api_key = responder, api_key
        self.hang_s, self.delay_s = hang_s, delay_s
        self.requests: list[Seen] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._behaviours: dict[str | None, _Behaviour] = {}
        self.script(*script)
        self.set_faults(faults or {})
        for model, spec in (models or {}).items():
            self.script(*spec.get("script", ()), model=model)
            self.set_faults(spec.get("faults", {}), model=model)
            if spec.get("down"):
                self.down(model)
        self.port = port  # 0: a free one, chosen at start()
        self._stopping: asyncio.Event | None = None

    # -- addresses ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    def env(self, provider: str = "openai", model: str = "fake-model", fallbacks: str = "",
            api_key: str = "sk-test-fakellm-0000") -> dict[str, str]:
        """LLM_* variables that point agentd at this server, with prices for the fake models."""
        return {"LLM_PROVIDER": provider, "LLM_BASE_URL": self.openai_url if provider == "openai" else self.url,
                "LLM_API_KEY": self.api_key or api_key, "LLM_MODEL": model, "LLM_FALLBACK_MODELS": fallbacks,
                "LLM_PRICE_INPUT_PER_MTOK": "1.00", "LLM_PRICE_OUTPUT_PER_MTOK": "2.00"}

    # -- behaviour, changeable while running ---------------------------------------------------
    def _behaviour(self, model: str | None) -> _Behaviour:
        return self._behaviours.setdefault(model, _Behaviour())

    def script(self, *faults: FaultSpec, model: str | None = None) -> "FakeLLM":
        """Queue faults for the next requests (of `model`, or of any model), then answer normally."""
        with self._lock:
            self._behaviour(model).script.extend(Fault.of(f) for f in faults)
        return self

    def set_faults(self, faults: dict[FaultSpec, float], model: str | None = None) -> "FakeLLM":
        """Per-request probabilities, drawn from the seeded generator, e.g. {"503": 0.2, "hang": 0.05}."""
        with self._lock:
            self._behaviour(model).faults = [(Fault.of(f), p) for f, p in faults.items()]
        return self

    def down(self, model: str | None = None) -> None:
        """Every request (of `model`, or of all models) answers 503 until up()."""
        with self._lock:
            self._behaviour(model).down = True

    def up(self, model: str | None = None) -> None:
        with self._lock:
            self._behaviour(model).down = False

    def clear(self) -> None:
        """Forget every script, probability and down state (the request log stays)."""
        with self._lock:
            self._behaviours.clear()

    def _choose(self, model: str) -> Fault:
        with self._lock:
            specific = self._behaviours.get(model)
            chosen = specific.next(self._rng) if specific else None
            return chosen or self._behaviour(None).next(self._rng) or OK

    # -- what was asked -------------------------------------------------------------------------
    def count(self, contains: str | None = None, model: str | None = None, fault: str | None = None) -> int:
        """Requests whose prompt contains `contains`, to `model`, answered with `fault` (all optional)."""
        return sum(1 for s in list(self.requests) if (contains is None or contains in s.prompt)
                   and (model is None or s.model == model) and (fault is None or s.fault == fault))

    def documents(self) -> Counter[str]:
        """How many requests each document text was sent in."""
        return Counter(s.document for s in list(self.requests) if s.document is not None)

    # -- lifecycle (tests.loopback): start/stop, async with, start_thread/stop_thread, with ------------
    shutdown_timeout_s = 0.5
    client_max_size = 64 * 1024 * 1024

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)

    async def start(self) -> "FakeLLM":
        self._stopping = asyncio.Event()  # ends hangs at stop
        return await super().start()

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        await super().stop()

    # -- serving ---------------------------------------------------------------------------------
    async def _openai(self, request: web.Request) -> web.StreamResponse:
        seen = self._record(openai_seen(request.path, dict(request.headers), await request.json()))
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return await self._serve(request, seen, key, openai_answer)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        seen = self._record(anthropic_seen(request.path, dict(request.headers), await request.json()))
        return await self._serve(request, seen, request.headers.get("x-api-key", ""), anthropic_answer)

    def _record(self, seen: Seen) -> Seen:
        self.requests.append(seen)
        return seen

    async def _serve(self, request: web.Request, seen: Seen, key: str,
                     render: Callable[..., dict[str, Any]]) -> web.StreamResponse:
        fault = status(401) if self.api_key is not None and key != self.api_key else self._choose(seen.model)
        if fault.kind == "ok" and self.responder is not None:
            reply = self.responder(seen)
            fault = reply if isinstance(reply, Fault) else answer(reply)
        seen.fault = fault.label
        if self.delay_s or fault.kind == "hang":
            await self._pause(self.hang_s if fault.kind == "hang" else self.delay_s)
        if fault.kind == "hang":
            return web.json_response({"error": {"message": "hung"}}, status=504)
        if fault.kind == "disconnect":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if fault.kind == "malformed":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if fault.kind == "status":
            return self._status(seen, fault, key)
        value = fault.answer if fault.kind == "answer" else default_answer(seen)
        if fault.kind == "schema_invalid":
            value = broken(value)
        # usage: fixed counts, or counted from what was asked and answered (seen, value)
        prompt, completion = self.usage(seen, value) if callable(self.usage) else self.usage
        tokens = (prompt, completion, min(self.cached_tokens, prompt))
        return web.json_response(render(seen, fault, value, tokens, lambda: next(self._ids)))

    async def _pause(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _status(self, seen: Seen, fault: Fault, key: str) -> web.Response:
        headers = {}
        if fault.retry_after_s is not None:
            headers["Retry-After"] = f"{fault.retry_after_s:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        # like a careless proxy, a 401 echoes the key it was given: providers must not repeat it
        message = f"Incorrect API key provided: {key}" if fault.status == 401 else f"fake error {fault.status}"
        return web.json_response(error_body(seen, fault.status, message), status=fault.status, headers=headers)


# -- fixtures: import them into a test module or conftest to use ----------------------------------------
@pytest.fixture
async def fake_llm() -> AsyncIterator[Callable[..., Awaitable[FakeLLM]]]:
    """await fake_llm(**kwargs): a FakeLLM served on the test's own event loop; stopped at the end."""
    servers: list[FakeLLM] = []

    async def start(**kwargs: Any) -> FakeLLM:
        server = FakeLLM(**kwargs)
        servers.append(server)
        return await server.start()

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
def llm_server() -> Iterator[Callable[..., FakeLLM]]:
    """llm_server(**kwargs): a FakeLLM in a background thread (reachable by subprocesses); stopped at the end."""
    servers: list[FakeLLM] = []

    def start(**kwargs: Any) -> FakeLLM:
        server = FakeLLM(**kwargs)
        servers.append(server)
        return server.start_thread()

    yield start
    for server in servers:
        server.stop_thread()
