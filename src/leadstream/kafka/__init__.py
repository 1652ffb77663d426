"""Kafka from leadstream's side: one place that builds every client, cluster
administration, and the local broker for machines without Docker."""

__all__: list[str] = []
