"""Waiting for the apply agent's counts of a batch sent by the HTTP API.

When the worker that applied a command is the one whose HTTP request waits for it, the
apply agent hands the reply over in-process (:meth:`ReplyWaiter.deliver`): no round trip
through the broker. Other replies travel on the replies topic: every worker reads all of it
from where it stood when the worker started (no consumer group) and hands each reply to the
request waiting for it on this worker; replies for requests served elsewhere are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable

import msgspec
from confluent_kafka import Consumer, KafkaException, TopicPartition

from leadstream.kafka.config import KafkaConnection
from leadstream.kafka.io import poll_batch
from leadstream.wire.commands import Reply, decode_reply

__all__ = ["ReplyWaiter"]

logger = logging.getLogger(__name__)


class ReplyWaiter:
    """Futures keyed by request id, resolved from a consumer thread.

    The reader starts where the topic ended when the worker started. When it fails (the
    broker refused it, the topic is gone, anything unforeseen), it starts again a second
    later with a new consumer, from where it had read, and :meth:`running` is False
    meanwhile (so is the worker's readiness): a request whose reply it missed times out
    with a 503, which a client may safely retry."""

    def __init__(
        self,
        connection: KafkaConnection,
        topic: str,
        *,
        consumer: Callable[[], Consumer] | None = None,
    ) -> None:
        self._topic = topic
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Reply]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reading = threading.Event()
        # Assigned, never subscribed: the group only names this reader.
        group = connection.private_group("replies", uuid.uuid4().hex)
        self._consumer = consumer or (lambda: connection.consumer(group))
        # Where each partition of the topic is to be read from next.
        self._positions: dict[int, int] = {}
        self.restarts = 0
        self._thread = threading.Thread(target=self._run, name="http-replies", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def running(self) -> bool:
        """Is the reader reading (assigned to the topic, no failure since)?"""
        return self._reading.is_set()

    def expect(self, request: str) -> asyncio.Queue[Reply]:
        """Register ``request`` before its commands are sent; replies arrive on the queue."""
        queue: asyncio.Queue[Reply] = asyncio.Queue()
        with self._lock:
            self._waiting[request] = (asyncio.get_running_loop(), queue)
        return queue

    def deliver(self, reply: Reply) -> bool:
        """Hand ``reply`` to its request if that waits in this process; False if not (the
        reply must then go on the topic). Safe to answer from here: the request's command
        was acknowledged by the brokers before the request waited, so a crash after this
        reply replays the command, which applies idempotently."""
        with self._lock:
            target = self._waiting.get(reply.request)
        if target is None:
            return False
        loop, queue = target
        loop.call_soon_threadsafe(queue.put_nowait, reply)
        return True

    def forget(self, request: str) -> None:
        with self._lock:
            self._waiting.pop(request, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = self._consumer()
            except Exception:  # noqa: BLE001 - logged; tried again
                logger.exception("reply reader: no consumer; trying again in 1 s")
                self._stop.wait(1.0)
                continue
            try:
                self._read(consumer)
            except Exception:  # noqa: BLE001 - logged; read again from where it stood
                self._reading.clear()
                self.restarts += 1
                logger.exception("reply reader failed; starting again in 1 s")
                self._stop.wait(1.0)
            finally:
                self._reading.clear()
                try:
                    consumer.close()
                except Exception:  # noqa: BLE001, S110 - a broken consumer may not close
                    pass

    def _read(self, consumer: Consumer) -> None:
        """Read until stopped: from the remembered positions, or from the end the first
        time (replies to requests made before this worker started are nobody's)."""
        meta = consumer.list_topics(self._topic, timeout=30).topics[self._topic]
        if meta.error is not None or not meta.partitions:
            raise KafkaException(meta.error or f"{self._topic} has no partitions")
        tps = []
        for p in meta.partitions:
            position = self._positions.get(p)
            if position is None:
                _low, position = consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout=30
                )
                self._positions[p] = position
            tps.append(TopicPartition(self._topic, p, position))
        consumer.assign(tps)
        self._reading.set()
        while not self._stop.is_set():
            for msg in poll_batch(consumer):
                if msg.error() is not None:
                    continue
                self._positions[int(msg.partition() or 0)] = int(msg.offset() or 0) + 1
                value = msg.value()
                if value:
                    self._hand_over(value)

    def _hand_over(self, value: bytes) -> None:
        try:
            reply = decode_reply(value)
        except (msgspec.DecodeError, ValueError):
            # Not written by a worker: skipped, so that one stray message cannot end
            # every HTTP request's wait.
            logger.warning("replies: skipped an undecodable message")
            return
        with self._lock:
            target = self._waiting.get(reply.request)
        if target is not None:
            loop, queue = target
            loop.call_soon_threadsafe(queue.put_nowait, reply)
