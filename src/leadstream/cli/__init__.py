"""The ``leadstream`` command line."""

__all__: list[str] = []
