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

import msgspec
from confluent_kafka import TopicPartition

from leadstream.kafka.config import KafkaConnection
from leadstream.kafka.io import poll_batch
from leadstream.wire.commands import Reply, decode_reply

__all__ = ["ReplyWaiter"]

logger = logging.getLogger(__name__)


class ReplyWaiter:
    """Futures keyed by request id, resolved from a consumer thread."""

    def __init__(self, connection: KafkaConnection, topic: str) -> None:
        self._topic = topic
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Reply]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Event()
        # Assigned, never subscribed: the group only names this reader.
        self._consumer = connection.consumer(connection.private_group("replies", uuid.uuid4().hex))
        self._thread = threading.Thread(target=self._run, name="http-replies", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def started(self) -> bool:
        return self._started.is_set()

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
        try:
            meta = self._consumer.list_topics(self._topic, timeout=30).topics[self._topic]
            tps = []
            for p in meta.partitions:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout=30
                )
                tps.append(TopicPartition(self._topic, p, high))
            self._consumer.assign(tps)
            self._started.set()
            while not self._stop.is_set():
                for msg in poll_batch(self._consumer):
                    value = msg.value()
                    if msg.error() is not None or not value:
                        continue
                    try:
                        reply = decode_reply(value)
                    except (msgspec.DecodeError, ValueError):
                        # Not written by a worker: skipped, so that one stray message
                        # cannot end every HTTP request's wait.
                        logger.warning("replies: skipped an undecodable message")
                        continue
                    with self._lock:
                        target = self._waiting.get(reply.request)
                    if target is not None:
                        loop, queue = target
                        loop.call_soon_threadsafe(queue.put_nowait, reply)
        except Exception:  # noqa: BLE001 - logged; requests then time out with 503
            logger.exception("reply reader stopped")
        finally:
            self._consumer.close()
