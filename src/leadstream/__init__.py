"""leadstream: lead-event ingest, dedupe and recipient-list materialization on Kafka."""

__all__ = ["__version__"]

__version__ = "0.1.0"
