"""leadstream: lead-event ingest, dedupe and recipient-list materialization on Kafka."""

import logging

__all__ = ["__version__"]

__version__ = "0.1.0"

logger = logging.getLogger(__name__)
