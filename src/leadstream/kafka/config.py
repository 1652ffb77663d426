"""Every Kafka client leadstream runs is built here, from one connection configuration.

The worker's faust app (aiokafka), the lead-events router, the materializer's
transactional producers, the progress and reply readers, the admin calls and the CLI's
publishing and reading all take their connection from :class:`KafkaConnection`, so a
setting that concerns the connection (today the bootstrap servers) reaches every one of
them the same way. Each builder adds only what its kind of client needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from leadstream.settings import Settings

__all__ = ["LARGE_MESSAGE_BYTES", "KafkaConnection"]

# A 50,000-event batch is several MB of JSON; the broker's 1 MB default would refuse it.
# The same 16 MiB as the bound on a decoded JSON value (domain/decode.py).
LARGE_MESSAGE_BYTES = 16 * 1024 * 1024

Options = dict[str, Any]


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where the cluster is and how to reach it; builds every client."""

    bootstrap: str
    # Prefix of the consumer groups that commit nothing (probes, per-process readers), so
    # that they say which application made them.
    app_id: str = "leadstream"

    @classmethod
    def of(cls, settings: Settings) -> KafkaConnection:
        return cls(settings.kafka_bootstrap, settings.app_id)

    def common(self) -> Options:
        """The keys every confluent-kafka client gets."""
        return {"bootstrap.servers": self.bootstrap}

    def producer(self, options: Options | None = None) -> Producer:
        """An idempotent acks=all producer that can send 16 MiB messages."""
        return Producer(
            {
                **self.common(),
                "enable.idempotence": True,
                "acks": "all",
                "message.max.bytes": LARGE_MESSAGE_BYTES,
                **(options or {}),
            }
        )

    def transactional_producer(
        self, transactional_id: str, options: Options | None = None
    ) -> Producer:
        """A producer whose writes commit or abort together; a new one with the same id
        fences the old (``init_transactions`` is the caller's)."""
        return self.producer(
            {
                "transactional.id": transactional_id,
                "transaction.timeout.ms": 60_000,
                **(options or {}),
            }
        )

    def consumer(self, group: str, options: Options | None = None) -> Consumer:
        """A consumer of ``group`` that commits only when told to."""
        return Consumer(
            {
                **self.common(),
                "group.id": group,
                "enable.auto.commit": False,
                "fetch.message.max.bytes": LARGE_MESSAGE_BYTES,
                **(options or {}),
            }
        )

    def private_group(self, purpose: str, unique: str = "") -> str:
        """A group for a reader that commits nothing: named after the application and its
        purpose (and ``unique`` where each process needs its own)."""
        return "-".join(filter(None, (self.app_id, purpose, unique)))

    def admin(self) -> AdminClient:
        return AdminClient(self.common())

    def faust_brokers(self) -> list[str]:
        """The broker URLs faust (aiokafka) is given."""
        return [f"kafka://{host.strip()}" for host in self.bootstrap.split(",")]
