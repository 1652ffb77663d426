"""Pure parts of leadstream.kafka.local: version pin, bootstrap parsing, generated config."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from leadstream.kafka import local
from leadstream.kafka.local import KAFKA_VERSION, KafkaStatus, LocalKafka, LocalKafkaError

POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <properties>
    <kafka.version> 9.8.7 </kafka.version>
  </properties>
</project>
"""


def test_version_comes_from_the_deploy_pom() -> None:
    pom = local._DEPLOY_DIR / "pom.xml"
    assert pom.is_file()
    assert KAFKA_VERSION == local._read_kafka_version(pom)
    assert re.fullmatch(r"\d+\.\d+\.\d+", KAFKA_VERSION)
    # The logging config the launcher points log4j2 at ships beside the pom.
    assert (local._DEPLOY_DIR / "log4j2.yaml").is_file()


def test_read_kafka_version(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text(POM)
    assert local._read_kafka_version(pom) == "9.8.7"
    pom.write_text(POM.replace("kafka.version", "other.version"))
    with pytest.raises(LocalKafkaError, match="kafka.version"):
        local._read_kafka_version(pom)
    with pytest.raises(LocalKafkaError):
        local._read_kafka_version(tmp_path / "missing.xml")


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


def test_server_properties_single_node(tmp_path: Path) -> None:
    props = local._server_properties("localhost", 9092, tmp_path / "data")
    assert props["listeners"] == "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://localhost:9092"
    assert props["controller.quorum.voters"] == "1@localhost:9093"
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"] == str(tmp_path / "data")
    # Transactions and consumer groups need their internal topics to fit one node.
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "min.insync.replicas",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"


def test_server_properties_ipv6() -> None:
    props = local._server_properties("::1", 19092, Path("/d"))
    assert props["listeners"] == "PLAINTEXT://[::1]:19092,CONTROLLER://[::1]:19093"
    assert props["controller.quorum.voters"] == "1@[::1]:19093"


def test_render_properties_escapes_backslashes() -> None:
    text = local._render_properties({"a": "1", "log.dirs": "C:\\x"})
    assert text.startswith("#")
    assert text.endswith("\n")
    assert "a=1\n" in text
    assert "log.dirs=C:\\\\x\n" in text


def test_cluster_id_shape() -> None:
    ids = {local._new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        # Kafka's Uuid text form: 16 bytes, url-safe base64, no padding.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
        assert not cid.startswith("-")


def test_layout_and_status_without_a_broker(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "home", bootstrap="127.0.0.1:1", cache_dir=tmp_path / "c")
    assert kafka.controller_port == 2
    assert kafka.log_path == tmp_path / "home" / "logs" / "server.log"
    (tmp_path / "home").mkdir()
    # A stale pid (here: this test process, which is not a broker) is ignored.
    kafka.pid_path.write_text(f"{os.getpid()}\n")
    assert kafka.status() == KafkaStatus(
        running=False,
        pid=None,
        bootstrap="127.0.0.1:1",
        log_path=kafka.log_path,
        version=KAFKA_VERSION,
    )
    kafka.stop()  # idempotent: nothing to stop, stale pid file removed
    assert not kafka.pid_path.exists()


def test_default_cache_dir_is_per_version(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path)
    assert kafka.cache_dir.name == f"kafka-{KAFKA_VERSION}"
