"""PostgreSQL baseline: one lead-events table, ON CONFLICT dedupe, anti-joins at send time.

Run ``python -m bench.baselines.postgres``; see README.md beside this file.
"""
