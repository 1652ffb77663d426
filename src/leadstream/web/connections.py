"""The worker's HTTP connections, guarded below aiohttp: at most
``LEADSTREAM_HTTP_MAX_CONNECTIONS`` open, and a request's headers complete within
``LEADSTREAM_HTTP_HEADER_TIMEOUT_SECONDS`` of the connection's start or of its previous
answer (aiohttp has no header timeout of its own: a client that trickles its headers, or
sends none, would hold a connection for ever).

Each connection's protocol (aiohttp's request handler) is wrapped by a
:class:`GuardedProtocol` that sees it open, receive bytes and close; the route middleware
(web/http.py) tells the :class:`ConnectionBook` when a request starts and when its answer
is done. While a connection waits for a request it is in one of three queues, oldest
first: *silent* (nothing received yet), *partial* (part of a request received) and *idle*
(after an answer).

* A connection still waiting at its deadline is closed: with a JSON 408 when part of a
  request had arrived, silently when nothing had (an idle kept-alive connection).
* A new connection beyond the limit closes a waiting one to make room: among those that
  have waited for more than a second, the oldest that sent nothing, else the oldest with
  part of a request, else the one idle the longest after an answer; only when every
  waiting connection is younger than that, the same order among them. A client that only
  opens connections, or trickles its headers, holds those that go first; a health check,
  which sends its request at once, is served long before it is a second old, even while
  the event loop, busy, has not read it yet (a socket with unread bytes is not silent).
  When every connection is busy with a request (those are bounded by the request limits,
  web/limits.py), the new one is refused at once with a JSON 503.
* A connection whose request headers are complete (read, or waiting unread on its socket)
  is no longer waiting: it is about to be served, and never makes room for another. After
  an answer that left the request's body unread, the rest of that body is not mistaken for
  a new request (see :meth:`ConnectionBook.request_finished`).
* A connection is closed only once the bytes waiting unread on its socket are read and
  dropped: closing a socket with unread bytes resets it, and the client's system then
  throws away the answer written just before (a 503 with Retry-After, which a client
  should see).
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import json
import os
import socket
import termios
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["SILENT_GRACE_S", "ConnectionBook", "GuardedProtocol", "canned_answer"]


def canned_answer(status: int, reason: str, code: str, message: str, **headers: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error body that closes the connection, for the
    cases where no request object exists yet."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


_HEADER_TIMEOUT = canned_answer(
    408, "Request Timeout", "header_timeout", "the request's headers did not arrive in time"
)
_EVICTED = canned_answer(
    503,
    "Service Unavailable",
    "too_many_connections",
    "this worker holds as many connections as it takes; retry",
    Retry_After="1",
)
_REFUSED = _EVICTED
# Silent connections whose socket is asked for unread bytes, at most, per new connection.
_PEEKS = 16
# Unread bytes looked at for the end of a request's headers, and read and dropped before
# a close, at most.
_PEEK_BYTES = 16 * 1024
_DRAIN_BYTES = 256 * 1024
_HEADERS_END = b"\r\n\r\n"
# A waiting connection makes room for a new one only once it has waited this long, unless
# every waiting connection is younger.
SILENT_GRACE_S = 1.0


def _oldest(
    queue: OrderedDict[GuardedProtocol, None], before: float | None
) -> GuardedProtocol | None:
    """The first of ``queue``, if it waits since before ``before`` (any, when None)."""
    conn = next(iter(queue), None)
    if conn is None or (before is not None and conn.since > before):
        return None
    return conn


def _fileno(conn: GuardedProtocol) -> int | None:
    sock = conn.transport.get_extra_info("socket") if conn.transport is not None else None
    return None if sock is None else int(sock.fileno())


def _pending(conn: GuardedProtocol) -> bool:
    """Whether bytes wait unread on the connection's socket (one ioctl)."""
    fd = _fileno(conn)
    if fd is None:
        return False
    waiting = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, waiting)
    except OSError:
        return False
    return waiting[0] > 0


def _headers_waiting(conn: GuardedProtocol) -> bool:
    """Whether the unread bytes on the connection's socket hold the end of a request's
    headers (looked at, not consumed: the event loop reads them later)."""
    fd = _fileno(conn)
    if fd is None:
        return False
    try:
        # A second descriptor of the same socket: asyncio's socket object offers no recv.
        with socket.socket(fileno=os.dup(fd)) as view:
            unread = view.recv(_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    return _HEADERS_END in unread


def _drain(conn: GuardedProtocol) -> None:
    """Read and drop the bytes waiting unread on the connection's socket (up to
    ``_DRAIN_BYTES``), so that closing it ends it cleanly instead of resetting it."""
    fd = _fileno(conn)
    if fd is None:
        return
    drained = 0
    try:
        while drained < _DRAIN_BYTES:
            chunk = os.read(fd, 64 * 1024)  # the socket is non-blocking: never waits
            if not chunk:
                return
            drained += len(chunk)
    except OSError:  # nothing more to read (EAGAIN), or the peer is gone
        return


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, seen by the book: every call is passed on,
    unless the book refused the connection (then it is never passed on at all)."""

    def __init__(self, book: ConnectionBook, inner: asyncio.Protocol) -> None:
        self._book = book
        self._inner = inner
        self.transport: asyncio.Transport | None = None
        self.refused = False
        # While it waits for a request: since when, whether bytes of one arrived, and the
        # deadline's timer.
        self.waiting = True
        self.since = 0.0
        self.partial = False
        self.timer: asyncio.TimerHandle | None = None
        # The last bytes received while waiting (a header end may straddle two reads);
        # None after an answer that left the request's body unread.
        self.tail: bytes | None = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise TypeError("an HTTP connection is a stream transport")
        self.transport = transport
        if not self._book.opened(self):
            self.refused = True
            self.close_with(_REFUSED)
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.waiting and data:
            if not self.partial:
                self.partial = True
                self._book.received(self)
            if self.tail is not None:  # None: the rest of a body left unread
                seen = self.tail + data
                if _HEADERS_END in seen:
                    self.tail = b""
                    self._book.headers_complete(self)
                else:
                    self.tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._book.closed(self)
        if not self.refused:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self.refused:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self._inner.resume_writing()

    def close_with(self, answer: bytes | None) -> None:
        """Close the connection, after writing ``answer`` when given."""
        if self.transport is None or self.transport.is_closing():
            return
        _drain(self)
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()


class ConnectionBook:
    """Every open connection of one worker's HTTP server, and whether it waits for a
    request (used on the server's event loop only)."""

    def __init__(
        self,
        max_connections: int,
        header_timeout_s: float,
        on_close: Callable[[str], None] = lambda _reason: None,
        silent_grace_s: float = SILENT_GRACE_S,
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self._grace = silent_grace_s
        self._on_close = on_close  # counts closes by reason (metrics)
        self._open: dict[Any, GuardedProtocol] = {}  # by transport
        # Waiting connections, oldest first: no byte yet, part of a request, idle after
        # an answer (the order they make room in).
        self._silent: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self._partial: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self._idle: OrderedDict[GuardedProtocol, None] = OrderedDict()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory to serve with: ``inner``'s protocols, guarded."""
        return lambda: GuardedProtocol(self, inner())

    # -- the protocol's events -----------------------------------------------------------

    def opened(self, conn: GuardedProtocol) -> bool:
        """Take ``conn`` in (making room by closing the oldest waiting connection when
        full), or False: every connection is busy, refuse it."""
        if len(self._open) >= self.max_connections:
            victim = self._victim()
            if victim is None:
                self._on_close("refused")
                return False
            self._forget(victim)
            victim.close_with(_EVICTED if victim.partial else None)
            self._on_close("evicted")
        self._open[conn.transport] = conn
        self._wait(conn, self._silent)
        return True

    def _victim(self) -> GuardedProtocol | None:
        """The waiting connection to close for a new one, in the order of the module's
        docstring; None when every connection is busy with a request."""
        old = asyncio.get_running_loop().time() - self._grace
        for opened_before in (old, None):
            victim = (
                self._truly_silent(opened_before)
                or self._truly_partial(opened_before)
                or self._truly_idle(opened_before)
            )
            if victim is not None:
                return victim
        return None

    def _truly_silent(self, opened_before: float | None) -> GuardedProtocol | None:
        """The oldest connection that sent nothing (and waits since before
        ``opened_before``, when given), its socket asked: a client whose request the event
        loop has not read yet is not silent."""
        return self._first(self._silent, opened_before)

    def _truly_partial(self, opened_before: float | None) -> GuardedProtocol | None:
        """The oldest connection with part of a request, unless the rest of its headers
        waits unread on its socket."""
        return self._first(self._partial, opened_before)

    def _truly_idle(self, opened_before: float | None) -> GuardedProtocol | None:
        """The connection idle the longest after an answer, unless its next request waits
        unread on its socket."""
        return self._first(self._idle, opened_before)

    def _first(
        self, queue: OrderedDict[GuardedProtocol, None], opened_before: float | None
    ) -> GuardedProtocol | None:
        """The first of ``queue`` (waiting since before ``opened_before``, when given)
        whose socket holds no more than the queue says: one whose unread bytes complete a
        request's headers is about to be served and leaves the queues, one with unread
        bytes that are not a whole header moves from silent or idle to partial."""
        for _ in range(_PEEKS):
            conn = _oldest(queue, opened_before)
            if conn is None or (queue is not self._partial and not _pending(conn)):
                return conn
            if conn.tail is not None and _headers_waiting(conn):
                self.headers_complete(conn)
            elif queue is self._partial:
                return conn
            else:
                self.received(conn)
        return None

    def received(self, conn: GuardedProtocol) -> None:
        """The first bytes of a request came on a waiting connection."""
        conn.partial = True
        for queue in (self._silent, self._idle):
            if conn in queue:
                del queue[conn]
                self._partial[conn] = None

    def headers_complete(self, conn: GuardedProtocol) -> None:
        """A waiting connection's request headers are complete: it is about to be served
        and leaves the queues (its deadline stays until the route middleware takes the
        request, see :meth:`request_started`)."""
        conn.partial = True
        for queue in (self._silent, self._partial, self._idle):
            queue.pop(conn, None)

    def closed(self, conn: GuardedProtocol) -> None:
        self._forget(conn)

    def request_started(self, transport: Any) -> None:
        """The route middleware took a request of this connection."""
        conn = self._open.get(transport)
        if conn is None:
            return
        conn.waiting = False
        self._stop_waiting(conn)

    def request_finished(self, transport: Any, *, body_read: bool = True) -> None:
        """The request's answer is done: the connection waits for the next one. When its
        body was not read whole (a refusal), what arrives next is the rest of that body
        (aiohttp reads it and drops it before it reads another request), never taken for
        a request's headers: the connection stays one that may make room."""
        conn = self._open.get(transport)
        if conn is None:
            return
        self._wait(conn, self._idle)
        if not body_read:
            conn.tail = None

    # -- waiting -------------------------------------------------------------------------

    def _wait(self, conn: GuardedProtocol, queue: OrderedDict[GuardedProtocol, None]) -> None:
        self._stop_waiting(conn)
        loop = asyncio.get_running_loop()
        conn.waiting, conn.partial, conn.since, conn.tail = True, False, loop.time(), b""
        queue[conn] = None
        conn.timer = loop.call_at(conn.since + self.header_timeout_s, self._expire, conn)

    def _stop_waiting(self, conn: GuardedProtocol) -> None:
        self._silent.pop(conn, None)
        self._partial.pop(conn, None)
        self._idle.pop(conn, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _expire(self, conn: GuardedProtocol) -> None:
        conn.timer = None
        if not conn.waiting or conn.transport not in self._open:
            return
        self._forget(conn)
        if conn.partial:
            conn.close_with(_HEADER_TIMEOUT)
            self._on_close("header_timeout")
        else:
            conn.close_with(None)
            self._on_close("idle")

    def _forget(self, conn: GuardedProtocol) -> None:
        self._stop_waiting(conn)
        if self._open.get(conn.transport) is conn:
            del self._open[conn.transport]
