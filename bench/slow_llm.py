"""A slow OpenAI-compatible model on 127.0.0.1 for bench 3: every chat completion answers after a fixed latency.

The answer is valid JSON for the json_schema the request sends (a confident one for the triage
schema). GET /stats gives {"requests", "max_in_flight"}. Usage:
    python bench/slow_llm.py [--latency-ms 100] [--seconds 900]
prints "port N" once it listens, and stops on SIGTERM, SIGINT or after --seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agentd.llm.offline import minimal_instance


def answer_for(schema: dict[str, Any]) -> Any:
    """A schema-valid value; confident enough for the triage workflow to archive it."""
    value = minimal_instance(schema) if schema else {}
    if isinstance(value, dict) and "confidence" in schema.get("properties", {}):
        value.update(confidence=0.9, summary="A bench document.")
    return value


class SlowModel:
    def __init__(self, latency_s: float):
        self.latency_s = latency_s
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.complete)
        app.router.add_get("/stats", self.stats)
        return app

    async def complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
        content = json.dumps(answer_for(schema))
        return web.json_response({
            "id": f"chatcmpl-{self.requests}", "object": "chat.completion", "model": body.get("model", ""),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": 200, "completion_tokens": 60, "total_tokens": 260}})

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "max_in_flight": self.max_in_flight})


async def serve(latency_s: float, seconds: float, port: int) -> None:
    runner = web.AppRunner(SlowModel(latency_s).app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"port {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=900.0, help="stop by itself after this long")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.latency_ms / 1000, args.seconds, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
