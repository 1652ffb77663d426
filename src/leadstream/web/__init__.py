"""HTTP views served by the worker."""

__all__: list[str] = []
