"""leadstream on a secured broker: SASL_SSL (SCRAM) and mutual TLS, as managed clusters run.

The local broker is started with ``secure=True``: a CA and broker certificate made for this
run, SCRAM users created when its storage is formatted, a SASL_SSL listener and a
mutual-TLS listener, no plaintext one. Every client of the product connects to it: the
worker (faust/aiokafka and its router child, confluent-kafka), its HTTP webhook's writes,
and the CLI's publish, trigger and recipients.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography.hazmat.primitives import serialization
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from leadstream.kafka.admin import wait_for_broker
from leadstream.kafka.config import KafkaConnection
from leadstream.kafka.local import LocalKafka
from leadstream.kafka.local.secure import CLIENT_USER, make_ca
from leadstream.settings import Settings
from tests.conftest import new_stack
from tests.support.kafka import produce, read_topic
from tests.support.worker import free_broker_port, free_port

REPO = Path(__file__).resolve().parents[2]
ORG = 7
CAMPAIGN = "secure-c1"


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    home = tmp_path_factory.mktemp("secure-kafka")
    kafka = LocalKafka(home, f"127.0.0.1:{free_broker_port(3)}", secure=True)
    kafka.start(timeout=300)
    try:
        yield kafka
    finally:
        kafka.stop()


def password(kafka: LocalKafka) -> str:
    assert kafka.secure is not None
    return kafka.secure.passwords()[CLIENT_USER]


def leadstream(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadstream.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def phone(i: int) -> str:
    return f"+1555300{i:04d}"


def test_ingest_webhook_and_cli_run_over_sasl_ssl(secure_kafka: LocalKafka, tmp_path: Path) -> None:
    assert secure_kafka.secure is not None
    stack = new_stack(
        secure_kafka.bootstrap, tmp_path, kafka_config_file=secure_kafka.secure.sasl_properties
    )
    try:
        worker = stack.worker()
        env = stack.env()
        assert "LEADSTREAM_KAFKA_SASL_PASSWORD" not in env  # all of it from the file
        audience = tmp_path / "audience.csv"
        audience.write_text(
            "phoneE164,externalId\n" + "".join(f"{phone(i)},x{i}\n" for i in range(200))
        )
        out = leadstream(
            "publish", "audience", str(audience), "--org", str(ORG), "--campaign", CAMPAIGN, env=env
        )
        assert out.returncode == 0, out.stderr
        events = tmp_path / "events.jsonl"
        events.write_text(
            "".join(
                json.dumps(
                    {
                        "organizationId": ORG,
                        "eventType": "purchase",
                        "phoneE164": phone(i),
                        "occurredAt": "2026-05-12T18:34:00Z",
                    }
                )
                + "\n"
                for i in range(50)
            )
        )
        out = leadstream("publish", "events", str(events), env=env)
        assert out.returncode == 0, out.stderr
        assert "published 50 events" in out.stdout

        # The webhook's rows travel through the worker's own clients, over SASL_SSL too.
        body = {
            "organizationId": ORG,
            "eventType": "opted_out",
            "events": [
                {"phoneE164": phone(i), "occurredAt": "2026-05-12T19:00:00Z"} for i in range(50, 60)
            ],
        }
        answer = httpx.post(
            f"{worker.url}/api/v1/webhooks/lead-events",
            json=body,
            headers={"Authorization": f"Bearer {stack.api_key(ORG)}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert (answer.json()["inserted"], answer.json()["duplicates"]) == (10, 0)

        stack.wait_caught_up()
        out = leadstream(
            "trigger",
            "--org",
            str(ORG),
            "--campaign",
            CAMPAIGN,
            "--send",
            "secure-send",
            "--scheduled-for",
            "2026-01-01T00:00:00Z",
            "--filter",
            "exclude:purchase",
            env=env,
        )
        assert out.returncode == 0, out.stderr
        out = leadstream("recipients", "secure-send", "--org", str(ORG), env=env)
        assert out.returncode == 0, out.stderr
        got = [json.loads(line)["phoneE164"] for line in out.stdout.splitlines()]
        # Computed here: the audience, less the purchasers and the opted out.
        assert sorted(got) == [phone(i) for i in range(60, 200)]
        summary = json.loads(out.stderr.strip().splitlines()[-1])
        assert summary["recipientCount"] == 140
        assert summary["counts"]["optedOut"] == 10

        # No secret in the worker's log or in /metrics.
        secret = password(secure_kafka)
        assert secret not in httpx.get(f"{worker.url}/metrics", timeout=10).text
        worker.stop()
        assert secret not in worker.log_path.read_text()
    finally:
        stack.close()


def test_ingest_to_send_over_mutual_tls_with_settings_from_the_environment(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    material = secure_kafka.secure
    assert material is not None
    stack = new_stack(
        secure_kafka.mtls_bootstrap,
        tmp_path,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=material.ca_file,
        kafka_ssl_cert_file=material.client_cert_file,
        kafka_ssl_key_file=material.client_key_file,
    )
    try:
        stack.worker()
        stack.members(ORG, CAMPAIGN, [{"phoneE164": phone(i)} for i in range(100)])
        stack.send_events(
            [
                {
                    "organizationId": ORG,
                    "eventType": "webinar_attended",
                    "events": [
                        {"phoneE164": phone(i), "occurredAt": "2026-05-12T18:00:00Z"}
                        for i in range(0, 100, 3)
                    ],
                }
            ]
        )
        stack.wait_caught_up()
        stack.trigger(
            organizationId=ORG,
            campaignId=CAMPAIGN,
            sendId="mtls-send",
            scheduledFor="2026-01-01T00:00:00Z",
            eventFilter={"mode": "include", "eventType": "webinar_attended"},
        )
        result = stack.send_list("mtls-send", ORG)
        assert result.summary is not None
        assert sorted(r["phoneE164"] for r in result.recipients) == [
            phone(i) for i in range(0, 100, 3)
        ]
    finally:
        stack.close()


def refused_worker(env: dict[str, str], tmp_path: Path) -> tuple[int, float, list[str]]:
    """Run ``leadstream worker`` until it exits (at most 90 s); its code, how long it ran,
    and its output lines."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "leadstream.cli", "worker"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_KAFKA")},
            "LEADSTREAM_DATA_DIR": str(tmp_path / "data"),
            "LEADSTREAM_WEB_PORT": str(free_port()),
            "LEADSTREAM_APP_ID": "ls-refused",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        check=False,
    )
    return (
        result.returncode,
        time.monotonic() - started,
        (result.stdout + result.stderr).splitlines(),
    )


def the_cause(lines: list[str]) -> str:
    """The one line that says why the worker stopped."""
    causes = [line for line in lines if "cannot use Kafka" in line]
    assert len(causes) == 1, "\n".join(lines[-30:])
    return causes[0]


def test_a_wrong_password_ends_the_worker_with_one_line_naming_authentication(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    assert secure_kafka.secure is not None
    wrong = "wrong-" + password(secure_kafka)[::-1]
    code, took, lines = refused_worker(
        {
            "LEADSTREAM_KAFKA_CONFIG_FILE": str(secure_kafka.secure.sasl_properties),
            "LEADSTREAM_KAFKA_SASL_PASSWORD": wrong,
        },
        tmp_path,
    )
    assert code != 0
    assert took < 60, took
    assert "authentication failed" in the_cause(lines)
    everything = "\n".join(lines)
    assert wrong not in everything and password(secure_kafka) not in everything


def test_an_untrusted_ca_ends_the_worker_with_one_line_naming_tls(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    assert secure_kafka.secure is not None
    _key, other_ca = make_ca("not the cluster's CA")
    ca_file = tmp_path / "other-ca.pem"
    ca_file.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    code, took, lines = refused_worker(
        {
            "LEADSTREAM_KAFKA_CONFIG_FILE": str(secure_kafka.secure.sasl_properties),
            "LEADSTREAM_KAFKA_SSL_CA_FILE": str(ca_file),
        },
        tmp_path,
    )
    assert code != 0
    assert took < 60, took
    cause = the_cause(lines)
    assert "TLS failed" in cause and "certificate verify failed" in cause
    assert password(secure_kafka) not in "\n".join(lines)


def test_a_plaintext_client_on_the_tls_port_ends_the_worker_with_one_line_naming_tls(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    code, took, lines = refused_worker(
        {"LEADSTREAM_KAFKA_BOOTSTRAP": secure_kafka.bootstrap}, tmp_path
    )
    assert code != 0
    assert took < 60, took
    assert "TLS failed" in the_cause(lines)


def test_no_secret_in_help_or_configuration_errors(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    assert secure_kafka.secure is not None
    secret = password(secure_kafka)
    env = {"LEADSTREAM_KAFKA_SASL_PASSWORD": secret}
    for command in (("--help",), ("worker", "--help"), ("publish", "events", "--help")):
        out = leadstream(*command, env=env)
        assert out.returncode == 0 and secret not in out.stdout + out.stderr
    # A key no client can honour: named, with its line, and the file's secrets unsaid.
    props = tmp_path / "client.properties"
    props.write_text(
        secure_kafka.secure.sasl_properties.read_text() + "ssl.truststore.password=hunter2\n"
    )
    code, _took, lines = refused_worker({"LEADSTREAM_KAFKA_CONFIG_FILE": str(props)}, tmp_path)
    assert code != 0
    cause = the_cause(lines)
    assert "ssl.truststore.password" in cause and "line 8" in cause
    everything = "\n".join(lines)
    assert "hunter2" not in everything and secret not in everything


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_sasl_mechanism_works_for_both_client_libraries(
    secure_kafka: LocalKafka, mechanism: str, tmp_path: Path
) -> None:
    """The same settings, mapped to librdkafka (router, materializer, CLI) and to aiokafka
    (faust), produce and read back over SASL_SSL."""
    assert secure_kafka.secure is not None
    connection = KafkaConnection.of(
        Settings.model_validate(
            {
                "kafka_config_file": secure_kafka.secure.sasl_properties,
                "kafka_bootstrap": secure_kafka.bootstrap,
                "kafka_sasl_mechanism": mechanism,
            }
        )
    )
    assert connection.security.sasl_mechanism == mechanism
    topic = f"sasl-{mechanism.lower()}-{time.time_ns()}"
    wait_for_broker(connection)
    produce(connection, topic, [b"from-librdkafka"])

    async def through_aiokafka() -> list[bytes]:
        auth = credentials_to_aiokafka_auth(connection.security.faust_credentials())
        producer = AIOKafkaProducer(bootstrap_servers=connection.bootstrap, **auth)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"from-aiokafka")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=connection.bootstrap, auto_offset_reset="earliest", **auth
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            async with asyncio.timeout(60):
                while len(got) < 2:
                    batch = await consumer.getmany(timeout_ms=1000)
                    got += [m.value for messages in batch.values() for m in messages]
            return got
        finally:
            await consumer.stop()

    assert sorted(asyncio.run(through_aiokafka())) == [b"from-aiokafka", b"from-librdkafka"]
    assert sorted(m.value() for m in read_topic(connection, topic, expect=2, timeout=60)) == [
        b"from-aiokafka",
        b"from-librdkafka",
    ]
