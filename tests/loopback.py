"""An aiohttp app served on 127.0.0.1 for tests: in-process (`async with`) or in a thread of
its own (`with`), the latter reachable by agentd subprocesses and synchronous tests."""
from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Self

from aiohttp import web


class LoopbackServer:
    """Subclasses add their routes in `routes(app)`; `port` 0 picks a free one at start."""

    port: int = 0
    client_max_size: int = 1024 ** 2
    shutdown_timeout_s: float = 0.5
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # -- in-process ----------------------------------------------------------------------------
    async def start(self) -> Self:
        app = web.Application(client_max_size=self.client_max_size)
        self.routes(app)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse its port
        try:
            sock.bind(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout_s)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()  # the server owns sock now
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- in a thread with its own event loop ---------------------------------------------------
    def start_thread(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            assert self._loop is not None
            try:
                self._loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the starting thread, which raises it
                failure.append(exc)
                return
            finally:
                ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())

        self._thread = threading.Thread(target=serve, name=f"{type(self).__name__.lower()}-{self.port}",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._join()
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        if self._loop is None:
            return
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._join()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(10)
        if self._loop is not None:
            self._loop.close()
        self._thread = self._loop = None

    def __enter__(self) -> Self:
        return self.start_thread()

    def __exit__(self, *exc: Any) -> None:
        self.stop_thread()
