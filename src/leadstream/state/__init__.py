"""Per-partition key/value state: the store port, its byte keys and its implementations."""

__all__: list[str] = []
