"""``python -m bench``: the whole benchmark (see :mod:`bench.suite`)."""

from bench.suite import main

if __name__ == "__main__":  # a spawned helper process imports this module again
    main()
