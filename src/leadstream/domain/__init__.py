"""The product's rules as pure functions: no Kafka, no faust, no RocksDB in here."""

import logging

__all__: list[str] = []

logger = logging.getLogger(__name__)
