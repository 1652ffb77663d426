"""Which topics a metadata answer shows ready: the wait after creating topics relies on it."""

from __future__ import annotations

from confluent_kafka import KafkaError
from confluent_kafka.admin import PartitionMetadata, TopicMetadata

from leadstream.kafka.admin import unready_topics


def topic(name: str, leaders: list[int], error: KafkaError | None = None) -> TopicMetadata:
    t = TopicMetadata()
    t.topic, t.error = name, error
    for i, leader in enumerate(leaders):
        p = PartitionMetadata()
        p.id, p.leader = i, leader
        t.partitions[i] = p
    return t


def test_topics_with_a_leader_for_every_partition_are_ready() -> None:
    served = {"a": topic("a", [1, 1, 1, 1]), "b": topic("b", [2])}
    assert unready_topics(served, ["a", "b"]) == {}


def test_a_topic_missing_from_metadata_is_not_ready() -> None:
    assert unready_topics({"a": topic("a", [1])}, ["a", "b"]) == {"b": "not in metadata"}


def test_a_partition_without_a_leader_makes_its_topic_not_ready() -> None:
    assert unready_topics({"a": topic("a", [1, -1, 1, -1])}, ["a"]) == {
        "a": "no leader for partitions [1, 3]"
    }


def test_a_partition_with_a_leader_is_ready_despite_a_replica_error() -> None:
    t = topic("a", [1, 1])
    t.partitions[1].error = KafkaError(KafkaError.REPLICA_NOT_AVAILABLE)
    assert unready_topics({"a": t}, ["a"]) == {}


def test_a_topic_error_or_no_partitions_is_not_ready() -> None:
    err = KafkaError(KafkaError.LEADER_NOT_AVAILABLE)
    served = {"a": topic("a", [1], error=err), "b": topic("b", [])}
    unready = unready_topics(served, ["a", "b"])
    assert set(unready) == {"a", "b"}
    assert unready["b"] == "no partitions"
    assert "LEADER_NOT_AVAILABLE" in unready["a"]


def test_only_the_wanted_topics_are_checked() -> None:
    assert unready_topics({"other": topic("other", [-1])}, []) == {}
