"""The connection configuration: properties files as managed services hand them out, the
environment over them, and the same connection mapped to librdkafka and to aiokafka."""

from __future__ import annotations

import os
from pathlib import Path

import faust
import pytest
from cryptography.hazmat.primitives import serialization

from leadstream.kafka.config import KafkaConfigError, KafkaConnection, Security
from leadstream.kafka.local.secure import SecureMaterial, make_ca
from leadstream.kafka.properties import parse_properties
from leadstream.settings import Settings

CONFLUENT_CLOUD = """\
# Required connection configs for Kafka producer, consumer, and admin
bootstrap.servers=pkc-abc12.us-east-1.aws.confluent.cloud:9092
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.username=ABCDEFGHIJKLMNOP
sasl.password=s3cr3t/with=equals+signs

# Best practice for higher availability in librdkafka clients prior to 1.7
session.timeout.ms=45000
client.dns.lookup=use_all_dns_ips
acks=all
"""

JAVA_STYLE = """\
bootstrap.servers=b-1.msk.example:9096,b-2.msk.example:9096
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
username="alice" password='p"w';
ssl.endpoint.identification.algorithm=https
"""


def test_a_confluent_cloud_file_is_read_whole() -> None:
    props = parse_properties(CONFLUENT_CLOUD)
    assert props.bootstrap == "pkc-abc12.us-east-1.aws.confluent.cloud:9092"
    assert (props.protocol, props.sasl_mechanism) == ("SASL_SSL", "PLAIN")
    assert (props.sasl_username, props.sasl_password) == (
        "ABCDEFGHIJKLMNOP",
        "s3cr3t/with=equals+signs",
    )
    assert props.session_timeout_seconds == 45.0
    assert "s3cr3t" not in repr(props)


def test_a_java_jaas_line_gives_the_user_and_password() -> None:
    props = parse_properties(JAVA_STYLE)
    assert props.bootstrap == "b-1.msk.example:9096,b-2.msk.example:9096"
    assert (props.sasl_mechanism, props.sasl_username, props.sasl_password) == (
        "SCRAM-SHA-512",
        "alice",
        'p"w',
    )
    assert props.check_hostname is True
    plain = parse_properties(
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="u" password="p";'
    )
    assert plain.sasl_mechanism == "PLAIN"


def test_relative_files_are_taken_from_the_file_s_directory(tmp_path: Path) -> None:
    props = parse_properties("ssl.ca.location=ca.pem\n", base=tmp_path)
    assert props.ssl_ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("ssl.truststore.location=/etc/kafka/truststore.jks", "ssl.truststore.location"),
        ("ssl.keystore.password=hunter2", "ssl.keystore.password"),
        ("acks=1", "acks"),
        ("basic.auth.user.info=KEY:hunter2", "basic.auth.user.info"),
        ("schema.registry.url=https://psrc.example", "schema.registry.url"),
        ("security.protocol=SASL_SSLX", "security.protocol"),
        ("sasl.mechanism=GSSAPI", "sasl.mechanism"),
        ('sasl.jaas.config=com.example.Login required username="u";', "sasl.jaas.config"),
        ("session.timeout.ms=soon", "session.timeout.ms"),
    ],
)
def test_a_key_not_every_client_honours_is_an_error_naming_it(line: str, named: str) -> None:
    with pytest.raises(KafkaConfigError) as raised:
        parse_properties("bootstrap.servers=h:9092\n" + line + "\n", source="client.properties")
    message = str(raised.value)
    assert f"'{named}'" in message and "line 2" in message
    assert "hunter2" not in message


@pytest.fixture(autouse=True)
def no_leadstream_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: only what a test gives counts here."""
    for name in list(os.environ):
        if name.startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)


def settings(**values: object) -> Settings:
    return Settings.model_validate(values)


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "client.properties"
    file.write_text(CONFLUENT_CLOUD)
    from_file = KafkaConnection.of(settings(kafka_config_file=file))
    assert from_file.bootstrap == "pkc-abc12.us-east-1.aws.confluent.cloud:9092"
    assert from_file.security.sasl_password == "s3cr3t/with=equals+signs"
    assert from_file.session_timeout_seconds == 45.0
    over = KafkaConnection.of(
        settings(
            kafka_config_file=file,
            kafka_bootstrap="other:9092",
            kafka_sasl_password="from-env",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            session_timeout_seconds=20,
        )
    )
    assert over.bootstrap == "other:9092"
    assert (over.security.sasl_mechanism, over.security.sasl_password) == (
        "SCRAM-SHA-256",
        "from-env",
    )
    assert over.session_timeout_seconds == 20
    assert over.security.sasl_username == "ABCDEFGHIJKLMNOP"
    assert "s3cr3t" not in repr(from_file) and "from-env" not in repr(over)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "LEADSTREAM_KAFKA_SASL_MECHANISM"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"},
            "LEADSTREAM_KAFKA_SASL_USERNAME",
        ),
        ({"kafka_sasl_username": "u"}, "LEADSTREAM_KAFKA_SASL_USERNAME"),
        ({"kafka_ssl_ca_file": "/etc/hosts"}, "LEADSTREAM_KAFKA_SSL_CA_FILE"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/nonexistent/ca.pem"},
            "LEADSTREAM_KAFKA_SSL_CA_FILE",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "/etc/hosts"},
            "LEADSTREAM_KAFKA_SSL_KEY_FILE",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/etc/hostname"},
            "LEADSTREAM_KAFKA_SSL_CA_FILE",
        ),
    ],
)
def test_a_setting_some_client_would_not_honour_is_refused_by_name(
    values: dict[str, object], named: str
) -> None:
    with pytest.raises(KafkaConfigError, match=named):
        KafkaConnection.of(settings(**values))


def test_one_security_maps_to_librdkafka_and_to_aiokafka(tmp_path: Path) -> None:
    material = SecureMaterial(tmp_path)
    material.ensure("127.0.0.1", [1])
    security = Security(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="leadstream",
        sasl_password="pw",
        ssl_ca_file=material.ca_file,
        ssl_cert_file=material.client_cert_file,
        ssl_key_file=material.client_key_file,
    )
    security.check()
    assert security.librdkafka() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "leadstream",
        "sasl.password": "pw",
        "ssl.ca.location": str(material.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.certificate.location": str(material.client_cert_file),
        "ssl.key.location": str(material.client_key_file),
    }
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("leadstream", "pw")
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.ssl_context is not None and credentials.ssl_context.check_hostname
    assert "pw" not in repr(security)

    tls_only = Security(protocol="SSL", ssl_ca_file=material.ca_file, check_hostname=False)
    assert tls_only.librdkafka()["ssl.endpoint.identification.algorithm"] == "none"
    credentials = tls_only.faust_credentials()
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.context.check_hostname is False
    # No CA given: the system's trust store on both sides.
    assert Security(protocol="SSL").librdkafka()["ssl.ca.location"] == "probe"
    assert Security().faust_credentials() is None
    assert Security().librdkafka() == {"security.protocol": "PLAINTEXT"}


def test_a_key_that_is_not_the_certificate_s_is_refused(tmp_path: Path) -> None:
    material = SecureMaterial(tmp_path)
    material.ensure("127.0.0.1", [1])
    other_key, _ = make_ca("other")
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    security = Security(
        protocol="SSL",
        ssl_ca_file=material.ca_file,
        ssl_cert_file=material.client_cert_file,
        ssl_key_file=wrong,
    )
    with pytest.raises(KafkaConfigError, match="LEADSTREAM_KAFKA_SSL_CERT_FILE"):
        security.check()


def test_faust_is_given_the_brokers_credentials_and_session() -> None:
    connection = KafkaConnection("a:1, b:2", session_timeout_seconds=30)
    options = connection.faust_options()
    assert options["broker"] == ["kafka://a:1", "kafka://b:2"]
    assert options["broker_credentials"] is None
    assert (options["broker_session_timeout"], options["broker_heartbeat_interval"]) == (30, 3.0)
