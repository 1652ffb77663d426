"""A flood of hostile and greedy HTTP clients against one worker, run as its own process
(``python -m tests.support.flood SPEC_JSON``) so that it never shares a GIL with the test
that watches the worker. It prints one JSON object: per kind of client, how its requests
were answered.

Kinds (each a number of concurrent loops, for ``seconds``):

* ``declared``: requests with a bogus credential (Bearer x, a v1 signature under an unknown
  key id) declaring a 16 or 64 MiB body and sending 1 MiB of it: the answer must come
  without the rest;
* ``body_only``: webhook POSTs with a body-only signature and no key id (their
  organization is in the body, so the body must be read): 8 MiB bodies with a wrong
  signature, and bodies that stop after 1 MiB;
* ``trickle``: a bogus credential and a body sent at 1 KB/s: when did the answer come;
* ``slow_headers``: a request head sent a byte a second;
* ``idle``: connections opened and held without a byte;
* ``greedy``: a valid organization's small webhook POSTs, back to back on kept-alive
  connections.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

MiB = 1 << 20


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}
        self.notes: dict[str, list[float]] = {}

    def count(self, kind: str, outcome: str) -> None:
        self.counts.setdefault(kind, Counter())[outcome] += 1

    def note(self, kind: str, value: float) -> None:
        self.notes.setdefault(kind, []).append(value)

    def summary(self) -> dict[str, Any]:
        return {
            "counts": {k: dict(v) for k, v in self.counts.items()},
            "notes": {
                k: {"n": len(v), "max": max(v), "min": min(v)} for k, v in self.notes.items()
            },
        }


async def read_status(reader: asyncio.StreamReader, timeout: float) -> str:
    """The status of the answer that arrives within ``timeout``, else why none did."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except TimeoutError:
        return "no-answer"
    except (asyncio.IncompleteReadError, ConnectionError):
        return "closed"
    return head.split(b" ", 2)[1].decode()


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
    except Exception:  # noqa: BLE001, S110 - the server may have closed it first
        pass


async def declared(spec: dict[str, Any], tally: Tally, until: float, n: int) -> None:
    host, port = spec["host"], spec["port"]
    credentials = [
        ("bearer", "Authorization: Bearer x\r\n"),
        (
            "unknown-key",
            f"X-Leadstream-Key-Id: sk_unknown\r\nX-Leadstream-Timestamp: {int(time.time())}\r\n"
            f"X-Leadstream-Signature: v1={'0' * 64}\r\n",
        ),
        (  # a real key id (no secret: it travels in clear) with a wrong signature
            "known-key",
            f"X-Leadstream-Key-Id: {spec['known_key_id']}\r\n"
            f"X-Leadstream-Timestamp: {int(time.time())}\r\n"
            f"X-Leadstream-Signature: v1={'0' * 64}\r\n"
            f"X-Leadstream-Content-SHA256: {'0' * 64}\r\n",
        ),
    ]
    targets = [
        ("POST /api/v1/webhooks/lead-events", 16 * MiB, "application/json"),
        ("POST /api/v1/campaigns/flood/audience", 64 * MiB, "text/csv"),
    ]
    chunk = b"x" * MiB
    i = n
    while time.monotonic() < until:
        name, credential = credentials[i % len(credentials)]
        line, size, media = targets[(i // len(credentials)) % 2]
        i += 1
        try:
            reader, writer = await _connect(host, port)
        except OSError:
            tally.count("declared", "connect-failed")
            continue
        try:
            head = (
                f"{line} HTTP/1.1\r\nHost: {host}\r\n{credential}Content-Type: {media}\r\n"
                f"Content-Length: {size}\r\n\r\n"
            )
            writer.write(head.encode() + chunk)
            try:
                await asyncio.wait_for(writer.drain(), 10)
            except (TimeoutError, ConnectionError):
                pass
            tally.count("declared", f"{name}:{await read_status(reader, 10)}")
        finally:
            _close(writer)


async def body_only(spec: dict[str, Any], tally: Tally, until: float, n: int) -> None:
    host, port = spec["host"], spec["port"]
    pad = b"x" * (8 * MiB)
    whole = b'{"organizationId": "' + spec["org"].encode() + b'", "pad": "' + pad + b'"}'
    i = n
    while time.monotonic() < until:
        cut = i % 2 == 1  # every other one stops after 1 MiB
        i += 1
        try:
            reader, writer = await _connect(host, port)
        except OSError:
            tally.count("body_only", "connect-failed")
            continue
        try:
            head = (
                f"POST /api/v1/webhooks/lead-events HTTP/1.1\r\nHost: {host}\r\n"
                f"X-Leadstream-Signature: sha256={'0' * 64}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(whole)}\r\n\r\n"
            )
            writer.write(head.encode() + (whole[:MiB] if cut else whole))
            try:
                await asyncio.wait_for(writer.drain(), 30)
            except (TimeoutError, ConnectionError):
                pass
            status = await read_status(reader, 40)
            tally.count("body_only", f"{'cut' if cut else 'whole'}:{status}")
        finally:
            _close(writer)


async def trickle(spec: dict[str, Any], tally: Tally, until: float, n: int) -> None:
    host, port = spec["host"], spec["port"]
    while time.monotonic() < until:
        try:
            reader, writer = await _connect(host, port)
        except OSError:
            tally.count("trickle", "connect-failed")
            continue
        started = time.monotonic()
        try:
            writer.write(
                (
                    f"POST /api/v1/webhooks/lead-events HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {16 * MiB}\r\n\r\n"
                ).encode()
            )
            answer = asyncio.ensure_future(read_status(reader, 30))
            while not answer.done() and time.monotonic() - started < 30:
                try:
                    writer.write(b"x" * 100)  # 1 KB/s
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.sleep(0.1)
            status = await answer
            tally.count("trickle", status)
            tally.note("trickle_answered_after_s", time.monotonic() - started)
        finally:
            _close(writer)


async def slow_headers(spec: dict[str, Any], tally: Tally, until: float, n: int) -> None:
    host, port = spec["host"], spec["port"]
    head = f"POST /api/v1/webhooks/lead-events HTTP/1.1\r\nHost: {host}\r\nX-Pad: " + "a" * 500
    while time.monotonic() < until:
        try:
            reader, writer = await _connect(host, port)
        except OSError:
            tally.count("slow_headers", "connect-failed")
            continue
        started = time.monotonic()
        answer = asyncio.ensure_future(read_status(reader, 60))
        try:
            for byte in head.encode():
                if answer.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(1.0)
            status = await answer
            tally.count("slow_headers", status)
            tally.note("slow_headers_closed_after_s", time.monotonic() - started)
        except ConnectionError:
            tally.count("slow_headers", "reset")
        finally:
            _close(writer)


async def idle(spec: dict[str, Any], tally: Tally, until: float, n: int) -> None:
    """Open a connection, send nothing, hold it until the server closes it or the end;
    then open another."""
    host, port = spec["host"], spec["port"]
    while time.monotonic() < until:
        try:
            reader, writer = await _connect(host, port)
        except OSError:
            tally.count("idle", "connect-failed")
            await asyncio.sleep(0.1)
            continue
        started = time.monotonic()
        try:
            data = await asyncio.wait_for(reader.read(65536), max(0.1, until - time.monotonic()))
            tally.count("idle", "answered" if data else "closed")
            tally.note("idle_closed_after_s", time.monotonic() - started)
        except TimeoutError:
            tally.count("idle", "held-to-the-end")
        except ConnectionError:
            tally.count("idle", "reset")
        finally:
            _close(writer)


async def greedy(spec: dict[str, Any], tally: Tally, until: float, n: int) -> None:
    host, port = spec["host"], spec["port"]
    body = json.dumps(
        {
            "organizationId": spec["greedy_org"],
            "eventType": "greedy",
            "events": [{"phoneE164": f"+1444555{n:04d}", "occurredAt": "2026-05-12T18:34:00Z"}],
        }
    ).encode()
    request = (
        f"POST /api/v1/webhooks/lead-events HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {spec['greedy_key']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < until:
        try:
            if writer is None:
                reader, writer = await _connect(host, port)
            assert reader is not None
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            status = head.split(b" ", 2)[1].decode()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            tally.count("greedy", status)
            if b"connection: close" in head.lower():
                _close(writer)
                writer = None
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            tally.count("greedy", "connection-lost")
            if writer is not None:
                _close(writer)
            writer = None
    if writer is not None:
        _close(writer)


KINDS = {
    "declared": declared,
    "body_only": body_only,
    "trickle": trickle,
    "slow_headers": slow_headers,
    "idle": idle,
    "greedy": greedy,
}


async def flood(spec: dict[str, Any]) -> dict[str, Any]:
    tally = Tally()
    until = time.monotonic() + spec["seconds"]
    loops = [
        KINDS[kind](spec, tally, until, n)
        for kind, count in spec["loops"].items()
        for n in range(count)
    ]
    await asyncio.gather(*loops)
    return tally.summary()


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(flood(spec))), flush=True)


if __name__ == "__main__":
    main()
