"""Transactional output: one confluent-kafka transactional producer per (role, partition),
fenced on first use, and the transactions that write a send's records.

faust's ``exactly_once`` ties a transaction to the partition of the topic a message goes
to, which fits tables but not an output topic keyed by send; so these producers are our
own. The transactional id is ``{app}-{role}-{partition}``: a new owner of a partition
initializes the same id, which fences the previous owner (its later commits fail) and
aborts the transaction it left open. Steps 3 and 6 of the protocol in materializer.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple

from confluent_kafka import KafkaException, Producer

from leadstream.kafka.config import KafkaConnection
from leadstream.kafka.io import produce
from leadstream.materialize.progress import ProgressView

__all__ = ["OutMessage", "Role", "TransactionalOutput"]


class Role(StrEnum):
    """Who writes: a partition's share of a send, or the send's summary (its home)."""

    SHARE = "mat"
    SUMMARY = "sum"


class OutMessage(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    partition: int | None = None  # None: the topic's partitioner decides (by key)
    headers: Sequence[tuple[str, bytes]] | None = None


class TransactionalOutput:
    """The producers of the partitions this worker owns, made and fenced on demand."""

    def __init__(self, connection: KafkaConnection, app_id: str, progress: ProgressView) -> None:
        self._connection = connection
        self._app_id = app_id
        self._progress = progress
        self._producers: dict[tuple[Role, int], Producer] = {}

    def keep_only(self, partitions: set[int]) -> None:
        """Forget the producers of partitions this worker no longer owns."""
        for role, partition in list(self._producers):
            if partition not in partitions:
                del self._producers[(role, partition)]

    async def ready(self, role: Role, partition: int) -> None:
        """Make (once) the producer of ``role`` for ``partition``: initialize its
        transactions, which fences any earlier owner, then read the progress topic's
        partition to its end, so that what it says is final for this owner."""
        if (role, partition) in self._producers:
            return
        producer = self._connection.transactional_producer(
            f"{self._app_id}-{role}-{partition}", {"linger.ms": 5, "compression.type": "lz4"}
        )
        await asyncio.get_running_loop().run_in_executor(None, producer.init_transactions, 60)
        await self._progress.read_to_end(partition)
        self._producers[(role, partition)] = producer

    async def commit(self, role: Role, partition: int, messages: Sequence[OutMessage]) -> None:
        """Write ``messages`` in one transaction: all of them are read_committed, or none.
        A failed or fenced producer is forgotten, so that the next attempt starts clean."""
        await self.ready(role, partition)
        producer = self._producers[(role, partition)]

        def run() -> None:
            producer.begin_transaction()
            try:
                for message in messages:
                    produce(
                        producer,
                        message.topic,
                        message.value,
                        message.key,
                        partition=message.partition,
                        headers=message.headers,
                    )
                producer.commit_transaction(60)
            except KafkaException:
                try:
                    producer.abort_transaction(30)
                except KafkaException:
                    pass
                raise

        try:
            await asyncio.get_running_loop().run_in_executor(None, run)
        except KafkaException:
            self._producers.pop((role, partition), None)
            raise
