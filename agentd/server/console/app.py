"""The console's shared parts and its mount on the daemon's aiohttp app: state, security headers,
who is asking (session, role, CSRF), rendering.

Pages are Jinja2 templates (autoescaped); the environment is built on the first page, so the
daemon's start-up does not wait for Jinja2's import (about 50 ms)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from agentd.server.console import queue
from agentd.server.console.auth import LoginLimiter, Session, Sessions, csrf_ok
from agentd.server.console.desk import Desk
from agentd.server.console.leases import Leases, SqliteLeases

COOKIE = "agentd_review"
CONSOLE_KEY: web.AppKey["Console"] = web.AppKey("agentd_console")
STATIC = Path(__file__).parent / "static"
TRUSTED_PROXIES = ("127.0.0.1", "::1")
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@dataclass
class Console:
    """What the handlers share. `config` is a callable: a SIGHUP's new tokens take effect."""

    config: Callable[[], Any]
    audit: Any
    workflows: Mapping[str, Any]
    leases: Leases
    clock: Callable[[], float] = time.time
    sessions: Sessions = field(default_factory=Sessions)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    notifier: Any = None
    desk: Desk = None  # type: ignore[assignment]  # where decisions are made (a thread of its own)
    _templates: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.desk is None:
            self.desk = Desk(self.config)

    def templates(self) -> Any:
        """The Jinja2 environment of the console's templates (built on the first page)."""
        if self._templates is None:
            import jinja2

            env = jinja2.Environment(loader=jinja2.PackageLoader("agentd.server.console", "templates"),
                                     autoescape=True)
            _filters(env, self.clock)
            self._templates = env
        return self._templates

    @classmethod
    def local(cls, config: Callable[[], Any], audit: Any, workflows: Mapping[str, Any],
              clock: Callable[[], float] = time.time) -> "Console":
        """The console with its leases in AGENTD_HOME/state/review-leases.sqlite."""
        from agentd.server.console.notify import ReviewNotifier

        state = config().state_dir
        notifier = ReviewNotifier(config, state / "review-notify.sqlite", audit)
        return cls(config, audit, workflows, SqliteLeases(state / "review-leases.sqlite"), clock, Sessions(clock),
                   LoginLimiter(clock), notifier)

    def schema_of(self, workflow: str) -> dict[str, Any] | None:
        found = self.workflows.get(workflow)
        return getattr(found, "output_schema", None)

    async def close(self, _app: web.Application | None = None) -> None:
        """At the HTTP app's cleanup: the local lease store's database, the decisions' thread."""
        closer = getattr(self.leases, "close", None)
        if closer is not None:
            closer()
        await self.desk.close()

    async def record(self, event: str, **fields: Any) -> None:
        """An audit line from the console (logins, lease breaks), durable before the answer."""
        self.audit.append(event, **fields)
        await self.audit.flush()


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]


def session_of(request: web.Request) -> Session | None:
    console = console_of(request)
    return console.sessions.get(request.cookies.get(COOKIE), console.config())


def is_https(request: web.Request) -> bool:
    """TLS here, or a trusted (loopback) reverse proxy that says the browser used https."""
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.remote in TRUSTED_PROXIES and proto == "https"


def client_address(request: web.Request) -> str:
    """The browser's address: a trusted (loopback) proxy's X-Forwarded-For says it (last hop)."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if request.remote in TRUSTED_PROXIES and forwarded.strip():
        return forwarded.split(",")[-1].strip()[:64]
    return request.remote or "?"


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = session_of(request)
    context.setdefault("user", session.user if session else None)
    context.setdefault("csrf", session.csrf if session else "")
    text = request.app[CONSOLE_KEY].templates().get_template(template).render(context)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def message(request: web.Request, status: int, title: str, text: str) -> web.Response:
    return page(request, "message.html", status=status, title=title, text=text)


Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def viewing(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A GET for anyone logged in; others go to the login page."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        if session is None:
            raise web.HTTPSeeOther("/review/login")
        return await handler(request, session)
    return wrapped


def changing(handler: Handler, decide: bool = True) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A POST: a session, its CSRF token and (when `decide`) a role that may decide, else 403."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        if session is None:
            return message(request, 403, "Not logged in", "Log in to the review console first.")
        form = await request.post()
        if not csrf_ok(session, form.get("csrf")):  # type: ignore[arg-type]
            return message(request, 403, "Refused", "This form is missing its security token; "
                           "reload the page and try again. Nothing was changed.")
        if decide and not session.user.can_decide:
            return message(request, 403, "Read only", f"{session.user.name} may look but not decide.")
        return await handler(request, session)
    return wrapped


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/review" or request.path.startswith("/review/"):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)


async def _static_css(_request: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "console.css").read_bytes(), content_type="text/css")


def _filters(env: Any, clock: Callable[[], float]) -> None:
    env.filters["when"] = queue.iso
    env.filters["age"] = lambda seconds: _age(float(seconds))
    env.filters["usd"] = lambda value: f"${float(value or 0):.4f}"
    env.globals["now"] = clock


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def mount(app: web.Application, console: Console) -> None:
    """Add the console's routes to the daemon's app (fixed paths before /review/{ident})."""
    from agentd.server.console import bulk, item, views

    app[CONSOLE_KEY] = console
    app.on_response_prepare.append(_security_headers)
    if console.notifier is not None:
        app.cleanup_ctx.append(console.notifier.background)
    app.on_cleanup.append(console.close)
    app.router.add_get("/review/static/console.css", _static_css)
    views.add_routes(app)
    bulk.add_routes(app)
    item.add_routes(app)


def mount_for(config: Callable[[], Any], audit: Any, workflows: Mapping[str, Any]) -> Callable[[web.Application], None]:
    """What the daemon's HTTP app calls to add the console (state in AGENTD_HOME/state/)."""
    console = Console.local(config, audit, workflows)
    return lambda app: mount(app, console)
