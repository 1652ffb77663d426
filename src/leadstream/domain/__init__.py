"""The product's rules as pure functions: no Kafka, no faust, no RocksDB in here."""

__all__: list[str] = []
