"""leadstream on a broker that enforces Kafka ACLs, with exactly the ACLs the README's
production section documents (its ``kafka-acls.sh`` commands, applied as written): a worker
runs as principal ``leadstream`` and is denied nothing; a source system, the scheduler and
the dispatcher, each a principal of its own, get a send through from events to recipients;
and each of them is refused what the ACLs do not give it (a source writing send-triggers).

One secured single-node broker (SASL_SSL, StandardAuthorizer) of the module's own, one
worker: about 40 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from leadstream.kafka.local import LocalKafka
from leadstream.kafka.local.secure import BROKER_USER, CLIENT_USER
from tests.support.stack import Stack
from tests.support.worker import free_broker_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
APP = "leadstream"  # the README's commands are for the default app id and no topic prefix
INPUTS = ("lead-events", "audience-members", "audience-filters", "send-triggers")
OUTPUTS = ("send-recipients", "rejects")
OTHERS = ("crm", "lists", "scheduler", "dispatcher")
ORG = 42
CAMPAIGN = "acl-c1"


def documented_acls() -> list[list[str]]:
    """The arguments of each ``acls ...`` command of the README's ACL block."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Who may write what: Kafka ACLs", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert 'kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config' in block
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line.replace("$APP", APP), comments=True)
        if words and words[0] == "acls":
            commands.append(words[1:])
    return commands


RESOURCES = {
    "--topic": ResourceType.TOPIC,
    "--group": ResourceType.GROUP,
    "--transactional-id": ResourceType.TRANSACTIONAL_ID,
}


def bindings(arguments: list[str]) -> list[AclBinding]:
    """What ``kafka-acls.sh --add`` makes of one command's arguments (the options the README
    uses; any other fails the test rather than being skipped)."""
    principal, operations, resources = "", [], []
    pattern = ResourcePatternType.LITERAL
    words = iter(arguments)
    for word in words:
        if word == "--allow-principal":
            principal = next(words)
        elif word == "--operation":
            operations.append(AclOperation[re.sub(r"(?<!^)(?=[A-Z])", "_", next(words)).upper()])
        elif word in RESOURCES:
            resources.append((RESOURCES[word], next(words)))
        elif word == "--cluster":
            resources.append((ResourceType.BROKER, "kafka-cluster"))
        elif word == "--resource-pattern-type":
            pattern = ResourcePatternType[next(words).upper()]
        else:
            raise AssertionError(f"an option the test does not know: {word}")
    assert principal.startswith("User:") and operations and resources, arguments
    return [
        AclBinding(kind, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)
        for kind, name in resources
        for operation in operations
    ]


def client(kafka: LocalKafka, user: str, password: str) -> dict[str, Any]:
    assert kafka.secure is not None
    return {
        "bootstrap.servers": kafka.bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(kafka.secure.ca_file),
    }


def properties_file(path: Path, config: dict[str, Any]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
    return path


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    home = tmp_path_factory.mktemp("acl-kafka")
    cluster = LocalKafka(home, f"127.0.0.1:{free_broker_port(3)}", secure=True, acls=True)
    cluster.start(timeout=300)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def principals(kafka: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A client properties file per principal, after the brokers' own user (the only super
    user) has made the users, the six topics and the README's ACLs."""
    assert kafka.secure is not None
    passwords = kafka.secure.passwords()
    admin = AdminClient(client(kafka, BROKER_USER, passwords[BROKER_USER]))
    users = admin.alter_user_scram_credentials(
        [
            UserScramCredentialUpsertion(
                user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), f"{user}-pw".encode()
            )
            for user in OTHERS
        ]
    )
    for done in users.values():
        done.result()
    created = admin.create_topics([NewTopic(name, 4, 1) for name in (*INPUTS, *OUTPUTS)])
    for done in created.values():
        done.result()
    acls = [binding for command in documented_acls() for binding in bindings(command)]
    for done in admin.create_acls(acls).values():
        done.result()
    # Created means committed by the controller; the broker authorizes with them once its
    # metadata has caught up, which describe_acls (answered by the broker) shows.
    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(admin.describe_acls(everything).result()) < len(set(acls)):
        assert time.monotonic() < deadline, "the broker never showed the ACLs"
        time.sleep(0.2)
    root = tmp_path_factory.mktemp("principals")
    files = {
        user: properties_file(root / f"{user}.properties", client(kafka, user, f"{user}-pw"))
        for user in OTHERS
    }
    files[CLIENT_USER] = kafka.secure.sasl_properties
    return files


def leadstream(principal: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as one principal (its client properties file), default app id and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_")}
    env["LEADSTREAM_KAFKA_CONFIG_FILE"] = str(principal)
    return subprocess.run(
        [sys.executable, "-m", "leadstream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


def config_of(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.startswith("#")}


def refused_write(principal: Path, topic: str) -> KafkaError | None:
    """The error of one produce to ``topic`` as ``principal`` (None when it was written)."""
    producer = Producer({**config_of(principal), "message.timeout.ms": 15000})
    errors: list[KafkaError | None] = []
    producer.produce(topic, b"{}", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(30)
    assert len(errors) == 1
    return errors[0]


def refused_read(principal: Path, topic: str, group: str) -> KafkaError | None:
    consumer = Consumer(
        {**config_of(principal), "group.id": group, "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                return msg.error()
        return None
    finally:
        consumer.close()


def dispatch(
    principal: Path, send_id: str, timeout: float = 120
) -> tuple[set[str], dict[str, Any]]:
    """The recipients and the summary of a send, read as a dispatcher does: its own group,
    read_committed."""
    consumer = Consumer(
        {
            **config_of(principal),
            "group.id": "dispatcher",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    phones: set[str] = set()
    try:
        consumer.subscribe(["send-recipients"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            value = json.loads(msg.value())
            if value["sendId"] != send_id:
                continue
            if value["type"] == "summary":
                return phones, value
            phones |= {r["phoneE164"] for r in value["recipients"]}
        raise AssertionError(f"no summary of {send_id} within {timeout}s")
    finally:
        consumer.close()


def phone(i: int) -> str:
    return f"+1555400{i:04d}"


def test_a_send_goes_through_with_the_documented_acls_and_nothing_else_is_allowed(
    kafka: LocalKafka, principals: dict[str, Path], tmp_path: Path
) -> None:
    stack = Stack(
        kafka.bootstrap,
        app_id=APP,
        topic_prefix="",
        root=tmp_path / "stack",
        kafka_config_file=principals[CLIENT_USER],
    )
    try:
        stack.worker()
        audience = tmp_path / "audience.csv"
        audience.write_text("phoneE164\n" + "".join(f"{phone(i)}\n" for i in range(30)))
        out = leadstream(
            principals["lists"], "publish", "audience", str(audience), "--org", str(ORG),
            "--campaign", CAMPAIGN,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        buyers = set(range(0, 30, 3))
        events = tmp_path / "events.csv"
        events.write_text(
            "organizationId,eventType,phoneE164,occurredAt\n"
            + "".join(f"{ORG},purchase,{phone(i)},2026-05-12T18:00:00Z\n" for i in buyers)
        )
        out = leadstream(principals["crm"], "publish", "events", str(events))
        assert out.returncode == 0, out.stderr
        stack.wait_caught_up()
        out = leadstream(
            principals["scheduler"], "trigger", "--org", str(ORG), "--campaign", CAMPAIGN,
            "--send", "acl-send", "--scheduled-for", "2026-01-01T00:00:00Z",
            "--filter", "exclude:purchase",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr

        recipients, summary = dispatch(principals["dispatcher"], "acl-send")
        assert recipients == {phone(i) for i in range(30) if i not in buyers}
        assert summary["recipientCount"] == len(recipients)
    finally:
        stack.close()

    # The worker was refused nothing: the documented ACLs are all it needs.
    log = "\n".join(p.read_text() for p in kafka.log_path.parent.glob("server.log*"))
    assert f"Principal = User:{CLIENT_USER} is Denied" not in log

    # A source system writes its own topic only; nobody but leadstream reads the inputs.
    denied = KafkaError.TOPIC_AUTHORIZATION_FAILED
    for principal, topic in [
        ("crm", "send-triggers"),
        ("crm", "audience-members"),
        ("lists", "lead-events"),
        ("scheduler", "lead-events"),
        ("dispatcher", "send-triggers"),
        ("dispatcher", "send-recipients"),
    ]:
        error = refused_write(principals[principal], topic)
        assert error is not None and error.code() == denied, (principal, topic, error)
    # The dispatcher reads send-recipients in its own group, nothing else, nowhere else.
    topic_denied, group_denied = denied, KafkaError.GROUP_AUTHORIZATION_FAILED
    for principal, topic, group, code in [
        ("dispatcher", "lead-events", "dispatcher", topic_denied),
        ("dispatcher", "send-triggers", "dispatcher", topic_denied),
        ("dispatcher", "send-recipients", "another-group", group_denied),
        ("crm", "send-recipients", "dispatcher", group_denied),
    ]:
        error = refused_read(principals[principal], topic, group)
        assert error is not None and error.code() == code, (principal, topic, group, error)
