"""A loopback webhook receiver for notification tests: real HTTP on 127.0.0.1, in a thread or in-process."""
from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Delivery:
    headers: dict[str, str]
    body: Any


@dataclass
class Webhook:
    """POST /hook records each delivery and answers `status` (a 30x redirects to `location`)."""

    status: int = 200
    location: str = ""
    first_delay_s: float = 0.0  # hold the first delivery's answer this long (a crash window)
    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _receive(self, request: web.Request) -> web.Response:
        self.deliveries.append(Delivery(dict(request.headers), await request.json()))
        if self.first_delay_s and len(self.deliveries) == 1:
            await asyncio.sleep(self.first_delay_s)
        if 300 <= self.status < 400:
            return web.Response(status=self.status, headers={"Location": self.location})
        return web.json_response({"ok": self.status < 300}, status=self.status)

    async def start(self) -> "Webhook":
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "Webhook":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- in a thread, for agentd subprocesses --------------------------------------------------
    def __enter__(self) -> "Webhook":
        self._loop = asyncio.new_event_loop()
        started = concurrent.futures.Future[None]()

        def serve() -> None:
            assert self._loop is not None
            try:
                self._loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the starting thread, which raises it
                started.set_exception(exc)
                return
            started.set_result(None)
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="webhook", daemon=True)
        self._thread.start()
        try:
            started.result(10)
        except BaseException:
            self._thread.join(10)
            self._loop.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
