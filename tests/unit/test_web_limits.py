"""The HTTP API's limits on plain values: the token bucket, requests in flight per worker
and per organization, bodies read unverified, and the connection book (which waiting
connection makes room, header deadlines) on fake transports, and a refusal on real
sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from leadstream.web.connections import ConnectionBook, GuardedProtocol
from leadstream.web.limits import Limits, Refusal, RequestLimits, Ticket, TokenBucket
from leadstream.web.server import _listening_socket


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [0.0] * 5
    wait = bucket.take(0.0)
    assert wait == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0  # one token came back in 0.1 s
    assert bucket.take(0.1) > 0
    assert [bucket.take(10.0) for _ in range(5)] == [0.0] * 5  # never more than the burst
    assert bucket.take(10.0) > 0


def limits(**kw: Any) -> RequestLimits:
    numbers = {
        "max_in_flight": 4,
        "max_in_flight_per_org": 2,
        "org_rate": 100.0,
        "org_burst": 100,
        "max_unverified": 1,
    } | kw
    clock = [0.0]
    made = RequestLimits(Limits(**numbers), clock=lambda: clock[0])
    made.clock = clock  # type: ignore[attr-defined] - the test moves it
    return made


def test_requests_in_flight_are_bounded_per_worker_and_given_back_once() -> None:
    counters = limits()
    tickets = [counters.admit() for _ in range(4)]
    assert all(isinstance(t, Ticket) for t in tickets)
    refused = counters.admit()
    assert isinstance(refused, Refusal) and refused.status == 503 and refused.retry_after >= 1
    first = tickets[0]
    assert isinstance(first, Ticket)
    first.close()
    first.close()  # once only
    assert counters.in_flight == 3
    assert isinstance(counters.admit(), Ticket)


def test_one_organization_cannot_take_every_place() -> None:
    counters = limits(max_in_flight=10)
    flooding = [counters.admit() for _ in range(3)]
    outcomes = [t.join_org("flood") for t in flooding if isinstance(t, Ticket)]
    assert outcomes[:2] == [None, None]
    assert isinstance(outcomes[2], Refusal) and outcomes[2].status == 429
    other = counters.admit()
    assert isinstance(other, Ticket) and other.join_org("quiet") is None
    for t in flooding:
        assert isinstance(t, Ticket)
        t.close()
    again = counters.admit()
    assert isinstance(again, Ticket) and again.join_org("flood") is None


def test_an_organization_rate_is_a_token_bucket_with_retry_after() -> None:
    counters = limits(max_in_flight=1000, max_in_flight_per_org=1000, org_rate=2.0, org_burst=3)
    answers = []
    for _ in range(4):
        ticket = counters.admit()
        assert isinstance(ticket, Ticket)
        answers.append(ticket.join_org("a"))
        ticket.close()
    assert answers[:3] == [None, None, None]
    refused = answers[3]
    assert isinstance(refused, Refusal) and refused.status == 429 and refused.retry_after == 1
    other = counters.admit()
    assert isinstance(other, Ticket) and other.join_org("b") is None  # its own bucket
    counters.clock[0] = 0.5  # type: ignore[attr-defined]
    later = counters.admit()
    assert isinstance(later, Ticket) and later.join_org("a") is None


def test_unverified_bodies_are_few_at_once() -> None:
    counters = limits()
    one, two = counters.admit(), counters.admit()
    assert isinstance(one, Ticket) and isinstance(two, Ticket)
    assert one.start_unverified() is None
    refused = two.start_unverified()
    assert isinstance(refused, Refusal) and refused.status == 503
    one.close()  # gives its unverified place back too
    assert two.start_unverified() is None


# -- connections -------------------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.made = False
        self.received = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True

    def data_received(self, data: bytes) -> None:
        self.received += data


def connect(book: ConnectionBook) -> tuple[GuardedProtocol, FakeTransport, Inner]:
    inner = Inner()
    conn = book.factory(lambda: inner)()
    assert isinstance(conn, GuardedProtocol)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport, inner


def test_beyond_the_limit_a_waiting_connection_makes_room_silent_ones_first() -> None:
    """The oldest that sent nothing, else the oldest with part of a request, else the one
    idle the longest after an answer; refused at once when all are busy."""

    async def scenario() -> None:
        book = ConnectionBook(max_connections=3, header_timeout_s=60, silent_grace_s=0)
        a, ta, _ = connect(book)
        b, tb, _ = connect(book)
        c, tc, _ = connect(book)
        book.request_started(tb)
        book.request_finished(tb)  # b: idle after an answer
        c.data_received(b"GET / HT")  # c: part of a request
        d, td, inner = connect(book)  # a sent nothing: it goes, silently
        assert ta.closed and ta.written == b"" and inner.made
        assert not tb.closed and not tc.closed and book.open_connections == 3
        d.data_received(b"GET /healthz HTTP/1.1\r\n")  # d: part of a request, younger than c
        e, te, _ = connect(book)  # no silent one: the oldest partial (c) goes, told why
        assert tc.closed and b" 503 " in tc.written and b"Retry-After: 1" in tc.written
        assert not td.closed
        f, tf, _ = connect(book)  # e sent nothing: it goes before d or b
        assert te.closed and not td.closed and not tb.closed
        book.request_started(td)
        book.request_started(tf)
        g, tg, _ = connect(book)  # only b waits (idle): it goes
        assert tb.closed
        book.request_started(tg)
        h, th, inner_h = connect(book)  # everyone is busy: refused at once
        assert h.refused and th.closed and b" 503 " in th.written and not inner_h.made
        h.data_received(b"GET / HTTP/1.1\r\n\r\n")
        assert inner_h.received == b""  # a refused connection is never served
        for conn in (a, b, c, e, h):
            conn.connection_lost(None)
        assert book.open_connections == 3

    asyncio.run(scenario())


def test_connections_in_their_first_second_make_room_last() -> None:
    """A burst of new connections is accepted before any is read: a connection that has
    waited less than the grace makes room only when every waiting one is that young."""

    async def scenario() -> None:
        book = ConnectionBook(max_connections=3, header_timeout_s=60, silent_grace_s=0.2)
        slow, t_slow, _ = connect(book)
        slow.data_received(b"GET / HT")  # trickling its headers
        await asyncio.sleep(0.3)
        young, t_young, _ = connect(book)  # silent, young
        probe, t_probe, _ = connect(book)
        probe.data_received(b"GET /healthz HTTP/1.1\r\n")  # young, part of a request
        _, t_new, _ = connect(book)  # the old partial one goes, not the young ones
        assert t_slow.closed and not t_young.closed and not t_probe.closed
        _, t_newer, _ = connect(book)  # all young now: the oldest silent one
        assert t_young.closed and not t_probe.closed and not t_new.closed

    asyncio.run(scenario())


def test_headers_that_do_not_arrive_in_time_close_the_connection() -> None:
    async def scenario() -> None:
        book = ConnectionBook(max_connections=10, header_timeout_s=0.05)
        silent, t_silent, _ = connect(book)
        slow, t_slow, _ = connect(book)
        slow.data_received(b"POST /api/v1/webhooks/lead-events HTTP/1.1\r\nHost: x\r\n")
        served, t_served, _ = connect(book)
        book.request_started(t_served)  # a request being served has no header deadline
        await asyncio.sleep(0.2)
        assert t_silent.closed and t_silent.written == b""
        assert t_slow.closed and t_slow.written.startswith(b"HTTP/1.1 408 ")
        assert b'"header_timeout"' in t_slow.written
        assert not t_served.closed
        book.request_finished(t_served)  # its deadline starts again at its answer
        await asyncio.sleep(0.2)
        assert t_served.closed

    asyncio.run(scenario())


def test_a_connection_whose_headers_are_complete_never_makes_room() -> None:
    """Complete headers (even split across reads) mean a request about to be served: the
    connection leaves the queues, but keeps its deadline until the route takes it."""

    async def scenario() -> None:
        book = ConnectionBook(max_connections=2, header_timeout_s=0.2, silent_grace_s=0)
        ready, t_ready, _ = connect(book)
        ready.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r")
        ready.data_received(b"\n")  # the header end straddles two reads
        slow, t_slow, _ = connect(book)
        slow.data_received(b"GET / HT")
        _, t_new, _ = connect(book)  # the partial one goes, not the one about to be served
        assert t_slow.closed and not t_ready.closed
        _, t_newer, _ = connect(book)  # the silent newcomer goes before it, too
        assert t_new.closed and not t_ready.closed
        await asyncio.sleep(0.3)  # the route never took its request: closed at the deadline
        assert t_ready.closed and t_ready.written.startswith(b"HTTP/1.1 408 ")

    asyncio.run(scenario())


class Served(asyncio.Protocol):
    """A server protocol that takes the first complete request it reads, and keeps it."""

    def __init__(self, book: ConnectionBook) -> None:
        self.book = book
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.book.request_started(self.transport)


def test_a_refused_client_reads_its_503_instead_of_a_reset() -> None:
    """On real sockets that are handed over with their request already unread (as the
    worker's listening socket does): the worker reads and drops those bytes before it
    closes, so the client gets the answer rather than a connection reset."""

    async def scenario() -> None:
        book = ConnectionBook(max_connections=2, header_timeout_s=5, silent_grace_s=0)
        sock = _listening_socket("127.0.0.1", 0, backlog=16, defer_s=5)
        port = sock.getsockname()[1]
        server = await asyncio.get_running_loop().create_server(
            book.factory(lambda: Served(book)), sock=sock
        )
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 50_000
        async with server:
            clients = []
            for _ in range(3):  # two busy with a request, the third refused at once
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                await writer.drain()
                clients.append((reader, writer))
                await asyncio.sleep(0.2)
            reader, writer = clients[-1]
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
            assert b'"too_many_connections"' in answer
            for _, writer in clients:
                writer.close()

    asyncio.run(scenario())


class SocketTransport(FakeTransport):
    """A fake transport over a real socket, which the event loop never reads."""

    def __init__(self, sock: Any) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default


def test_unread_bytes_on_the_socket_are_looked_at_before_a_connection_makes_room() -> None:
    """A connection whose whole request waits unread is about to be served; one with part
    of a request unread makes room, its bytes read and dropped first."""

    import socket

    def run(request: bytes) -> tuple[SocketTransport, SocketTransport, socket.socket]:
        async def scenario() -> tuple[SocketTransport, SocketTransport]:
            book = ConnectionBook(max_connections=1, header_timeout_s=60, silent_grace_s=0)
            first, second = GuardedProtocol(book, Inner()), GuardedProtocol(book, Inner())
            theirs.sendall(request)
            t_first, t_second = SocketTransport(ours), SocketTransport(None)
            first.connection_made(t_first)
            second.connection_made(t_second)
            return t_first, t_second

        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        t_first, t_second = asyncio.run(scenario())
        theirs.close()
        return t_first, t_second, ours

    t_first, t_second, ours = run(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not t_first.closed  # its whole request waits: kept, the newcomer refused
    assert t_second.closed and b" 503 " in t_second.written
    assert ours.recv(100).startswith(b"GET /healthz")  # looked at, not consumed
    ours.close()

    t_first, t_second, ours = run(b"GET /healthz HTTP/1.1\r\nHo")
    assert t_first.closed and b" 503 " in t_first.written  # part of a request: made room
    assert not t_second.closed
    assert ours.recv(100) == b""  # its unread bytes were read and dropped (then the peer left)
    ours.close()


def test_the_rest_of_a_refused_body_is_never_taken_for_a_request() -> None:
    """After an answer that left the body unread, the body's bytes that follow (aiohttp
    reads and drops them) may hold a blank line: the connection still makes room."""

    async def scenario() -> None:
        book = ConnectionBook(max_connections=1, header_timeout_s=60, silent_grace_s=0)
        refused, t_refused, _ = connect(book)
        refused.data_received(b"POST /x HTTP/1.1\r\nContent-Length: 99999\r\n\r\n")
        book.request_started(t_refused)
        book.request_finished(t_refused, body_read=False)
        refused.data_received(b"body\r\n\r\nmore body")
        _, t_new, _ = connect(book)
        assert t_refused.closed and not t_new.closed

    asyncio.run(scenario())
