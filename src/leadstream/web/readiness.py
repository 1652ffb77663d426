"""Whether the worker is ready, kept current in the background, so that ``/readyz`` answers
at once whatever the load: asking the broker takes a thread and up to two seconds, which a
probe under a flood of requests must never wait for."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Readiness"]

logger = logging.getLogger(__name__)

# How often readiness is asked again; a probe sees a state at most this old (plus the
# time the question takes: a broker that does not answer is given two seconds). More often
# while not ready, so that a (re)starting worker is seen ready within a fifth of a second.
POLL_SECONDS = 1.0
STARTING_POLL_SECONDS = 0.2


class Readiness:
    """The partitions the worker serves when it is ready, None while it is not, as last
    found by :meth:`run`."""

    def __init__(self, probe: Callable[[], Awaitable[list[int] | None]]) -> None:
        self._probe = probe
        self._partitions: list[int] | None = None

    def partitions(self) -> list[int] | None:
        return self._partitions

    async def refresh(self) -> list[int] | None:
        """Ask once, and keep the answer (a probe that fails is not ready)."""
        try:
            self._partitions = await self._probe()
        except Exception:  # noqa: BLE001 - whatever broke, the worker is not ready meanwhile
            logger.warning("readiness could not be determined", exc_info=True)
            self._partitions = None
        return self._partitions

    async def run(self) -> None:
        """Refresh every :data:`POLL_SECONDS` (:data:`STARTING_POLL_SECONDS` while not
        ready), for as long as the worker runs."""
        while True:
            ready = await self.refresh()
            await asyncio.sleep(POLL_SECONDS if ready is not None else STARTING_POLL_SECONDS)
