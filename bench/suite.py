"""The benchmark: every scenario against leadstream and against the PostgreSQL baseline,
in one run, on one machine, on the same seeded data.

Run from the repository root (after ``pip install -e '.[bench]'``)::

    python -m bench [--runs 3] [--phones 1000000 --events 2000000] [--out FILE]

It starts what it needs itself: a local Kafka broker (unless ``LEADSTREAM_KAFKA_BOOTSTRAP``
is set), leadstream worker processes, and a PostgreSQL server from Debian's packages on
loopback. Figures are medians of ``--runs``; JSON goes to ``bench/results/`` and the
table (scenario, leadstream, PostgreSQL, ratio, target, met?) is printed at the end.
The PostgreSQL part runs first, alone; then leadstream's, alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import product
from bench.baselines.postgres.baseline import run_all
from bench.baselines.postgres.server import PostgresServer
from bench.common import broker, machine
from bench.dataset import MINUTE_MS, generate, stats

__all__ = ["main", "table"]

AUDIENCES = (1_000_000, 100_000)


def _leadstream(
    bootstrap: str, workdir: Path, ds: Any, expected: dict[str, Any], sizes: list[int], args: Any
) -> dict[str, Any]:
    """The scenarios on the dataset, one after another on the same broker."""
    out: dict[str, Any] = {}
    print("leadstream: bulk ingest", flush=True)
    batches = product.event_batches(ds)
    out["bulk_ingest"], worker = product.bulk_ingest(bootstrap, workdir, ds, batches, args.runs)
    del batches
    try:
        print("leadstream: audiences", flush=True)
        out["audiences"] = product.load_audiences(worker, ds, sizes)
        print("leadstream: materialize", flush=True)
        wanted = {str(s): expected["recipients"][str(s)] for s in sizes}
        out["materialize"] = product.materialize(worker, ds, wanted, args.runs)
        print("leadstream: materialize, triggers early", flush=True)
        out["materialize_prepared"], worker = product.materialize_prepared(
            worker, workdir, ds, wanted, args.runs
        )
        print("leadstream: footprint and rebuild", flush=True)
        small = min(sizes)
        check = (small, "sticky_exclude", wanted[str(small)]["sticky_exclude"])
        out["footprint"], worker = product.footprint_and_rebuild(worker, workdir, ds, check)
        print("leadstream: restart after SIGKILL", flush=True)
        out["restart"], worker = product.restart_after_kill(worker, workdir, ds, args.runs)
    finally:
        worker.stop()
    print("leadstream: real-time ingest", flush=True)
    out["realtime_ingest"] = product.realtime_ingest(
        bootstrap, workdir, ds, args.realtime, args.runs
    )
    return out


def table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scenario: leadstream, PostgreSQL, ratio (>1 means leadstream is better),
    target and whether it is met."""
    ls, pg = result["leadstream"], result["postgres"]
    rows: list[dict[str, Any]] = []

    def row(
        name: str,
        mine: float,
        theirs: float | None,
        unit: str,
        ratio: float | None,
        target: str,
        met: bool,
    ) -> None:
        rows.append(
            {
                "scenario": name,
                "leadstream": round(mine, 3),
                "postgres": None if theirs is None else round(theirs, 3),
                "unit": unit,
                "ratio": None if ratio is None else round(ratio, 2),
                "target": target,
                "met": met,
            }
        )

    bulk, pg_bulk = ls["bulk_ingest"]["events_per_s"], pg["bulk_ingest"]["events_per_s"]
    row(
        "bulk ingest (50,000-event messages)",
        bulk,
        pg_bulk,
        "events/s",
        bulk / pg_bulk,
        "ratio >= 1.0",
        bulk >= pg_bulk,
    )
    rt, pg_rt = ls["realtime_ingest"]["events_per_s"], pg["single_row_ingest"]["events_per_s"]
    row(
        "real-time ingest (1 event per message)",
        rt,
        pg_rt,
        "events/s",
        rt / pg_rt,
        "ratio >= 10",
        rt >= 10 * pg_rt,
    )
    single = ls["http"]["single"]
    row(
        f"HTTP single-event POST p50 at {single['rate_per_s']:.0f}/s",
        single["p50_ms"],
        None,
        "ms",
        None,
        "-",
        True,
    )
    row(
        f"HTTP single-event POST p99 at {single['rate_per_s']:.0f}/s",
        single["p99_ms"],
        None,
        "ms",
        None,
        "<= 50 ms",
        single["p99_ms"] <= 50,
    )
    if "worker_p99_at_most_ms" in single:  # absent from runs before 2026-11-27 evening
        row(
            "HTTP single-event POST p99, worker's own histogram (bucket bound)",
            single["worker_p99_at_most_ms"],
            None,
            "ms",
            None,
            "-",
            True,
        )
    bulk_post = ls["http"]["bulk_50k"]["p50_s"]
    row("HTTP 50,000-event POST p50", bulk_post, None, "s", None, "<= 1 s", bulk_post <= 1.0)
    # The trigger early (the scheduler's normal case): from the moment to the summary. Then
    # a trigger that arrives at or after its moment: nothing could be prepared.
    for label, results in (
        ("trigger early", ls["materialize_prepared"]),
        ("trigger at the moment", ls["materialize"]),
    ):
        for size, kinds in results.items():
            if not isinstance(kinds, dict):
                continue  # the run's parameters
            for kind, m in kinds.items():
                theirs = pg["recipients"][size][kind]["seconds"]
                target = "<= 1 s (aim 0.5 s)" if size == "1000000" else "-"
                met = m["seconds"] <= 1.0 if size == "1000000" else m["seconds"] <= theirs
                row(
                    f"materialize {int(size):,} leads, {kind}, {label}",
                    m["seconds"],
                    theirs,
                    "s",
                    theirs / m["seconds"],
                    target,
                    met,
                )
    fp, pg_fp = ls["footprint"], pg["footprint"]
    row(
        "state on disk (events + audiences)",
        fp["data_dir_bytes"] / 2**20,
        pg_fp["total_bytes"] / 2**20 + pg_fp.get("audience_total_bytes", 0) / 2**20,
        "MiB",
        (pg_fp["total_bytes"] + pg_fp.get("audience_total_bytes", 0)) / fp["data_dir_bytes"],
        "-",
        True,
    )
    row("worker RSS, loaded", fp["rss_bytes"] / 2**20, None, "MiB", None, "-", True)
    row(
        "rebuild state from changelog (data dir deleted)",
        fp["rebuild_seconds"],
        None,
        "s",
        None,
        "-",
        True,
    )
    if "restart" in ls:  # absent from runs before 2026-11-30
        restart = ls["restart"]
        row(
            "SIGKILL, restart on the same data dir: ready with every partition",
            restart["ready_seconds"],
            None,
            "s",
            None,
            "<= 10 s",
            restart["ready_seconds"] <= 10,
        )
        row(
            "SIGKILL, restart: a lead read back",
            restart["serving_seconds"],
            None,
            "s",
            None,
            "<= 10 s",
            restart["serving_seconds"] <= 10,
        )
    return rows


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | leadstream | PostgreSQL | unit | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pg = "-" if r["postgres"] is None else _fmt(r["postgres"])
        ratio = "-" if r["ratio"] is None else f"{r['ratio']}"
        met = "-" if r["target"] == "-" else ("yes" if r["met"] else "**no**")
        lines.append(
            f"| {r['scenario']} | {_fmt(r['leadstream'])} | {pg} | {r['unit']} | {ratio} | "
            f"{r['target']} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--phones", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--realtime", type=int, default=100_000, help="single-event messages")
    parser.add_argument("--rate", type=float, default=200.0, help="single POSTs per second")
    parser.add_argument("--http-seconds", type=float, default=30.0)
    parser.add_argument("--bulk-posts", type=int, default=5)
    parser.add_argument("--pg-port", type=int, default=55432)
    parser.add_argument("--skip-postgres", type=Path, help="reuse the postgres part of this JSON")
    parser.add_argument("--workdir", type=Path, default=Path(".leadstream/bench"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # The fire time lies ahead: triggers arrive early and materialize at once, not late.
    fire_ms = (time.time_ns() // 1_000_000 // MINUTE_MS + 30) * MINUTE_MS
    ds = generate(args.phones, args.events, seed=args.seed, fire_ms=fire_ms)
    sizes = sorted({min(s, len(ds.phones)) for s in AUDIENCES}, reverse=True)
    expected = stats(ds, sizes)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "loadavg_1min_start": os.getloadavg()[0]},
        "dataset": {k: v for k, v in expected.items() if k != "recipients"},
        "expected_recipients": expected["recipients"],
        "runs": args.runs,
    }
    if args.skip_postgres:
        result["postgres"] = json.loads(args.skip_postgres.read_text())["postgres"]
    else:
        print("postgres: baseline", flush=True)
        pg_dir = Path(tempfile.mkdtemp(prefix="pg-", dir=args.workdir))
        with PostgresServer(pg_dir, args.pg_port) as conninfo:
            result["postgres"] = run_all(ds, conninfo, args.runs, audience_sizes=sizes)
    with broker() as bootstrap, tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        result["leadstream"] = _leadstream(bootstrap, workdir, ds, expected, sizes, args)
        # HTTP needs no dataset. While this process held ~600 MB of it, the HTTP clients
        # (a process of their own) stalled for up to seconds: client p99 55 ms-11.6 s over
        # six runs, while the worker's own histogram put every answer within 0.5 s. Freed:
        # p99 43 ms. See BENCHMARKS.md.
        del ds, expected
        gc.collect()
        print("leadstream: HTTP", flush=True)
        result["leadstream"]["http"] = product.http_latency(
            bootstrap, workdir, rate=args.rate, seconds=args.http_seconds, bulk=args.bulk_posts
        )
    result["table"] = table(result)
    result["machine"]["loadavg_1min_end"] = os.getloadavg()[0]
    result["total_seconds"] = time.perf_counter() - started
    out = args.out or Path("bench/results") / f"suite-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_markdown(result["table"]))
    print(f"\nJSON: {out}  ({result['total_seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
