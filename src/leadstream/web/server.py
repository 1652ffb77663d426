"""faust's aiohttp web driver, serving every connection through a
:class:`~leadstream.web.connections.ConnectionBook`.

faust builds its aiohttp runner itself and gives the listening socket the runner's server
as its protocol factory; :class:`GuardedWeb` swaps in a runner whose factory wraps each
connection's protocol (web/connections.py), and listens on a socket of its own:

* with a backlog of four times the connection limit (aiohttp's 128 overflowed under a
  flood of connections, and the kernel then dropped new ones, health checks included);
* with ``TCP_DEFER_ACCEPT`` where the system has it: the kernel hands a connection over
  only once its first bytes arrived (or the header timeout passed), so that connections
  opened and left silent never take a place among the worker's connections.

The composition root makes faust use this driver (app.py) and hands it the book
(web/routes.py) before the worker starts serving.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable
from typing import Any

from aiohttp.web import Application, AppRunner, BaseSite, SockSite
from faust.web.drivers.aiohttp import Web

from leadstream.web.connections import ConnectionBook

__all__ = ["GuardedWeb"]


class _GuardedRunner(AppRunner):
    """An aiohttp runner whose sites serve ``book``'s guarded protocols."""

    def __init__(self, app: Application, book: ConnectionBook, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._book = book

    @property
    def server(self) -> Callable[[], asyncio.Protocol] | None:  # type: ignore[override]
        # A site reads this once, as the listening socket's protocol factory; the runner's
        # own shutdown uses the aiohttp server itself, which still knows every connection
        # it was given.
        inner = super().server
        return None if inner is None else self._book.factory(inner)


class GuardedWeb(Web):
    """The aiohttp driver, with the worker's connection limits once :meth:`guard` is
    called (before the server starts)."""

    _book: ConnectionBook | None = None

    def guard(self, book: ConnectionBook) -> None:
        """Serve every connection through ``book``."""
        self._book = book

    async def start_server(self) -> None:
        if self._book is not None:
            self._runner = _GuardedRunner(self.web_app, self._book, access_log=None)
        await super().start_server()

    def _new_transport_tcp(self) -> BaseSite:
        if self._book is None:
            return super()._new_transport_tcp()
        conf = self.app.conf
        backlog = 4 * self._book.max_connections
        sock = _listening_socket(
            conf.web_bind,
            conf.web_port,
            backlog=backlog,
            defer_s=math.ceil(self._book.header_timeout_s),
        )
        # The event loop listens again with the site's backlog: the same one.
        return SockSite(self._runner, sock, ssl_context=conf.web_ssl_context, backlog=backlog)


def _listening_socket(host: str, port: int, *, backlog: int, defer_s: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (the first address it resolves to)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        defer = getattr(socket, "TCP_DEFER_ACCEPT", None)
        if defer is not None:
            sock.setsockopt(socket.IPPROTO_TCP, defer, defer_s)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
