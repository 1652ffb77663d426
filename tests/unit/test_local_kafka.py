"""Pure parts of leadstream.kafka.local: version pin, bootstrap parsing, generated config,
the layout of one node and of a cluster, the TLS material of a secured one."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from leadstream.kafka.local import (
    KAFKA_VERSION,
    KafkaStatus,
    LocalKafka,
    LocalKafkaError,
    distribution,
)
from leadstream.kafka.local import cluster as local
from leadstream.kafka.properties import read_properties

POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <properties>
    <kafka.version> 9.8.7 </kafka.version>
  </properties>
</project>
"""


def test_version_comes_from_the_deploy_pom() -> None:
    pom = distribution.DEPLOY_DIR / "pom.xml"
    assert pom.is_file()
    assert KAFKA_VERSION == distribution._read_kafka_version(pom)
    assert re.fullmatch(r"\d+\.\d+\.\d+", KAFKA_VERSION)
    # The logging config the launcher points log4j2 at ships beside the pom.
    assert (distribution.DEPLOY_DIR / "log4j2.yaml").is_file()


def test_read_kafka_version(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text(POM)
    assert distribution._read_kafka_version(pom) == "9.8.7"
    pom.write_text(POM.replace("kafka.version", "other.version"))
    with pytest.raises(LocalKafkaError, match="kafka.version"):
        distribution._read_kafka_version(pom)
    with pytest.raises(LocalKafkaError):
        distribution._read_kafka_version(tmp_path / "missing.xml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:9092", ("localhost", 9092)),
        ("127.0.0.1:39092", ("127.0.0.1", 39092)),
        ("[::1]:9092", ("::1", 9092)),
        (" localhost:1 ", ("localhost", 1)),
    ],
)
def test_parse_bootstrap(text: str, expected: tuple[str, int]) -> None:
    assert local._parse_bootstrap(text) == expected


@pytest.mark.parametrize("text", ["localhost", ":9092", "localhost:", "host:x", "h:0", "h:65535"])
def test_parse_bootstrap_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        local._parse_bootstrap(text)


def node_properties(bootstrap: str, **layout: Any) -> list[dict[str, str]]:
    kafka = LocalKafka(Path("/k"), bootstrap, **layout)
    return [local.server_properties(n, kafka.nodes, kafka.secure) for n in kafka.nodes]


def test_server_properties_single_node() -> None:
    [props] = node_properties("localhost:9092")
    assert props["listeners"] == "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://localhost:9092"
    assert props["controller.quorum.voters"] == "1@localhost:9093"
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"] == "/k/data"
    # Transactions and consumer groups need their internal topics to fit one node.
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "min.insync.replicas",
        "default.replication.factor",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"


def test_server_properties_ipv6() -> None:
    [props] = node_properties("[::1]:19092")
    assert props["listeners"] == "PLAINTEXT://[::1]:19092,CONTROLLER://[::1]:19093"
    assert props["controller.quorum.voters"] == "1@[::1]:19093"


def test_three_nodes_take_three_ports_each_and_replicate_three_times() -> None:
    kafka = LocalKafka(Path("/k"), "127.0.0.1:20000", brokers=3)
    assert kafka.bootstrap == "127.0.0.1:20000,127.0.0.1:20003,127.0.0.1:20006"
    assert [n.home for n in kafka.nodes] == [Path(f"/k/node-{i}") for i in (1, 2, 3)]
    props = node_properties("127.0.0.1:20000", brokers=3)
    voters = "1@127.0.0.1:20001,2@127.0.0.1:20004,3@127.0.0.1:20007"
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert props[2]["listeners"] == "PLAINTEXT://127.0.0.1:20006,CONTROLLER://127.0.0.1:20007"
    for p in props:
        assert p["default.replication.factor"] == "3"
        assert p["offsets.topic.replication.factor"] == "3"
        # Two copies at least for a write to count: one broker can go.
        assert p["min.insync.replicas"] == "2"
        assert p["transaction.state.log.min.isr"] == "2"


def test_a_secured_node_has_no_plaintext_listener_for_clients(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, "127.0.0.1:20000", secure=True)
    assert kafka.secure is not None
    kafka.secure.ensure("127.0.0.1", [1])
    kafka.secure.write_client_properties(kafka.bootstrap, kafka.mtls_bootstrap)
    [props] = [local.server_properties(n, kafka.nodes, kafka.secure) for n in kafka.nodes]
    assert props["listeners"] == (
        "SASL_SSL://127.0.0.1:20000,MTLS://127.0.0.1:20002,CONTROLLER://127.0.0.1:20001"
    )
    assert "PLAINTEXT://" not in props["advertised.listeners"]
    assert props["listener.name.mtls.ssl.client.auth"] == "required"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    # The files clients are handed read back as the connection they describe.
    sasl = read_properties(kafka.secure.sasl_properties)
    assert (sasl.bootstrap, sasl.protocol, sasl.sasl_mechanism) == (
        "127.0.0.1:20000",
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    assert sasl.sasl_password == kafka.secure.passwords()["leadstream"]
    mtls = read_properties(kafka.secure.mtls_properties)
    assert (mtls.bootstrap, mtls.protocol) == ("127.0.0.1:20002", "SSL")
    assert mtls.ssl_cert_file == kafka.secure.client_cert_file
    # Keys and passwords are the owner's only.
    for private in (kafka.secure.client_key_file, kafka.secure.sasl_properties):
        assert private.stat().st_mode & 0o077 == 0


def test_a_home_keeps_its_layout(tmp_path: Path) -> None:
    (tmp_path / "layout.json").write_text('{"brokers": 3, "secure": false}')
    assert len(LocalKafka.existing(tmp_path, "127.0.0.1:20000").nodes) == 3
    with pytest.raises(LocalKafkaError, match="3 broker"):
        LocalKafka(tmp_path, "127.0.0.1:20000").start()


def test_cluster_id_shape() -> None:
    ids = {local._new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        # Kafka's Uuid text form: 16 bytes, url-safe base64, no padding.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
        assert not cid.startswith("-")


def test_layout_and_status_without_a_broker(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "home", bootstrap="127.0.0.1:1", cache_dir=tmp_path / "c")
    [node] = kafka.nodes
    assert node.ports == {"client": 1, "controller": 2}
    assert kafka.log_path == tmp_path / "home" / "logs" / "server.log"
    (tmp_path / "home").mkdir()
    # A stale pid (here: this test process, which is not a broker) is ignored.
    node.pid_path.write_text(f"{os.getpid()}\n")
    assert kafka.status() == KafkaStatus(
        running=False,
        pid=None,
        bootstrap="127.0.0.1:1",
        log_path=kafka.log_path,
        version=KAFKA_VERSION,
    )
    kafka.stop()  # idempotent: nothing to stop, stale pid file removed
    assert not node.pid_path.exists()


def test_default_cache_dir_is_per_version(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path)
    assert kafka.cache_dir.name == f"kafka-{KAFKA_VERSION}"


def test_written_config_escapes_backslashes_and_is_private(tmp_path: Path) -> None:
    [node] = LocalKafka(tmp_path, "127.0.0.1:20000").nodes
    node.write_config({"a": "1", "log.dirs": "C:\\x"})
    text = node.config_path.read_text()
    assert text.startswith("#") and text.endswith("\n")
    assert "a=1\n" in text
    assert "log.dirs=C:\\\\x\n" in text
    assert node.config_path.stat().st_mode & 0o077 == 0


def fake_distribution(tmp_path: Path) -> tuple[Path, Path]:
    """A libs dir of three jars and the manifest that pins them."""
    libs = tmp_path / "libs"
    libs.mkdir()
    lines = []
    for name, body in [("a-1.0.jar", b"a" * 5000), ("b-2.0.jar", b"b"), ("c_2.13-3.jar", b"")]:
        (libs / name).write_bytes(body)
        lines.append(f"{hashlib.sha256(body).hexdigest()}  {name}")
    manifest = tmp_path / "jars.sha256"
    manifest.write_text("\n".join(lines) + "\n")
    return libs, manifest


def test_the_pinned_jars_pass(tmp_path: Path) -> None:
    libs, manifest = fake_distribution(tmp_path)
    distribution.verify_distribution(libs, manifest)


def test_a_tampered_jar_is_refused_by_name(tmp_path: Path) -> None:
    libs, manifest = fake_distribution(tmp_path)
    jar = libs / "a-1.0.jar"
    body = bytearray(jar.read_bytes())
    body[4321] ^= 1  # one bit, same size
    stat = jar.stat()
    jar.write_bytes(bytes(body))
    os.utime(jar, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old timestamp
    with pytest.raises(LocalKafkaError, match=r"a-1\.0\.jar has SHA-256 [0-9a-f]{64}, not the"):
        distribution.verify_distribution(libs, manifest)


def test_a_missing_jar_is_refused_by_name(tmp_path: Path) -> None:
    libs, manifest = fake_distribution(tmp_path)
    (libs / "b-2.0.jar").unlink()
    with pytest.raises(LocalKafkaError, match=r"b-2\.0\.jar is missing"):
        distribution.verify_distribution(libs, manifest)


def test_an_extra_jar_is_refused_by_name(tmp_path: Path) -> None:
    # The broker's classpath is libs/*: a jar added there runs as surely as a changed one.
    libs, manifest = fake_distribution(tmp_path)
    (libs / "evil-1.0.jar").write_bytes(b"PK")
    with pytest.raises(LocalKafkaError, match=r"evil-1\.0\.jar is not a Kafka jar pinned"):
        distribution.verify_distribution(libs, manifest)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc  a.jar\n",
        f"{'0' * 64} a.jar\n",
        f"{'0' * 64}  ../a.jar\n",
        f"{'0' * 64}  a.jar\n" * 2,
    ],
)
def test_a_malformed_manifest_is_refused(tmp_path: Path, text: str) -> None:
    libs, manifest = fake_distribution(tmp_path)
    manifest.write_text(text)
    with pytest.raises(LocalKafkaError, match="jars.sha256"):
        distribution.verify_distribution(libs, manifest)


def test_the_checked_in_manifest_pins_the_jars_of_the_pom() -> None:
    pinned = distribution.read_manifest(distribution.MANIFEST)
    # The broker's own jar and the logging binding the pom adds, at the pom's versions.
    assert f"kafka_2.13-{KAFKA_VERSION}.jar" in pinned
    assert f"kafka-clients-{KAFKA_VERSION}.jar" in pinned
    log4j = re.search(
        r"<log4j.version>(.+)</log4j.version>", (distribution.DEPLOY_DIR / "pom.xml").read_text()
    )
    assert log4j is not None
    assert f"log4j-slf4j-impl-{log4j[1]}.jar" in pinned
    # Every Kafka jar is of the pinned release (a version bump must renew the manifest).
    for name in pinned:
        if name.startswith("kafka"):
            assert name.endswith(f"-{KAFKA_VERSION}.jar"), name


def test_a_start_on_a_tampered_cache_is_refused_before_any_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every start goes through ensure_distribution: jars already in the cache are checked
    # again, and the one-line error names the jar and how to recover.
    libs, manifest = fake_distribution(tmp_path)
    monkeypatch.setattr(distribution, "MANIFEST", manifest)
    pom = (distribution.DEPLOY_DIR / "pom.xml").read_bytes()
    cache = tmp_path / "cache"
    cached = cache / f"libs-{hashlib.sha256(pom).hexdigest()[:16]}"
    cache.mkdir()
    libs.rename(cached)
    assert distribution.ensure_distribution(cache) == cached
    (cached / "c_2.13-3.jar").write_bytes(b"changed")
    kafka = LocalKafka(tmp_path / "home", "127.0.0.1:1", cache_dir=cache)
    with pytest.raises(LocalKafkaError) as refused:
        kafka.start()
    message = str(refused.value)
    assert "\n" not in message
    assert f"{cached / 'c_2.13-3.jar'} has SHA-256" in message
    assert f"refusing to start Kafka (delete {cached} to fetch the jars again)" in message
    assert not kafka.nodes[0].pid_path.exists()
    assert not (tmp_path / "home" / "data").exists()


def test_acls_turn_on_the_authorizer_of_a_secured_node_only(tmp_path: Path) -> None:
    plain = LocalKafka(tmp_path, "127.0.0.1:20000", secure=True)
    enforced = LocalKafka(tmp_path, "127.0.0.1:20000", secure=True, acls=True)
    assert enforced.secure is not None
    enforced.secure.ensure("127.0.0.1", [1])
    [props] = [local.server_properties(n, plain.nodes, plain.secure) for n in plain.nodes]
    assert "authorizer.class.name" not in props
    node = enforced.nodes[0]
    props = local.server_properties(node, enforced.nodes, enforced.secure, acls=True)
    assert props["authorizer.class.name"].endswith(".StandardAuthorizer")
    # Only the brokers' own user and the loopback controller listener's principal.
    assert props["super.users"] == "User:broker;User:ANONYMOUS"
    with pytest.raises(ValueError, match="acls need secure"):
        LocalKafka(tmp_path, "127.0.0.1:20000", acls=True)


def test_the_cli_refuses_a_changed_distribution_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    from click.testing import CliRunner

    from leadstream.cli.main import main

    libs, manifest = fake_distribution(tmp_path)
    monkeypatch.setattr(distribution, "MANIFEST", manifest)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    pom = (distribution.DEPLOY_DIR / "pom.xml").read_bytes()
    cached = distribution.default_cache_dir() / f"libs-{hashlib.sha256(pom).hexdigest()[:16]}"
    cached.parent.mkdir(parents=True)
    libs.rename(cached)
    (cached / "b-2.0.jar").unlink()
    result = CliRunner().invoke(
        main,
        ["kafka", "start", "--data-dir", str(tmp_path / "d"), "--bootstrap", "127.0.0.1:1"],
    )
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: cannot start the local Kafka: Kafka jar ")
    assert "b-2.0.jar is missing" in line
