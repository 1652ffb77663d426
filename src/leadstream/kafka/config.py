"""Every Kafka client leadstream runs is built here, from one connection configuration.

The worker's faust app (aiokafka), the input router (an aiokafka consumer and a
confluent-kafka producer), the materializer's transactional producers, the progress and
reply readers, the admin calls and the CLI's publishing and reading all take their
connection from :class:`KafkaConnection`: where the
cluster is and how to reach it (TLS with a custom CA, mutual TLS, SASL PLAIN or SCRAM), read
once from the settings and the client properties file (kafka/properties.py), and mapped here
to each client library's own keys. Each builder adds only what its kind of client needs.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from faust.types.auth import CredentialsT

from leadstream.kafka.properties import ClientProperties, KafkaConfigError, read_properties
from leadstream.settings import MAX_MESSAGE_BYTES, Settings

__all__ = ["LARGE_MESSAGE_BYTES", "KafkaConfigError", "KafkaConnection", "Security"]

# A 50,000-event batch is several MB of JSON; the broker's 1 MB default would refuse it.
# The same 16 MiB as the bound on a decoded JSON value (domain/decode.py).
LARGE_MESSAGE_BYTES = MAX_MESSAGE_BYTES
# A fetch response carries one batch of at most LARGE_MESSAGE_BYTES (the topics' limit)
# and the framing of the partitions it answers for: librdkafka drops the connection on a
# larger one, and decompresses a zstd batch up to this size at most (kafka/bounds.py).
_RECEIVE_MAX_BYTES = LARGE_MESSAGE_BYTES + 1024 * 1024

Options = dict[str, Any]

# librdkafka writes its own log lines to stderr unless given a logger: they go through
# Python's logging instead, and so through the worker's log format (text or JSON).
_client_log = logging.getLogger("leadstream.kafka.client")

# Each setting as the operator knows it: the environment variable, and the properties key.
_NAMES = {
    "protocol": "LEADSTREAM_KAFKA_SECURITY_PROTOCOL (security.protocol)",
    "sasl_mechanism": "LEADSTREAM_KAFKA_SASL_MECHANISM (sasl.mechanism)",
    "sasl_username": "LEADSTREAM_KAFKA_SASL_USERNAME (sasl.username)",
    "sasl_password": "LEADSTREAM_KAFKA_SASL_PASSWORD (sasl.password)",
    "ssl_ca_file": "LEADSTREAM_KAFKA_SSL_CA_FILE (ssl.ca.location)",
    "ssl_cert_file": "LEADSTREAM_KAFKA_SSL_CERT_FILE (ssl.certificate.location)",
    "ssl_key_file": "LEADSTREAM_KAFKA_SSL_KEY_FILE (ssl.key.location)",
}


@dataclass(frozen=True, slots=True)
class Security:
    """How clients authenticate to the brokers and check who they talk to."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def check(self) -> None:
        """Refuse what some client would not honour, naming the setting (never its value)."""
        if self.sasl:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if not getattr(self, name):
                    raise KafkaConfigError(f"{_NAMES[name]} is required with {self.protocol}")
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, name):
                    raise KafkaConfigError(
                        f"{_NAMES[name]} is set but the security protocol is {self.protocol}"
                    )
        files = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
        if not self.tls:
            for name in files:
                if getattr(self, name) is not None:
                    raise KafkaConfigError(
                        f"{_NAMES[name]} is set but the security protocol is {self.protocol}"
                    )
            return
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise KafkaConfigError(
                f"{_NAMES['ssl_cert_file']} and {_NAMES['ssl_key_file']} go together"
            )
        for name in files:
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise KafkaConfigError(f"{_NAMES[name]}: no such file {path}")
        self.ssl_context()  # the PEM files load, or the error says which one does not

    def librdkafka(self) -> Options:
        """confluent-kafka's keys for this."""
        options: Options = {"security.protocol": self.protocol}
        if self.sasl:
            options |= {
                "sasl.mechanisms": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password,
            }
        if self.tls:
            # "probe": the system's trust store, wherever this platform keeps it.
            options["ssl.ca.location"] = str(self.ssl_ca_file or "probe")
            options["ssl.endpoint.identification.algorithm"] = (
                "https" if self.check_hostname else "none"
            )
            if self.ssl_cert_file is not None:
                options["ssl.certificate.location"] = str(self.ssl_cert_file)
                options["ssl.key.location"] = str(self.ssl_key_file)
        return options

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the Python clients (aiokafka), or None without TLS."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(
                cafile=str(self.ssl_ca_file) if self.ssl_ca_file else None
            )
        except (ssl.SSLError, OSError) as exc:
            raise KafkaConfigError(
                f"{_NAMES['ssl_ca_file']}: not a PEM CA file ({exc.__class__.__name__})"
            ) from None
        context.check_hostname = self.check_hostname
        if self.ssl_cert_file is not None:
            try:
                context.load_cert_chain(str(self.ssl_cert_file), str(self.ssl_key_file))
            except (ssl.SSLError, OSError) as exc:
                raise KafkaConfigError(
                    f"{_NAMES['ssl_cert_file']} / {_NAMES['ssl_key_file']}: not a PEM "
                    f"certificate and its unencrypted key ({exc.__class__.__name__})"
                ) from None
        return context

    def faust_credentials(self) -> CredentialsT | None:
        """faust's (aiokafka's) form of this."""
        context = self.ssl_context()
        if self.sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=context,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None

    @classmethod
    def of(cls, settings: Settings, file: ClientProperties) -> Security:
        """The properties file's values, each overridden by its variable when that is set."""
        given = settings.model_fields_set

        def pick(name: str, from_file: Any) -> Any:
            value = getattr(settings, f"kafka_{name}")
            return value if f"kafka_{name}" in given or from_file is None else from_file

        password = settings.kafka_sasl_password
        return cls(
            protocol=pick("security_protocol", file.protocol),
            sasl_mechanism=pick("sasl_mechanism", file.sasl_mechanism),
            sasl_username=pick("sasl_username", file.sasl_username),
            sasl_password=(
                password.get_secret_value()
                if password is not None
                and ("kafka_sasl_password" in given or file.sasl_password is None)
                else file.sasl_password
            ),
            ssl_ca_file=pick("ssl_ca_file", file.ssl_ca_file),
            ssl_cert_file=pick("ssl_cert_file", file.ssl_cert_file),
            ssl_key_file=pick("ssl_key_file", file.ssl_key_file),
            check_hostname=file.check_hostname if file.check_hostname is not None else True,
        )


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where the cluster is and how to reach it; builds every client."""

    bootstrap: str
    # Prefix of the consumer groups that commit nothing (probes, per-process readers), so
    # that they say which application made them.
    app_id: str = "leadstream"
    security: Security = field(default_factory=Security)
    # Of every consumer group member this process runs (faust's and the router's).
    session_timeout_seconds: float = 15.0

    @classmethod
    def of(cls, settings: Settings) -> KafkaConnection:
        """The connection the settings describe, checked: a setting that some client
        cannot honour raises :class:`KafkaConfigError` naming it."""
        given = settings.model_fields_set
        file = (
            read_properties(settings.kafka_config_file)
            if settings.kafka_config_file is not None
            else ClientProperties()
        )
        security = Security.of(settings, file)
        security.check()
        bootstrap = settings.kafka_bootstrap
        if "kafka_bootstrap" not in given and file.bootstrap is not None:
            bootstrap = file.bootstrap
        session = settings.session_timeout_seconds
        if "session_timeout_seconds" not in given and file.session_timeout_seconds is not None:
            session = file.session_timeout_seconds
        return cls(bootstrap, settings.app_id, security, session)

    def describe(self) -> str:
        """Where and how, for a log line (no secret)."""
        how = self.security.protocol
        if self.security.sasl:
            how += f" {self.security.sasl_mechanism} as {self.security.sasl_username}"
        if self.security.ssl_cert_file is not None:
            how += " with a client certificate"
        return f"{self.bootstrap} ({how})"

    def common(self) -> Options:
        """The keys every confluent-kafka client gets."""
        return {
            "bootstrap.servers": self.bootstrap,
            "logger": _client_log,
            **self.security.librdkafka(),
        }

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
                "fetch.max.bytes": LARGE_MESSAGE_BYTES,
                "receive.message.max.bytes": _RECEIVE_MAX_BYTES,
                "session.timeout.ms": int(self.session_timeout_seconds * 1000),
                "heartbeat.interval.ms": int(self.heartbeat_seconds * 1000),
                **(options or {}),
            }
        )

    def aiokafka_consumer(self, group: str, **options: Any) -> AIOKafkaConsumer:
        """An aiokafka consumer of ``group`` that commits only when told to (created in
        the event loop that will run it). Its batches are decompressed within the bounds
        of kafka/bounds.py once those are installed in the process."""
        security = self.security
        connection: Options = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": security.protocol,
            "ssl_context": security.ssl_context(),
        }
        if security.sasl:
            connection |= {
                "sasl_mechanism": security.sasl_mechanism,
                "sasl_plain_username": security.sasl_username,
                "sasl_plain_password": security.sasl_password,
            }
        return AIOKafkaConsumer(
            **connection,
            group_id=group,
            enable_auto_commit=False,
            session_timeout_ms=int(self.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(self.heartbeat_seconds * 1000),
            **options,
        )

    @property
    def heartbeat_seconds(self) -> float:
        return min(3.0, self.session_timeout_seconds / 5)

    def private_group(self, purpose: str, unique: str = "") -> str:
        """A group for a reader that commits nothing: named after the application and its
        purpose (and ``unique`` where each process needs its own)."""
        return "-".join(filter(None, (self.app_id, purpose, unique)))

    def admin(self, options: Options | None = None) -> AdminClient:
        return AdminClient({**self.common(), **(options or {})})

    def faust_options(self) -> dict[str, Any]:
        """The faust app settings that say where the brokers are and how to reach them."""
        return {
            "broker": [f"kafka://{host.strip()}" for host in self.bootstrap.split(",")],
            "broker_credentials": self.security.faust_credentials(),
            "broker_session_timeout": self.session_timeout_seconds,
            "broker_heartbeat_interval": self.heartbeat_seconds,
        }
