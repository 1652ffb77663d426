"""An open-loop HTTP/1.1 load generator that costs its machine little.

httpx's async client spends about a millisecond of CPU a request: at 500 requests a second
it took a whole core of the bench's two, and the worker it measured waited for the CPU.
This one writes each request as prepared bytes on a kept-alive connection and reads the
answer by its Content-Length, tens of microseconds a request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["steady_posts"]

MAX_CONNECTIONS = 64


# A kept-alive connection idle this long is not used again: the worker closes one idle for
# LEADSTREAM_HTTP_HEADER_TIMEOUT_SECONDS (10 s by default), as servers do.
IDLE_SECONDS = 5.0


class _Connections:
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._open = 0
        self._freed = asyncio.Condition()

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with self._freed:
            while not self._idle and self._open >= MAX_CONNECTIONS:
                await self._freed.wait()
            while self._idle:
                reader, writer, since = self._idle.pop()
                if time.perf_counter() - since < IDLE_SECONDS:
                    return reader, writer
                writer.close()  # maybe closed by the worker already
                self._open -= 1
            self._open += 1
        return await asyncio.open_connection(self._host, self._port)

    async def give_back(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        async with self._freed:
            self._idle.append((*conn, time.perf_counter()))
            self._freed.notify()

    def close(self) -> None:
        for _reader, writer, _since in self._idle:
            writer.close()


async def _post(conns: _Connections, request: bytes) -> tuple[int, bytes]:
    conn = await conns.take()
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length)
    await conns.give_back(conn)
    return status, body


async def steady_posts(
    url: str,
    headers: dict[str, str],
    body_of: Callable[[int], bytes],
    *,
    rate: float,
    seconds: float,
    first: int = 0,
) -> list[float]:
    """POST ``body_of(i)`` for i in first..first+rate*seconds, request i due at start +
    (i-first)/rate whatever the answers do; each latency counts from when its request was
    due (a stall shows in every request it delays). Seconds, in order of completion; any
    answer but 200 ends the run with an error."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    conns = _Connections(host, port)
    latencies: list[float] = []
    total = int(rate * seconds)

    async def one(i: int, due: float) -> None:
        body = body_of(i)
        request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        status, answer = await _post(conns, request)
        if status != 200:
            raise RuntimeError(f"POST {parts.path} answered {status}: {answer[:200]!r}")
        latencies.append(time.perf_counter() - due)

    start = time.perf_counter() + 0.5
    try:
        await asyncio.gather(*(one(first + i, start + i / rate) for i in range(total)))
    finally:
        conns.close()
    return latencies
