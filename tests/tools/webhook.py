"""A loopback webhook receiver for notification tests: real HTTP on 127.0.0.1, in a thread or in-process."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.loopback import LoopbackServer


@dataclass
class Delivery:
    headers: dict[str, str]
    body: Any


@dataclass
class Webhook(LoopbackServer):
    """POST /hook records each delivery and answers `status` (a 30x redirects to `location`)."""

    status: int = 200
    location: str = ""
    first_delay_s: float = 0.0  # hold the first delivery's answer this long (a crash window)
    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    shutdown_timeout_s = 0.2

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

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._receive)
