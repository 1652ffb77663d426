"""HTTP views served by the worker."""

import logging

__all__: list[str] = []

logger = logging.getLogger(__name__)
