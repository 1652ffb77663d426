"""``python -m leadstream.cli``: the same as the ``leadstream`` command."""

from leadstream.cli.main import main

__all__: list[str] = []

# Guarded: a spawned child process (streams/lead_events.py) imports this module again.
if __name__ == "__main__":
    main()
