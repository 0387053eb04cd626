"""The HTTP face: /health, /metrics and the admin kill switch, on aiohttp."""
from __future__ import annotations

import hmac
import json
from typing import Any, Callable

from aiohttp import web

from agentd import logs

log = logs.get("agentd.http")


def make_app(health: Callable[[], dict[str, Any]], metrics: Callable[[], bytes], admin_token: Callable[[], str],
             kill_switch: Callable[[bool, str, str], dict[str, Any]],
             mount: Callable[[web.Application], None] | None = None) -> web.Application:
    """`admin_token` is read per request, so SIGHUP changes it live; empty disables /admin (404).
    `mount` adds more routes (the review console)."""
    app = web.Application()
    if mount is not None:
        mount(app)

    async def get_health(_request: web.Request) -> web.Response:
        body = health()
        code = 503 if body["status"] == "unhealthy" else 200
        return web.json_response(body, status=code, dumps=lambda v: json.dumps(v, default=str))

    async def get_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def get_root(request: web.Request) -> web.Response:
        """A pointer for whoever opens the listener's address in a browser or with curl."""
        links = {"health": "/health", "metrics": "/metrics", "review": "/review"}
        if "text/html" in request.headers.get("Accept", ""):
            items = "".join(f'<li><a href="{path}">{path}</a></li>' for path in links.values())
            return web.Response(text=f"<!doctype html><title>agentd</title><h1>agentd</h1><ul>{items}</ul>",
                                content_type="text/html")
        return web.json_response({"service": "agentd", **links})

    app.router.add_get("/", get_root)
    app.router.add_get("/health", get_health)
    app.router.add_get("/metrics", get_metrics)

    def authorized(request: web.Request, token: str) -> bool:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))

    # the admin routes: always mounted, answering 404 while ADMIN_TOKEN is empty
    async def kill(request: web.Request) -> web.Response:
        token = admin_token()
        if not token:
            raise web.HTTPNotFound()
        if not authorized(request, token):
            log.warning("admin_unauthorized", path=request.path, remote=request.remote)
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        engage = request.method == "POST"
        reason = ""
        if engage and request.can_read_body:
            try:
                payload = await request.json()
                reason = str(payload.get("reason", ""))[:500] if isinstance(payload, dict) else ""
            except ValueError:
                reason = ""
        state = kill_switch(engage, reason or ("engaged over HTTP" if engage else "released over HTTP"),
                            f"http {request.remote}")
        return web.json_response(state)

    app.router.add_post("/admin/kill-switch", kill)
    app.router.add_delete("/admin/kill-switch", kill)
    return app


class ListenError(OSError):
    """The HTTP listener could not bind HEALTH_HOST:HEALTH_PORT (the true cause in its message)."""


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int):
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.host = host
        self.port = port

    async def start(self) -> int:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(exc.errno, exc.strerror or str(exc)) from None
        server = site._server  # the bound port, for HEALTH_PORT=0
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        await self.runner.cleanup()
