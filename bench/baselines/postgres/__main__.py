"""``python -m bench.baselines.postgres``: the PostgreSQL baseline at full size, as JSON."""

from bench.baselines.postgres.baseline import main

main()
