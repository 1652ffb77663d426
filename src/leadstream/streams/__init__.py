"""Faust agents: thin shells that decode, call the domain, write state and send."""

import logging

__all__: list[str] = []

logger = logging.getLogger(__name__)
