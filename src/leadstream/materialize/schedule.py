"""When the materializer looks again: at once when woken (a trigger was just held), at the
next held send's materialize moment, and every half second at the latest."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from leadstream.domain.send_state import PendingRecord, is_due, ready_at

__all__ = ["IDLE_SECONDS", "Schedule"]

IDLE_SECONDS = 0.5


class Schedule:
    """The materializer's wake-up: an event, and how long to sleep without one."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._sleep = IDLE_SECONDS

    def wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), self._sleep)
        except TimeoutError:
            pass
        self._event.clear()

    def idle(self) -> None:
        self._sleep = IDLE_SECONDS

    def plan(self, held: Iterable[PendingRecord], *, now_ms: int, lead_ms: int) -> None:
        """Sleep until the earliest moment among ``held`` that is not due yet (rather than
        up to half a second after it), at most :data:`IDLE_SECONDS`."""
        moments = [
            ready_at(r, lead_ms=lead_ms)
            for r in held
            if not is_due(r, now_ms=now_ms, lead_ms=lead_ms)
        ]
        if not moments:
            self._sleep = IDLE_SECONDS
            return
        self._sleep = min(IDLE_SECONDS, max(0.0, min(moments) - now_ms) / 1000)
