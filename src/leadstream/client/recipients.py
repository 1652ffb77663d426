"""Reading one send's recipient list from ``send-recipients``, as a dispatcher does."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from confluent_kafka import KafkaError

from leadstream.kafka.config import KafkaConnection

__all__ = ["SendList", "read_send"]


@dataclass(slots=True)
class SendList:
    """What was read for a send: its chunks' recipients and its summary (None on timeout)."""

    recipients: list[dict[str, Any]]
    chunks: int
    summary: dict[str, Any] | None


def _matches(key: bytes | None, organization_id: str | None, send_id: str) -> bool:
    if key is None:
        return False
    org, _, send = key.decode(errors="replace").partition(":")
    return send == send_id and (organization_id is None or org == organization_id)


def iter_send(
    connection: KafkaConnection,
    topic: str,
    send_id: str,
    *,
    organization_id: str | None,
    timeout: float,
) -> Iterator[dict[str, Any]]:
    """Chunk and summary values of the send in topic order, read_committed, until the
    summary or ``timeout`` seconds without it."""
    consumer = connection.consumer(
        connection.private_group("recipients", uuid.uuid4().hex),
        {"auto.offset.reset": "earliest", "isolation.level": "read_committed"},
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    orgs: set[str] = set()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise RuntimeError(f"reading {topic}: {err}")
            if not _matches(msg.key(), organization_id, send_id):
                continue
            value = msgspec.json.decode(msg.value() or b"{}")
            orgs.add(str(value.get("organizationId")))
            if len(orgs) > 1:
                raise ValueError(
                    f"send {send_id} exists in several organizations ({sorted(orgs)}): pass --org"
                )
            yield value
            if value.get("type") == "summary":
                return
    finally:
        consumer.close()


def read_send(
    connection: KafkaConnection,
    topic: str,
    send_id: str,
    *,
    organization_id: str | None = None,
    timeout: float = 300.0,
) -> SendList:
    """The whole list of a send (see :func:`iter_send`)."""
    out = SendList([], 0, None)
    for value in iter_send(
        connection, topic, send_id, organization_id=organization_id, timeout=timeout
    ):
        if value.get("type") == "summary":
            out.summary = value
        else:
            out.chunks += 1
            out.recipients.extend(value.get("recipients", []))
    return out
