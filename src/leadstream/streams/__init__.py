"""Faust agents: thin shells that decode, call the domain, write state and send."""

__all__: list[str] = []
