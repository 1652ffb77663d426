"""The HTTP replies reader on a real broker: a reader that fails starts again by itself,
from where it had read, and says it is not running meanwhile (readiness follows it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException

from leadstream.kafka.admin import ensure_topics
from leadstream.kafka.config import KafkaConnection
from leadstream.settings import Settings
from leadstream.streams.replies import ReplyWaiter
from leadstream.wire.commands import ApplyReply, encode_reply
from tests.support.kafka import produce

pytestmark = pytest.mark.integration


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


class Breakable(Consumer):
    """A real consumer whose poll can be made to fail: a fault injected from outside, as a
    fatal librdkafka error would surface (closing a consumer under a polling thread is
    not safe, so it cannot be broken that way)."""

    broken = False

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise KafkaException(KafkaError(KafkaError._FATAL, "injected"))
        return super().poll(*args, **kwargs)


def test_a_failed_reader_starts_again_from_where_it_read(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        data_dir=tmp_path,
    )
    ensure_topics(settings)
    connection = KafkaConnection.of(settings)
    topic = settings.topics.replies
    made: list[Breakable] = []
    fail_next = [False]

    def consumer() -> Consumer:
        config = {**connection.common(), "group.id": f"{settings.app_id}-replies-{len(made)}"}
        made.append(Breakable(config))
        if fail_next[0]:
            # This one fails at its first call (a closed handle raises on every call): the
            # reader must not give up after a failed start either.
            fail_next[0] = False
            made[-1].close()
        return made[-1]

    async def scenario() -> None:
        waiter = ReplyWaiter(connection, topic, consumer=consumer)
        first, second = waiter.expect("first"), waiter.expect("second")
        waiter.start()
        try:
            await asyncio.to_thread(wait_for, waiter.running, "the reader never started")
            produce(connection, topic, [encode_reply(ApplyReply("first", 1, 0))])
            assert await asyncio.wait_for(first.get(), 30) == ApplyReply("first", 1, 0)
            restarts = waiter.restarts
            fail_next[0] = True
            made[-1].broken = True
            await asyncio.to_thread(
                wait_for, lambda: not waiter.running(), "a broken reader said it was running"
            )
            produce(connection, topic, [encode_reply(ApplyReply("second", 2, 3))])
            # Its replacement fails once more, then the next one reads: from where the
            # first stopped, so the reply produced while it was down is not lost.
            await asyncio.to_thread(wait_for, waiter.running, "the reader never came back")
            assert await asyncio.wait_for(second.get(), 30) == ApplyReply("second", 2, 3)
            assert waiter.restarts >= restarts + 2
        finally:
            await asyncio.to_thread(waiter.stop)

    asyncio.run(scenario())
