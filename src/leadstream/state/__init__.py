"""Per-partition key/value state: the store port, its byte keys and its implementations."""

import logging

__all__: list[str] = []

logger = logging.getLogger(__name__)
