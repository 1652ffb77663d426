"""faust's aiohttp web driver, serving every connection through a
:class:`~leadstream.web.connections.ConnectionBook`.

faust builds its aiohttp runner itself and gives the listening socket the runner's server
as its protocol factory; :class:`GuardedWeb` swaps in a runner whose factory wraps each
connection's protocol (web/connections.py). The composition root makes faust use this
driver (app.py) and hands it the book (web/routes.py) before the worker starts serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp.web import Application, AppRunner
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
