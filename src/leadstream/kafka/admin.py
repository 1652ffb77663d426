"""Cluster administration: create the product's topics, wait for a broker to answer."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException

# confluent_kafka.admin imports NewTopic from cimpl without re-exporting it (no __all__).
from confluent_kafka.admin import AdminClient, NewTopic, TopicMetadata  # type: ignore[attr-defined]

from leadstream.kafka.config import LARGE_MESSAGE_BYTES, KafkaConnection
from leadstream.settings import Settings

__all__ = [
    "KafkaUnavailable",
    "broker_reachable",
    "ensure_topics",
    "required_topics",
    "unready_topics",
    "wait_for_broker",
]

logger = logging.getLogger(__name__)


def required_topics(settings: Settings) -> list[str]:
    topics = settings.topics
    return [
        topics.lead_events,
        topics.audience_members,
        topics.audience_filters,
        topics.send_triggers,
        topics.send_recipients,
        topics.rejects,
        topics.send_progress,
        # Internal, but created here before the worker joins its group: faust creates its
        # internal topics concurrently with the first assignment, and a topic missing at
        # that moment is left unassigned until the next metadata refresh (minutes).
        topics.by_lead,
        topics.leads_changelog,
        topics.replies,
    ]


DAY_MS = 86_400_000
# The lead table's changelog: a record superseded (a batch an erase logged again, then
# tombstoned) is compacted away within this, the active segment rolled for it (Kafka
# rolls a compacted topic's segment at min(segment.ms, max.compaction.lag.ms)); a
# tombstone itself stays DELETE_RETENTION_MS after its segment is cleaned. Together, the
# bound on how long an erased lead's old records stay on the brokers' disks.
MAX_COMPACTION_LAG_MS = 7 * DAY_MS
DELETE_RETENTION_MS = DAY_MS
# <app>-by-lead: a command is needed until every partition's apply agent committed it
# (seconds, or a worker's downtime); it names phones, so it is not kept for ever.
BY_LEAD_RETENTION_MS = 7 * DAY_MS


def _topic_config(settings: Settings, name: str) -> dict[str, str]:
    """The configs leadstream gives a topic it creates (docs/contract.md, section 4: what
    stays where, and for how long)."""
    topics = settings.topics
    config = {"max.message.bytes": str(LARGE_MESSAGE_BYTES)}
    if name == topics.leads_changelog:
        config["cleanup.policy"] = "compact"
        config["max.compaction.lag.ms"] = str(MAX_COMPACTION_LAG_MS)
        config["delete.retention.ms"] = str(DELETE_RETENTION_MS)
    if name == topics.by_lead:
        config["retention.ms"] = str(BY_LEAD_RETENTION_MS)
    if name == topics.replies:
        config["retention.ms"] = str(3_600_000)  # a reply is read within seconds or never
    if name in (topics.send_triggers, topics.audience_filters):
        # Receive time decides lateness and which filter is latest: let the broker set it.
        config["message.timestamp.type"] = "LogAppendTime"
    if settings.replication_factor >= 3:
        # acks=all then means two copies at least: one broker can go, nothing accepted is
        # lost, and writes go on.
        config["min.insync.replicas"] = "2"
    return config


class KafkaUnavailable(RuntimeError):
    """The cluster cannot be used; ``cause`` is ``authentication``, ``TLS`` or
    ``unreachable``, and the message says what the client saw (never a secret)."""

    def __init__(self, cause: str, connection: KafkaConnection, detail: str) -> None:
        super().__init__(f"Kafka at {connection.describe()}: {cause}: {detail}")
        self.cause = cause


# What librdkafka reports, and what it means for an operator. (Its local error codes start
# with an underscore; they are public all the same.)
_CAUSES = {
    KafkaError._AUTHENTICATION: "authentication failed",  # noqa: SLF001
    KafkaError.SASL_AUTHENTICATION_FAILED: "authentication failed",
    KafkaError._SSL: "TLS failed",  # noqa: SLF001
}


def wait_for_broker(connection: KafkaConnection, timeout: float = 45.0) -> None:
    """Return once the cluster answers a metadata request; raise :class:`KafkaUnavailable`
    at the first refused credential or certificate, or when nothing answered in time."""
    errors: list[KafkaError] = []
    # Errors come to the callback; log_level 0 keeps librdkafka from logging each retry.
    admin = connection.admin({"error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + timeout
    tls_checked = connection.security.tls
    while True:
        try:
            admin.list_topics(timeout=min(3.0, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            errors.append(exc.args[0])
        admin.poll(0.1)  # serves error_cb
        for error in errors:
            if error.code() in _CAUSES:
                raise KafkaUnavailable(_CAUSES[error.code()], connection, error.str())
        if not tls_checked:
            # A plaintext client on a TLS listener sees only closed connections: ask the
            # listener itself, once.
            tls_checked = True
            if speaks_tls(connection.bootstrap):
                raise KafkaUnavailable(
                    "TLS failed",
                    connection,
                    "the listener speaks TLS; set the security protocol to SSL or SASL_SSL",
                )
        if time.monotonic() >= deadline:
            last = errors[-1].str() if errors else "no answer"
            raise KafkaUnavailable(
                "unreachable", connection, f"no answer within {timeout:.0f} s ({last})"
            )
        time.sleep(0.5)


def speaks_tls(bootstrap: str, timeout: float = 3.0) -> bool:
    """Does the first bootstrap address complete a TLS handshake? (No data is sent, and
    the certificate is not checked: only the protocol is.)"""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host.strip("[]")),
        ):
            return True
    except (OSError, ValueError):
        return False


def broker_reachable(admin: AdminClient, topic: str, timeout: float = 2.0) -> bool:
    """Does the cluster answer a metadata request (of ``topic`` alone) within ``timeout``
    seconds?

    One topic's metadata, not the whole cluster's: readiness asks this every second, and
    the metadata of every topic is built into Python objects holding the interpreter (13.5
    ms of CPU a call with 472 topics and 3,776 partitions, 0.25 ms for one topic)."""
    try:
        admin.list_topics(topic, timeout=timeout)
    except KafkaException:
        return False
    return True


def ensure_topics(
    settings: Settings,
    names: list[str] | None = None,
    *,
    timeout: float = 60.0,
    connection: KafkaConnection | None = None,
) -> list[str]:
    """Create the missing topics (partitions, replication from settings) and wait until the
    broker's metadata shows every wanted topic with a leader for each partition; return
    those created.

    The wait matters: CreateTopics returns once the controller has committed the topic,
    and a broker serves it in metadata a moment later (seconds on a broker still loading
    a large metadata log after a restart). A consumer that joins its group in between is
    assigned nothing for the missing topic until its next metadata refresh, minutes on.
    ``connection``: the process's own, when it has one already."""
    connection = connection or KafkaConnection.of(settings)
    wait_for_broker(connection)
    admin = connection.admin()
    wanted = names if names is not None else required_topics(settings)
    served = admin.list_topics(timeout=30).topics
    missing = [n for n in wanted if n not in served]
    created = _create(admin, settings, missing) if missing else []
    deadline = time.monotonic() + timeout
    while unready := unready_topics(served, wanted):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"topics not served by the broker {timeout:.0f} s after creation: "
                + "; ".join(f"{name} ({why})" for name, why in sorted(unready.items()))
            )
        time.sleep(0.2)
        served = admin.list_topics(timeout=30).topics
    return created


def unready_topics(served: Mapping[str, TopicMetadata], wanted: list[str]) -> dict[str, str]:
    """The wanted topics a metadata answer (``ClusterMetadata.topics``) does not yet show
    ready for clients, each with the reason."""
    unready: dict[str, str] = {}
    for name in wanted:
        topic = served.get(name)
        if topic is None:
            unready[name] = "not in metadata"
        elif topic.error is not None:
            unready[name] = str(topic.error)
        elif not topic.partitions:
            unready[name] = "no partitions"
        # Only a leader counts: a partition can carry an error such as
        # REPLICA_NOT_AVAILABLE while a follower is down and still serve its clients.
        elif leaderless := sorted(p.id for p in topic.partitions.values() if p.leader < 0):
            unready[name] = f"no leader for partitions {leaderless}"
    return unready


def _create(admin: AdminClient, settings: Settings, names: list[str]) -> list[str]:
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                config=_topic_config(settings, name),
            )
            for name in names
        ]
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    logger.info("created topics %s", ", ".join(created) or "(none)")
    return created
