"""The ``leadstream`` command line."""

import logging

__all__: list[str] = []

logger = logging.getLogger(__name__)
