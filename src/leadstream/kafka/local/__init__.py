"""A real Apache Kafka on this machine (KRaft, no Docker): ``LocalKafka``."""

from leadstream.kafka.local.cluster import LocalKafka
from leadstream.kafka.local.distribution import KAFKA_VERSION, LocalKafkaError
from leadstream.kafka.local.node import KafkaStatus

__all__ = ["KAFKA_VERSION", "KafkaStatus", "LocalKafka", "LocalKafkaError"]
