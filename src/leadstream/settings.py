"""The one configuration object, read once from ``LEADSTREAM_*`` environment variables."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LEADS_TABLE", "MAX_CHUNK_SIZE", "MAX_MESSAGE_BYTES", "Settings", "Topics"]

# The lead table's name; faust names its changelog "{app id}-{table}-changelog".
LEADS_TABLE = "leads"
# Recipients in one send-recipients chunk, at most.
MAX_CHUNK_SIZE = 50_000
# The largest message leadstream reads or writes, and the largest JSON value it decodes
# (domain/decode.py): a 50,000-event batch is a few MB.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class Topics:
    """Topic names derived from the settings (docs/contract.md, section 4).

    External topics carry ``topic_prefix``; internal ones are named after ``app_id`` so
    that two applications (or two test runs) never share state.
    """

    def __init__(self, prefix: str, app_id: str) -> None:
        self.lead_events = f"{prefix}lead-events"
        self.audience_members = f"{prefix}audience-members"
        self.audience_filters = f"{prefix}audience-filters"
        self.send_triggers = f"{prefix}send-triggers"
        self.send_recipients = f"{prefix}send-recipients"
        self.rejects = f"{prefix}rejects"
        # Every write to lead state travels here, partitioned by lead (commands.py).
        self.by_lead = f"{app_id}-by-lead"
        # Materialization progress: one record per (send, partition) and per summary.
        self.send_progress = f"{app_id}-send-progress"
        self.leads_changelog = f"{app_id}-{LEADS_TABLE}-changelog"
        # Counts of applied HTTP batches, back to the worker that serves the request.
        self.replies = f"{app_id}-replies"


class Settings(BaseSettings):
    """Every knob of the product; the field name is the env var without ``LEADSTREAM_``."""

    model_config = SettingsConfigDict(env_prefix="LEADSTREAM_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field("localhost:9092", description="Kafka bootstrap servers.")
    # How every Kafka client connects (kafka/config.py). Each of these, when set, wins over
    # the same setting in the properties file.
    kafka_config_file: Path | None = Field(
        None,
        description=(
            "A client properties file as managed Kafka services hand them out "
            "(bootstrap.servers, security.protocol, sasl.*, ssl.*.location)."
        ),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA(s) that sign the brokers' certificates "
        "[default: the system's trust store].",
    )
    kafka_ssl_cert_file: Path | None = Field(
        None, description="PEM client certificate (mutual TLS), with kafka_ssl_key_file."
    )
    kafka_ssl_key_file: Path | None = Field(
        None, description="PEM private key of the client certificate (unencrypted)."
    )
    app_id: str = Field(
        "leadstream",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Consumer group and prefix of internal topics.",
    )
    data_dir: Path = Field(
        Path(".leadstream"), description="Where RocksDB and the local broker live."
    )
    instance_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description=(
            "This worker's stable identity in its consumer groups (static membership): a "
            "worker restarted with the same id takes its partitions back at once "
            "[default: generated once, kept in DATA_DIR/instance-id]."
        ),
    )
    session_timeout_seconds: float = Field(
        15.0,
        ge=6,
        le=90,
        description=(
            "How long a worker that stopped heartbeating keeps its partitions before the "
            "group gives them to the others (a worker restarted with its instance id "
            "does not wait for it)."
        ),
    )
    partitions: int = Field(8, ge=1, le=1024, description="Partitions of the lead-keyed state.")
    rocksdb_memory_mb: int = Field(
        256,
        ge=32,
        le=1024 * 1024,
        description=(
            "Memory RocksDB may take in this worker, its partitions together: one block"
            " cache, of which the memtables take at most half. The indexes a send reads are"
            " kept beside it, in the worker's own memory."
        ),
    )
    replication_factor: int = Field(
        1, ge=1, description="Replication of topics leadstream creates."
    )
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the worker's HTTP API.")
    web_host: str = Field("127.0.0.1", description="Interface the worker's HTTP API binds to.")
    advertised_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+$",
        description=(
            "URL the other workers reach this one's HTTP API at, e.g. "
            "http://leadstream-0.leadstream-headless:6066 [default: http://WEB_HOST:WEB_PORT]."
        ),
    )
    topic_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,100}$")
    default_region: str = Field("US", min_length=2, max_length=2)
    max_future_skew_seconds: int = Field(900, ge=0)
    event_retention_days: int = Field(400, ge=1)
    compaction_interval_seconds: float = Field(3600.0, gt=0)
    materialize_lead_seconds: int = Field(60, ge=0)
    send_retention_days: int = Field(
        30,
        ge=30,
        description="How long a materialized send can be explained and counts against"
        " frequency caps (at least the caps' longest window, 720 hours).",
    )
    chunk_size: int = Field(5000, ge=1, le=MAX_CHUNK_SIZE)
    opt_out_event_type: str = Field("opted_out", min_length=1, max_length=100)
    opt_in_event_type: str = Field("opted_in", min_length=1, max_length=100)
    suppression_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="Secret key of the hashes an erase keeps for an opted-out lead (the"
        " same on every worker, never changed); unset: a random key per partition, kept in"
        " its state.",
    )
    auth_file: Path | None = Field(
        None, description="Per-organization credentials [default: DATA_DIR/auth.json]."
    )
    quiet_hours_policy_file: Path | None = Field(
        None,
        description="An operator's us-tcpa table (CSV, the columns of the one shipped with"
        " leadstream) that replaces the shipped table whole; read when the worker starts, which"
        " a bad row stops with its line number.",
    )
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="HTTP body size limit.")
    max_message_bytes: int = Field(
        MAX_MESSAGE_BYTES,
        ge=64 * 1024,
        le=MAX_MESSAGE_BYTES,
        description=(
            "Largest message read from an input topic, measured after decompression: a "
            "larger one (or a compressed batch that would decompress beyond it) is a "
            "too_large reject, and never held in memory whole."
        ),
    )
    http_timeout_seconds: float = Field(
        30.0, gt=0, description="How long a webhook waits for Kafka and for its rows to be applied."
    )
    shutdown_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description=(
            "How long a stopping worker (SIGTERM) may take to stop cleanly; then it exits"
            " anyway, even with every broker gone (keep it under the supervisor's grace"
            " period)."
        ),
    )
    # The HTTP API's limits (web/connections.py, web/limits.py): each answered with a JSON
    # error, so that no client, with a key or without, can exhaust the worker.
    cluster_secret: SecretStr | None = Field(
        None,
        min_length=16,
        description="The workers' own signing secret, the same on every worker: a preview's"
        " requests to the other workers for their partitions' shares are signed with it"
        " (never with the tenant's credential). Needed as soon as several workers serve one"
        " application; never logged.",
    )
    http_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A request's headers must be complete within this many seconds of the"
        " connection's start or of its previous answer (an idle kept-alive connection is closed"
        " then too).",
    )
    http_body_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A request body that sends no byte for this many seconds is answered 408.",
    )
    http_max_connections: int = Field(
        512,
        ge=8,
        le=100_000,
        description="Open HTTP connections per worker; beyond it the connection that waited"
        " longest for a request is closed to make room, or the new one is refused at once"
        " when every connection is busy.",
    )
    http_max_in_flight: int = Field(
        256,
        ge=1,
        description="Requests being served at once per worker (/healthz and /readyz aside);"
        " beyond: 503 with Retry-After.",
    )
    http_max_in_flight_per_org: int = Field(
        128,
        ge=1,
        description="Requests of one organization being served at once per worker; beyond:"
        " 429 with Retry-After.",
    )
    http_org_rate: float = Field(
        1000.0,
        gt=0,
        description="Requests per second one organization may make to one worker, on"
        " average; beyond: 429 with Retry-After.",
    )
    http_org_burst: int = Field(
        1000,
        ge=1,
        description="Requests one organization may make at once above its rate (the token"
        " bucket's size).",
    )
    http_max_unverified_bodies: int = Field(
        4,
        ge=1,
        description="Webhook bodies read at once per worker before their signature is"
        " checked (body-only signatures, which cover the body alone); beyond: 503 with"
        " Retry-After.",
    )
    http_unverified_body_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="How long such a body may take to arrive in full (408 beyond).",
    )
    log_level: str = Field("info")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as one JSON object per line."
    )

    @property
    def group_instance_id(self) -> str | None:
        """This worker's ``group.instance.id`` in its consumer groups: the instance id and
        where it serves HTTP. faust keeps a member's URL in its assignment, so a worker that
        comes back on another address is another member (and waits out the old one)."""
        if self.instance_id is None:
            return None
        where = zlib.crc32(f"{self.web_host}:{self.web_port}".encode())
        return f"{self.instance_id}-{where:08x}"

    @property
    def web_url(self) -> str:
        """The URL other workers reach this one's HTTP API at."""
        return self.advertised_url or f"http://{self.web_host}:{self.web_port}"

    @property
    def auth_path(self) -> Path:
        return self.auth_file or self.data_dir / "auth.json"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix, self.app_id)
