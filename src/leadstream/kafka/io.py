"""Producing with backpressure and polling what is there: shared by every confluent-kafka
client of the product."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, Message, Producer

__all__ = ["poll_batch", "produce"]


def produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None = None,
    *,
    partition: int | None = None,
    on_delivery: Callable[[Any, Any], None] | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> None:
    """``producer.produce``, waiting for room when the local queue is full."""
    kwargs: dict[str, Any] = {"value": value, "key": key}
    if partition is not None:
        kwargs["partition"] = partition
    if headers:
        kwargs["headers"] = list(headers)
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:
            producer.poll(0.1)


def poll_batch(consumer: Consumer, timeout: float = 0.1, most: int = 500) -> list[Message]:
    """What is there now: waits up to ``timeout`` for the first message only.

    (``Consumer.consume(n, timeout)`` waits the whole timeout unless n arrive, which put a
    fixed delay on every HTTP answer that waits for a reply.)
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(most - 1, 0)]
