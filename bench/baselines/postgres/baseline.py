"""The PostgreSQL baseline: ingest, dedupe and send-time recipient lists, timed.

Every function takes a :class:`~bench.dataset.Dataset` and/or a libpq conninfo and returns
plain numbers. ``run_all`` runs the whole benchmark; ``main`` starts a throwaway server,
runs it on the default dataset and prints JSON::

    python -m bench.baselines.postgres [--runs 3] [--type-index]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.baselines.postgres.server import SETTINGS, PostgresServer
from bench.dataset import (
    ATTENDED,
    DAY_MS,
    DOI,
    MINUTE_MS,
    OPT_IN,
    OPT_OUT,
    PURCHASE,
    WINDOW_MINUTES,
    Dataset,
    generate,
    stats,
)

__all__ = [
    "KINDS",
    "ORG",
    "bulk_ingest",
    "create_schema",
    "footprint",
    "load_audience",
    "main",
    "recipients",
    "run_all",
    "single_row_ingest",
]

ORG = "bench"
SCHEMA = Path(__file__).with_name("schema.sql")
TYPE_INDEX_BEGIN, TYPE_INDEX_END = "-- @type_index", "-- @end"

INSERT_ONE = (
    "INSERT INTO lead_events (organization_id, phone, event_type, occurred_at)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS staging ("
    " organization_id text, phone text, event_type text, occurred_at bigint"
    ") ON COMMIT DELETE ROWS"
)
COPY_STAGING = "COPY staging (organization_id, phone, event_type, occurred_at) FROM STDIN"
# Sorted in key order, consecutive rows land on the same B-tree leaf pages: 11-13% faster
# than insertion in arrival order (measured; see README.md).
MERGE_STAGING = (
    "INSERT INTO lead_events (organization_id, phone, event_type, occurred_at)"
    " SELECT organization_id, phone, event_type, occurred_at FROM staging"
    " ORDER BY organization_id, phone, event_type, occurred_at"
    " ON CONFLICT DO NOTHING"
)

# Latest opt event by occurredAt is an opt-out (an opt-out wins a tie): there is an
# opt-out with no strictly later opt-in.
NOT_OPTED_OUT = """
    AND NOT EXISTS (
        SELECT 1 FROM lead_events o
        WHERE o.organization_id = a.organization_id AND o.phone = a.phone
          AND o.event_type = %(opt_out)s
          AND NOT EXISTS (
              SELECT 1 FROM lead_events i
              WHERE i.organization_id = o.organization_id AND i.phone = o.phone
                AND i.event_type = %(opt_in)s AND i.occurred_at > o.occurred_at))
"""
AUDIENCE = """
    SELECT a.phone FROM audience_members a
    WHERE a.organization_id = %(org)s AND a.campaign_id = %(campaign)s
"""
HAS_EVENT = """
    EXISTS (
        SELECT 1 FROM lead_events e
        WHERE e.organization_id = a.organization_id AND e.phone = a.phone
          AND e.event_type = %(event_type)s
"""
WINDOW = "AND e.occurred_at BETWEEN %(since)s AND %(until)s"
# The three benchmarked filters: sticky exclude, 120-minute window exclude, include.
KIND_SQL: dict[str, str] = {
    "sticky_exclude": f"{AUDIENCE} AND NOT {HAS_EVENT}) {NOT_OPTED_OUT}",
    "window_exclude_120min": f"{AUDIENCE} AND NOT {HAS_EVENT} {WINDOW}) {NOT_OPTED_OUT}",
    "include": f"{AUDIENCE} AND {HAS_EVENT}) {NOT_OPTED_OUT}",
}
KIND_EVENT = {"sticky_exclude": PURCHASE, "window_exclude_120min": ATTENDED, "include": DOI}
KINDS = tuple(KIND_SQL)


def create_schema(conninfo: str, *, type_index: bool = False) -> None:
    """Drop and create the tables of schema.sql; the general type index only if asked."""
    sql = SCHEMA.read_text()
    if not type_index:
        head, rest = sql.split(TYPE_INDEX_BEGIN, 1)
        sql = head + rest.split(TYPE_INDEX_END, 1)[1]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS lead_events, audience_members")
        conn.execute(sql.encode())


def _chunks(ds: Dataset, batch: int) -> Iterator[list[tuple[str, str, str, int]]]:
    phones = ds.phones
    events = ds.events
    for lo in range(0, len(events), batch):
        yield [(ORG, phones[lead], t, at) for lead, t, at in events[lo : lo + batch]]


def _reset_events(conninfo: str) -> None:
    """Empty table, flushed to disk, so every timed load starts from the same state."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE lead_events")
        conn.execute("CHECKPOINT")


def _wal_lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


def bulk_ingest(ds: Dataset, conninfo: str, batch: int = 50_000) -> dict[str, float]:
    """Load every event into an emptied table, ``batch`` rows per transaction.

    Per batch: COPY into a temporary staging table, then ``INSERT ... SELECT ... ON CONFLICT
    DO NOTHING`` into lead_events, committed together. The clock covers building the rows
    on the client, COPY, the insert with both indexes' maintenance and every commit.
    """
    _reset_events(conninfo)
    inserted = 0
    merge_seconds = 0.0
    with psycopg.connect(conninfo) as conn:
        conn.execute(STAGING)
        conn.commit()
        wal_before = _wal_lsn(conn)
        conn.commit()
        started = time.perf_counter()
        for rows in _chunks(ds, batch):
            with conn.cursor() as cur:
                with cur.copy(COPY_STAGING) as copy:
                    for row in rows:
                        copy.write_row(row)
                merge_started = time.perf_counter()
                cur.execute(MERGE_STAGING)
                merge_seconds += time.perf_counter() - merge_started
                inserted += cur.rowcount
            conn.commit()
        seconds = time.perf_counter() - started
        wal_bytes = _wal_lsn(conn) - wal_before
    if inserted != ds.distinct_events:
        raise RuntimeError(f"inserted {inserted} rows, expected {ds.distinct_events}")
    return {
        "seconds": seconds,
        "events_per_s": len(ds.events) / seconds,
        "inserted": inserted,
        "duplicates": len(ds.events) - inserted,
        # Of ``seconds``: the server's INSERT ... SELECT (dedupe, heap and index writes).
        "merge_seconds": merge_seconds,
        "wal_bytes": wal_bytes,
    }


def single_row_ingest(
    ds: Dataset, conninfo: str, n: int = 20_000, *, shift_days: int = 30
) -> dict[str, float]:
    """``n`` events, one autocommit ``INSERT ... ON CONFLICT DO NOTHING`` each.

    One client connection, a prepared statement, into the already-loaded table. The rows
    are the first ``n`` of the dataset moved ``shift_days`` earlier: new keys (the
    dataset's rows lie in the last 30 days), the same leads and types, so no send's
    recipients change. Exact duplicates among them take the conflict path, as in the
    dataset. Pass a different ``shift_days`` (a multiple of 30) for each repeat.
    """
    shift = shift_days * DAY_MS
    rows = [(ORG, ds.phones[lead], t, at - shift) for lead, t, at in ds.events[:n]]
    inserted = 0
    with psycopg.connect(conninfo, autocommit=True, prepare_threshold=0) as conn:
        with conn.cursor() as cur:
            started = time.perf_counter()
            for row in rows:
                cur.execute(INSERT_ONE, row, prepare=True)
                inserted += cur.rowcount
            seconds = time.perf_counter() - started
    return {"seconds": seconds, "events_per_s": n / seconds, "inserted": inserted}


def load_audience(ds: Dataset, conninfo: str, campaign: str, size: int) -> dict[str, float]:
    """Replace ``campaign``'s members with the first ``size`` phones (one COPY), analyzed."""
    with psycopg.connect(conninfo) as conn:
        started = time.perf_counter()
        conn.execute(
            "DELETE FROM audience_members WHERE organization_id = %s AND campaign_id = %s",
            (ORG, campaign),
        )
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY audience_members (organization_id, campaign_id, phone) FROM STDIN"
            ) as copy,
        ):
            for phone in ds.audience(size):
                copy.write_row((ORG, campaign, phone))
        conn.commit()
        seconds = time.perf_counter() - started
    vacuum_seconds = vacuum_analyze(conninfo, "audience_members")
    return {"seconds": seconds, "members": size, "vacuum_analyze_seconds": vacuum_seconds}


def vacuum_analyze(conninfo: str, table: str) -> float:
    """VACUUM ANALYZE ``table``: statistics for the planner, visibility map for index-only
    scans (autovacuum would do the same a little later). Returns its seconds."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(f"VACUUM (ANALYZE) {table}")
        return time.perf_counter() - started


def _kind_params(kind: str, campaign: str, fire_ms: int) -> dict[str, Any]:
    if kind not in KIND_SQL:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return {
        "org": ORG,
        "campaign": campaign,
        "event_type": KIND_EVENT[kind],
        "since": fire_ms - WINDOW_MINUTES * MINUTE_MS,
        "until": fire_ms,
        "opt_out": OPT_OUT,
        "opt_in": OPT_IN,
    }


def recipients(
    conninfo: str, kind: str, campaign: str, fire_ms: int, *, warmup: bool = True
) -> tuple[float, int]:
    """Seconds to compute and fetch every recipient phone of a send, and how many.

    The clock covers executing the anti-join and fetching all rows into the client (the
    product emits the whole list too), not connecting. ``warmup`` runs it once untimed.
    """
    params = _kind_params(kind, campaign, fire_ms)
    sql = KIND_SQL[kind]
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cur:
        if warmup:
            cur.execute(sql, params)
            cur.fetchall()
        started = time.perf_counter()
        cur.execute(sql, params)
        rows = cur.fetchall()
        return time.perf_counter() - started, len(rows)


def explain(conninfo: str, kind: str, campaign: str, fire_ms: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a send's query, for the README and for tuning."""
    params = _kind_params(kind, campaign, fire_ms)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {KIND_SQL[kind]}", params).fetchall()
    return "\n".join(str(r[0]) for r in rows)


def footprint(conninfo: str) -> dict[str, int]:
    """On-disk size of lead_events: heap (with TOAST, FSM, VM) and its indexes."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT pg_table_size('lead_events'), pg_indexes_size('lead_events'),"
            " pg_total_relation_size('lead_events'),"
            " pg_total_relation_size('audience_members')"
        ).fetchone()
    assert row is not None
    table, index, total, audience = (int(v) for v in row)
    return {
        "table_bytes": table,
        "index_bytes": index,
        "total_bytes": total,
        "audience_total_bytes": audience,
    }


def _median_of(runs: int, measure: Callable[[int], dict[str, float]]) -> dict[str, Any]:
    """Median of each number over ``runs`` calls of ``measure(run)``, and every run."""
    results = [measure(run) for run in range(runs)]
    out: dict[str, Any] = {k: statistics.median(r[k] for r in results) for k in results[0]}
    out["runs"] = results
    return out


def _server_version(conninfo: str) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def run_all(
    ds: Dataset,
    conninfo: str,
    runs: int = 3,
    *,
    audience_sizes: Sequence[int] = (1_000_000, 100_000),
    type_index: bool = False,
) -> dict[str, Any]:
    """The whole baseline; medians over ``runs`` of each timed scenario, counts checked.

    Order: bulk ingest ``runs`` times (each into an emptied table), VACUUM ANALYZE, size,
    audiences, recipient lists (warm), then single-row ingest (which adds rows that change
    no recipient list, last so the lists see exactly the bulk-loaded table).
    """
    # A smaller dataset (a quick try) caps the audiences at its population.
    sizes = sorted({min(s, len(ds.phones)) for s in audience_sizes}, reverse=True)
    expected = stats(ds, sizes)
    create_schema(conninfo, type_index=type_index)
    out: dict[str, Any] = {
        "postgres": _server_version(conninfo),
        "settings": SETTINGS,
        "type_index": type_index,
        "dataset": {k: expected[k] for k in ("phones", "events", "distinct_events", "duplicates")},
        "runs": runs,
    }
    out["bulk_ingest"] = _median_of(runs, lambda _: bulk_ingest(ds, conninfo))
    out["vacuum_analyze_seconds"] = vacuum_analyze(conninfo, "lead_events")
    out["footprint"] = footprint(conninfo)
    out["audiences"] = {}
    out["recipients"] = {}
    for size in sizes:
        campaign = f"c{size}"
        out["audiences"][str(size)] = load_audience(ds, conninfo, campaign, size)
        out["recipients"][str(size)] = {
            kind: _timed_recipients(conninfo, kind, campaign, ds.fire_ms, runs, want)
            for kind, want in expected["recipients"][str(size)].items()
        }
    out["footprint"]["audience_total_bytes"] = footprint(conninfo)["audience_total_bytes"]
    out["single_row_ingest"] = _median_of(
        runs, lambda run: single_row_ingest(ds, conninfo, shift_days=30 * (run + 1))
    )
    return out


def _timed_recipients(
    conninfo: str, kind: str, campaign: str, fire_ms: int, runs: int, want: int
) -> dict[str, Any]:
    recipients(conninfo, kind, campaign, fire_ms, warmup=False)  # warm the cache, untimed
    seconds = []
    for _ in range(runs):
        took, count = recipients(conninfo, kind, campaign, fire_ms, warmup=False)
        if count != want:
            raise RuntimeError(f"{kind} on {campaign}: {count} recipients, expected {want}")
        seconds.append(took)
    return {"seconds": statistics.median(seconds), "recipients": want, "all_seconds": seconds}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--phones", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=55432)
    parser.add_argument(
        "--type-index", action="store_true", help="also build the general (type, time) index"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    started = time.perf_counter()
    ds = generate(args.phones, args.events, seed=args.seed)
    generated = time.perf_counter() - started
    root = Path(".leadstream/bench-postgres")
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    with PostgresServer(workdir, args.port) as conninfo:
        result = run_all(ds, conninfo, args.runs, type_index=args.type_index)
    result["generate_seconds"] = generated
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        # Other work on the box skews the figures: the 1-minute load before and after.
        "loadavg_1min": [load_before[0], os.getloadavg()[0]],
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
