"""Client properties files, as managed Kafka services hand them out.

Confluent Cloud, Aiven and MSK give their users a ``key=value`` file for their clients:
``bootstrap.servers``, ``security.protocol``, SASL credentials (as ``sasl.username`` /
``sasl.password`` for librdkafka, or inside a Java ``sasl.jaas.config``), a CA... Such a
file is read here into :class:`ClientProperties`, the connection settings leadstream can
honour on every client it runs: librdkafka (confluent-kafka) and aiokafka (faust). Any other
key is an error that names the key (and its line), never silently dropped: a setting the
operator believes in and one client ignores is how a cluster ends up half-secured.

Values are never quoted in errors: a line of this file may hold a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ClientProperties", "KafkaConfigError", "parse_properties", "read_properties"]


class KafkaConfigError(ValueError):
    """The connection configuration cannot be honoured; the message names the setting."""


PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# Keys whose only accepted values are what every leadstream client does anyway.
_ALREADY_SO = {
    # Producers are acks=all, always.
    "acks": {"all", "-1"},
    # librdkafka's default; aiokafka connects through asyncio, which tries every address.
    "client.dns.lookup": {"use_all_dns_ips"},
}
# Java keystores: neither librdkafka's PEM settings nor Python's ssl read them.
_JAVA_STORES = {
    "ssl.truststore.location": "ssl.ca.location (PEM)",
    "ssl.truststore.password": "ssl.ca.location (PEM)",
    "ssl.truststore.type": "ssl.ca.location (PEM)",
    "ssl.keystore.location": "ssl.certificate.location and ssl.key.location (PEM)",
    "ssl.keystore.password": "ssl.certificate.location and ssl.key.location (PEM)",
    "ssl.keystore.type": "ssl.certificate.location and ssl.key.location (PEM)",
}
_JAAS_MODULES = {
    "org.apache.kafka.common.security.plain.PlainLoginModule": "PLAIN",
    "org.apache.kafka.common.security.scram.ScramLoginModule": None,  # either SCRAM
}
_JAAS_OPTION = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


@dataclass(frozen=True, slots=True)
class ClientProperties:
    """What a properties file says about the connection (``None``: it does not say)."""

    bootstrap: str | None = None
    protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    check_hostname: bool | None = None
    session_timeout_seconds: float | None = None


def read_properties(path: Path) -> ClientProperties:
    """Read and check the properties file at ``path``; relative file paths in it are taken
    from the file's own directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KafkaConfigError(
            f"LEADSTREAM_KAFKA_CONFIG_FILE: cannot read {path}: {type(exc).__name__}"
        ) from None
    return parse_properties(text, source=str(path), base=path.parent)


def parse_properties(
    text: str, *, source: str = "properties", base: Path = Path()
) -> ClientProperties:
    """Parse ``key=value`` lines (``#`` and ``!`` comments, ``key: value`` too)."""
    found: dict[str, object] = {}
    for number, key, value in _lines(text):
        where = f"{source}, line {number}: {key!r}"
        if key == "bootstrap.servers":
            found["bootstrap"] = _required(value, where)
        elif key == "security.protocol":
            found["protocol"] = _one_of(value.upper(), PROTOCOLS, where)
        elif key in ("sasl.mechanism", "sasl.mechanisms"):
            found["sasl_mechanism"] = _one_of(value.upper(), MECHANISMS, where)
        elif key == "sasl.username":
            found["sasl_username"] = _required(value, where)
        elif key == "sasl.password":
            found["sasl_password"] = _required(value, where)
        elif key == "sasl.jaas.config":
            jaas = _jaas(value, where)
            # An explicit sasl.mechanism wins over what the login module implies.
            implied = jaas.pop("sasl_mechanism", None)
            found.update(jaas)
            if implied is not None:
                found.setdefault("sasl_mechanism", implied)
        elif key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
            name = {"ca": "ssl_ca_file", "certificate": "ssl_cert_file", "key": "ssl_key_file"}
            found[name[key.split(".")[1]]] = base / _required(value, where)
        elif key == "ssl.endpoint.identification.algorithm":
            found["check_hostname"] = (
                _one_of(value.lower(), ("https", "", "none"), where) == "https"
            )
        elif key == "session.timeout.ms":
            found["session_timeout_seconds"] = _milliseconds(value, where)
        elif key in _ALREADY_SO:
            if value.lower() not in _ALREADY_SO[key]:
                allowed = " or ".join(sorted(_ALREADY_SO[key]))
                raise KafkaConfigError(f"{where}: leadstream always uses {allowed}")
        elif key in _JAVA_STORES:
            raise KafkaConfigError(
                f"{where}: Java keystores are not readable by every client leadstream "
                f"runs; give {_JAVA_STORES[key]} instead"
            )
        else:
            raise KafkaConfigError(
                f"{where}: not a setting leadstream can honour on every Kafka client it "
                "runs (librdkafka and aiokafka); remove it"
            )
    return ClientProperties(**found)  # type: ignore[arg-type]


def _lines(text: str) -> list[tuple[int, str, str]]:
    lines: list[tuple[int, str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if match is None:
            raise KafkaConfigError(f"line {number}: not a key=value line")
        lines.append((number, match.group(1), match.group(2).strip()))
    return lines


def _required(value: str, where: str) -> str:
    if not value:
        raise KafkaConfigError(f"{where}: empty value")
    return value


def _one_of(value: str, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise KafkaConfigError(
            f"{where}: must be one of {', '.join(a or '(empty)' for a in allowed)}"
        )
    return value


def _milliseconds(value: str, where: str) -> float:
    if not value.isdigit():
        raise KafkaConfigError(f"{where}: not a number of milliseconds")
    return int(value) / 1000


def _jaas(value: str, where: str) -> dict[str, object]:
    """Username and password out of a Java login module line (PLAIN or SCRAM)."""
    module, _, options = value.partition(" ")
    if module not in _JAAS_MODULES:
        raise KafkaConfigError(
            f"{where}: only the PLAIN and SCRAM login modules can be honoured by every client"
        )
    pairs = {
        m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _JAAS_OPTION.finditer(options)
    }
    if not pairs.get("username") or not pairs.get("password"):
        raise KafkaConfigError(f'{where}: needs username="..." and password="..."')
    found: dict[str, object] = {
        "sasl_username": pairs["username"],
        "sasl_password": pairs["password"],
    }
    mechanism = _JAAS_MODULES[module]
    if mechanism is not None:
        found["sasl_mechanism"] = mechanism
    return found
