"""``python -m leadstream.cli``: the same as the ``leadstream`` command."""

from leadstream.cli.main import main

__all__: list[str] = []

main()
