"""The benchmark: every scenario against leadstream and against the PostgreSQL baseline,
in one run, on one machine, on the same seeded data.

Run from the repository root (after ``pip install -e '.[bench]'``)::

    python -m bench [--runs 3] [--phones 1000000 --events 2000000] [--big-phones 5000000]
                    [--out FILE]

It starts what it needs itself: a local Kafka broker (unless ``LEADSTREAM_KAFKA_BOOTSTRAP``
is set), leadstream worker processes, and a PostgreSQL server from Debian's packages on
loopback. Figures are medians of ``--runs``; JSON goes to ``bench/results/`` and the
table (scenario, leadstream, PostgreSQL, ratio, target, met?) is printed at the end.
The PostgreSQL part runs first, alone; then leadstream's, alone; last, on a dataset of
its own, leadstream with ``--big-phones`` leads (``--big-phones 0`` skips it).
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

from bench import failover, product
from bench.common import broker, machine
from bench.dataset import MINUTE_MS, generate, stats

__all__ = ["main", "table"]

AUDIENCES = (1_000_000, 100_000)
# The big scenario's events per phone: the default dataset's proportion.
BIG_EVENTS_PER_PHONE = 2
# Send (and preview) targets by audience size and how the send is asked for: the text,
# seconds at most, and whether it must also be at least as fast as PostgreSQL's query.
SEND_TARGETS: dict[tuple[str, str], tuple[str, float, bool]] = {
    ("1000000", "trigger at the moment"): ("<= 0.5 s, ratio >= 1", 0.5, True),
    ("1000000", "trigger early"): ("<= 0.15 s", 0.15, False),
    ("1000000", "preview"): ("<= 0.1 s", 0.1, False),
    ("100000", "trigger at the moment"): ("<= 0.1 s", 0.1, False),
    ("100000", "trigger early"): ("<= 0.1 s", 0.1, False),
    ("100000", "preview"): ("<= 0.1 s", 0.1, False),
}


def _fire_ms() -> int:
    """A dataset's fire time: 30 minutes ahead, on the minute. Ahead, so that the early
    triggers arrive before their moment, not late."""
    return (time.time_ns() // 1_000_000 // MINUTE_MS + 30) * MINUTE_MS


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
        out["audiences"] = product.load_audiences(worker, ds.phones, sizes)
        print("leadstream: materialize", flush=True)
        wanted = {str(s): expected["recipients"][str(s)] for s in sizes}
        out["materialize"] = product.materialize(worker, ds.fire_ms, wanted, args.runs)
        print("leadstream: preview", flush=True)
        out["preview"] = product.preview(worker, ds.fire_ms, wanted, args.runs)
        print("leadstream: compliance controls", flush=True)
        out["compliance"] = product.compliance_sends(worker, ds, max(sizes), args.runs)
        print("leadstream: audience conditions", flush=True)
        out["conditions"] = product.conditions_sends(worker, ds, max(sizes), args.runs)
        print("leadstream: materialize, triggers early", flush=True)
        out["materialize_early"], worker = product.materialize_early(
            worker, workdir, ds, wanted, args.runs
        )
        print("leadstream: footprint and rebuild", flush=True)
        small = min(sizes)
        check = (small, "sticky_exclude", wanted[str(small)]["sticky_exclude"])
        out["footprint"], worker = product.footprint_and_rebuild(worker, workdir, ds, check)
        print("leadstream: restart after SIGKILL", flush=True)
        out["restart"], worker = product.restart_after_kill(
            worker, workdir, ds.phones[0], args.runs
        )
        print("leadstream: failover to a standby", flush=True)
        size = max(sizes)
        want = wanted[str(size)]["sticky_exclude"]
        out["failover"], worker = failover.failover(worker, workdir, size, want, args.runs)
        print("leadstream: rolling restart", flush=True)
        small = min(sizes)
        out["rolling"], worker = failover.rolling_restart(
            worker, workdir, small, wanted[str(small)]["sticky_exclude"]
        )
        # Last: its campaigns add 1,000,000 memberships each to the state measured above.
        print("leadstream: audience upload", flush=True)
        out["audience_upload"] = product.audience_upload(worker, ds.phones, args.runs)
    finally:
        worker.stop()
    print("leadstream: real-time ingest", flush=True)
    out["realtime_ingest"] = product.realtime_ingest(
        bootstrap, workdir, ds, args.realtime, args.runs
    )
    return out


def _big(bootstrap: str, workdir: Path, args: Any) -> dict[str, Any]:
    """``--big-phones`` leads and twice as many events (the generator of the main dataset,
    its proportions) into a fresh worker, alone on the machine; one audience of every lead,
    then its sends and previews (how the cost per lead holds as the audience grows), a
    SIGKILL restart, and last a failover to a second worker's standby copies.

    The dataset's events and messages are dropped once they are in Kafka, and its phones
    once the audience is: this process holds little while the worker is measured."""
    phones = args.big_phones
    print(f"leadstream, {phones:,} leads: dataset", flush=True)
    ds = generate(phones, BIG_EVENTS_PER_PHONE * phones, seed=args.seed, fire_ms=_fire_ms())
    out: dict[str, Any] = {
        "phones": phones,
        "events": len(ds.events),
        "distinct_events": ds.distinct_events,
        "expected_recipients": stats(ds)["recipients"][str(phones)],
    }
    batches = product.event_batches(ds)
    lead_phones, fire_ms = ds.phones, ds.fire_ms
    first_phone = lead_phones[0]
    del ds
    print(f"leadstream, {phones:,} leads: bulk ingest", flush=True)
    seconds, worker = product.load_fresh(
        bootstrap, workdir, batches, out["events"], out["distinct_events"]
    )
    del batches
    out["ingest"] = {"seconds": seconds, "events_per_s": out["events"] / seconds}
    print(f"  bulk ingest: {seconds:.1f} s", flush=True)
    try:
        print(f"leadstream, {phones:,} leads: audience", flush=True)
        out["audience"] = product.load_audiences(worker, lead_phones, [phones])
        del lead_phones
        print(f"leadstream, {phones:,} leads: sends and previews", flush=True)
        out |= product.big_sends(worker, phones, fire_ms, out["expected_recipients"], args.runs)
        print(f"leadstream, {phones:,} leads: restart after SIGKILL", flush=True)
        out["restart"], worker = product.restart_after_kill(worker, workdir, first_phone, args.runs)
        out["rss_after_restart_bytes"] = worker.rss_bytes()
        # Last: the survivor holds a copy of the state, not the loaded worker's files.
        print(f"leadstream, {phones:,} leads: failover to a standby", flush=True)
        want = out["expected_recipients"]["sticky_exclude"]
        settle = failover.STANDBY_SETTLE_S * max(1.0, phones / 1_000_000)
        out["failover"], worker = failover.failover(
            worker, workdir, phones, want, runs=1, settle_s=settle
        )
    finally:
        worker.stop()
    return out


def _alone(
    name: str, mine: float, unit: str, target: str = "-", met: bool = True
) -> dict[str, Any]:
    """A row with no PostgreSQL figure (and, by default, no target)."""
    return _row(name, mine, None, unit, None, target, met)


def _row(
    name: str,
    mine: float,
    theirs: float | None,
    unit: str,
    ratio: float | None,
    target: str,
    met: bool,
) -> dict[str, Any]:
    return {
        "scenario": name,
        "leadstream": round(mine, 3),
        "postgres": None if theirs is None else round(theirs, 3),
        "unit": unit,
        "ratio": None if ratio is None else round(ratio, 2),
        "target": target,
        "met": met,
    }


def _send_rows(ls: dict[str, Any], pg: dict[str, Any]) -> list[dict[str, Any]]:
    """The trigger early (the scheduler's normal case), then at or after its moment (as a
    late trigger), then previews of the same sends. The PostgreSQL column is always its
    query for the same send: the same recipients, so the same count."""
    # Before 2026-11-30 evening, the early sends were the prepared ones.
    sections = [
        ("trigger early", ls.get("materialize_early") or ls["materialize_prepared"]),
        ("trigger at the moment", ls["materialize"]),
    ]
    if "preview" in ls:  # absent from runs before 2026-11-30 evening
        sections.append(("preview", ls["preview"]))
    rows = []
    for label, results in sections:
        for size, kinds in results.items():
            if not isinstance(kinds, dict):
                continue  # the run's parameters
            for kind, m in kinds.items():
                mine, theirs = m["seconds"], pg["recipients"][size][kind]["seconds"]
                target, at_most, beat = SEND_TARGETS.get((size, label), ("-", 0.0, False))
                met = target == "-" or (mine <= at_most and (not beat or mine <= theirs))
                what = "preview" if label == "preview" else "materialize"
                suffix = "" if label == "preview" else f", {label}"
                rows.append(
                    _row(
                        f"{what} {int(size):,} leads, {kind}{suffix}",
                        mine,
                        theirs,
                        "s",
                        theirs / mine,
                        target,
                        met,
                    )
                )
    return rows


def _builds(counts: list[int]) -> str:
    """Index builds per run, as a row's name shows them: one number when the runs agree."""
    return str(counts[0]) if len(set(counts)) == 1 else "/".join(map(str, counts))


def _state_rows(ls: dict[str, Any], pg: dict[str, Any]) -> list[dict[str, Any]]:
    """Footprint, rebuild and restart: what the worker holds and how soon it is back."""
    fp, pg_fp = ls["footprint"], pg["footprint"]
    pg_bytes = pg_fp["total_bytes"] + pg_fp.get("audience_total_bytes", 0)
    rows = [
        _row(
            "state on disk (events + audiences)",
            fp["data_dir_bytes"] / 2**20,
            pg_bytes / 2**20,
            "MiB",
            pg_bytes / fp["data_dir_bytes"],
            "-",
            True,
        ),
        _alone("worker RSS, loaded", fp["rss_bytes"] / 2**20, "MiB"),
        _alone(
            "rebuild state from changelog (data dir deleted)",
            fp["rebuild_seconds"],
            "s",
            "<= 20 s",
            fp["rebuild_seconds"] <= 20,
        ),
    ]
    if "index_build" in fp:  # absent from runs before 2026-11-30 evening
        build = fp["index_build"]
        rows.append(
            _alone(
                f"rebuild: index build, sum of {build['builds']} partition builds",
                build["seconds"],
                "s",
            )
        )
    if "empty_start" in ls:  # absent from runs before 2026-12-07 evening
        empty = ls["empty_start"]
        rows += [
            _alone("an empty worker: ready with every partition", empty["ready_seconds"], "s"),
            _alone(
                "an empty worker: ready, after it joined the group",
                empty["ready_after_join_seconds"],
                "s",
                "<= 3 s",
                empty["ready_after_join_seconds"] <= 3,
            ),
        ]
    if "restart" not in ls:  # absent from runs before 2026-11-30
        return rows
    restart = ls["restart"]
    rows += [
        _alone(
            "SIGKILL, restart on the same data dir: ready with every partition",
            restart["ready_seconds"],
            "s",
            "<= 10 s",
            restart["ready_seconds"] <= 10,
        ),
        _alone(
            "SIGKILL, restart: a lead read back",
            restart["serving_seconds"],
            "s",
            "<= 10 s",
            restart["serving_seconds"] <= 10,
        ),
    ]
    if "index_build_seconds" in restart:  # absent from runs before 2026-11-30 evening
        counts = [b["builds"] for b in restart["runs"]["index_build"]]
        rows.append(
            _alone(
                f"SIGKILL, restart: index build, sum of {_builds(counts)} partition builds",
                restart["index_build_seconds"],
                "s",
            )
        )
    return rows


def _audience_rows(ls: dict[str, Any]) -> list[dict[str, Any]]:
    """Audience sync: through the topic (50,000-member batch messages), and as HTTP uploads.
    Runs before 2026-12 waited for the group's commits, not for the members applied."""
    rows = []
    topic = ls.get("audiences", {})
    if "members_per_s" in topic:
        rows.append(
            _alone(
                f"audience sync through the topic ({topic['members']:,} members)",
                topic["members_per_s"],
                "members/s",
                ">= 100,000/s",
                topic["members_per_s"] >= 100_000,
            )
        )
    upload = ls.get("audience_upload")
    if upload is None:
        return rows
    n = f"{upload['members']:,}"
    return rows + [
        _alone(
            f"HTTP upload of {n} members (CSV): answered",
            upload["answer_seconds"],
            "s",
            "<= 10 s",
            upload["answer_seconds"] <= 10,
        ),
        _alone(
            f"HTTP upload of {n} members: every member applied",
            upload["applied_seconds"],
            "s",
        ),
        _alone(
            f"HTTP re-upload of the same {n} members (nothing changes): answered",
            upload["reupload_answer_seconds"],
            "s",
        ),
    ]


def _failover_rows(ls: dict[str, Any]) -> list[dict[str, Any]]:
    """Two workers: one SIGKILLed for good, and a rolling restart (bench/failover.py)."""
    rows = []
    if "failover" in ls:
        f = ls["failover"]
        session = f"session timeout {f['session_timeout_seconds']:g} s"
        bound = f["session_timeout_seconds"] + 2
        rows += [
            _alone(
                f"failover, SIGKILL one of two workers: every partition served ({session})",
                f["seconds"],
                "s",
                f"<= {bound:g} s",
                f["seconds"] <= bound,
            ),
            _alone(
                f"failover: summary of a {f['recipients']:,}-recipient send due 2 s after the kill",
                f["summary_seconds"],
                "s after the kill",
                "once",
                True,
            ),
        ]
    if "rolling" in ls:
        r = ls["rolling"]
        rows += [
            _alone(
                "rolling restart (SIGTERM one of two workers at a time): longest restart",
                max(r["restart_seconds"]),
                "s",
            ),
            _alone(
                f"rolling restart: {r['sends']} sends during it, late or doubled",
                r["late"] + r["doubled"],
                "sends",
                "0",
                r["late"] + r["doubled"] == 0,
            ),
            _alone(
                "rolling restart: longest trigger to summary",
                r["max_trigger_to_summary_seconds"],
                "s",
            ),
        ]
    return rows


def _big_rows(big: dict[str, Any]) -> list[dict[str, Any]]:
    """The big scenario: ingest, sends (also per 1,000,000 leads, to set beside the 1,000,000-
    lead rows), previews, memory and disk. No baseline and no targets: it shows the cost
    per lead as the audience grows."""
    n = big["phones"]
    per_million = 1_000_000 / n
    rows = [
        _alone(
            f"{n:,} leads: bulk ingest ({big['events']:,} events)",
            big["ingest"]["events_per_s"],
            "events/s",
        )
    ]
    for kind, m in big["materialize"].items():
        name = f"{n:,} leads: materialize, {kind}, trigger at the moment"
        rows.append(_alone(name, m["seconds"], "s"))
        rows.append(
            _alone(
                f"{name}, per 1,000,000 leads",
                m["seconds"] * per_million,
                "s",
            )
        )
    for kind, m in big["preview"].items():
        rows.append(_alone(f"{n:,} leads: preview, {kind}", m["seconds"], "s"))
    for name, key in (
        ("worker RSS, loaded", "rss_loaded_bytes"),
        ("worker RSS, after the sends", "rss_after_sends_bytes"),
        ("worker RSS, after a restart", "rss_after_restart_bytes"),
        ("worker data dir, after the sends", "data_dir_bytes"),
    ):
        if key in big:  # the restart: absent from runs before 2026-12-07
            rows.append(_alone(f"{n:,} leads: {name}", big[key] / 2**20, "MiB"))
    if "restart" in big:
        ready = big["restart"]["ready_seconds"]
        rows.append(
            _alone(
                f"{n:,} leads: SIGKILL, restart on the same data dir: ready with every partition",
                ready,
                "s",
                "<= 5 s",
                ready <= 5,
            )
        )
    if "failover" in big:  # absent from runs before 2026-12-07 evening
        f = big["failover"]
        bound = f["session_timeout_seconds"] + 2
        rows.append(
            _alone(
                f"{n:,} leads: failover, SIGKILL one of two workers: every partition served "
                f"(session timeout {f['session_timeout_seconds']:g} s)",
                f["seconds"],
                "s",
                f"<= {bound:g} s",
                f["seconds"] <= bound,
            )
        )
    return rows


def table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scenario: leadstream, PostgreSQL, ratio (>1 means leadstream is better),
    target and whether it is met."""
    ls, pg = result["leadstream"], result["postgres"]
    bulk, pg_bulk = ls["bulk_ingest"]["events_per_s"], pg["bulk_ingest"]["events_per_s"]
    rt, pg_rt = ls["realtime_ingest"]["events_per_s"], pg["single_row_ingest"]["events_per_s"]
    single = ls["http"]["single"]
    rate = f"{single['rate_per_s']:.0f}/s"
    rows = [
        _row(
            "bulk ingest (50,000-event messages)",
            bulk,
            pg_bulk,
            "events/s",
            bulk / pg_bulk,
            "ratio >= 1.5",
            bulk >= 1.5 * pg_bulk,
        ),
        _row(
            "real-time ingest (1 event per message)",
            rt,
            pg_rt,
            "events/s",
            rt / pg_rt,
            ">= 100,000/s",
            rt >= 100_000,
        ),
        _alone(
            f"HTTP single-event POST p50 at {rate}",
            single["p50_ms"],
            "ms",
            "<= 5 ms",
            single["p50_ms"] <= 5,
        ),
        _alone(
            f"HTTP single-event POST p99 at {rate}",
            single["p99_ms"],
            "ms",
            "<= 50 ms",
            single["p99_ms"] <= 50,
        ),
    ]
    if "worker_p99_at_most_ms" in single:  # absent from runs before 2026-11-27 evening
        rows.append(
            _alone(
                "HTTP single-event POST p99, worker's own histogram (bucket bound)",
                single["worker_p99_at_most_ms"],
                "ms",
            )
        )
    bulk_post = ls["http"]["bulk_50k"]["p50_s"]
    rows.append(
        _row("HTTP 50,000-event POST p50", bulk_post, None, "s", None, "<= 1 s", bulk_post <= 1.0)
    )
    rows += _audience_rows(ls)
    rows += _send_rows(ls, pg)
    rows += _state_rows(ls, pg)
    rows += _failover_rows(ls)
    if "compliance" in ls:  # absent from runs before 2026-12
        rows += _compliance_rows(ls["compliance"])
    if "conditions" in ls:  # absent from runs before 2026-12-07 evening
        rows += _conditions_rows(ls["conditions"])
    if "big" in ls:  # absent from runs before 2026-11-30 evening, and with --big-phones 0
        rows += _big_rows(ls["big"])
    return rows


def _compliance_rows(c: dict[str, Any]) -> list[dict[str, Any]]:
    """The same sticky-exclude send with and without a frequency cap and quiet hours; the
    one without is this row's baseline, measured in the same scenario. Runs before
    2026-12 triggered them late (the controlled ones then include the 2 s settle)."""
    n = f"{c['size']:,}"
    plain, controlled = c["plain_seconds"], c["controlled_seconds"]
    when = "trigger early" if "controlled_late_seconds" in c else "trigger late"
    rows = [
        _alone(
            f"materialize {n} leads, sticky_exclude, {when} (baseline of the next row)",
            plain,
            "s",
        ),
        _row(
            f"materialize {n} leads, sticky_exclude + frequencyCap 1/24 h + quietHours, {when}",
            controlled,
            None,
            "s",
            round(controlled / plain, 2),
            "<= 1.5x the row above",
            controlled <= 1.5 * plain,
        ),
    ]
    if "controlled_late_seconds" in c:
        rows.append(
            _alone(
                f"the same controlled send, trigger late (waits the 2 s settle) {n} leads",
                c["controlled_late_seconds"],
                "s",
            )
        )
    rows.append(
        _alone(
            f"the first such send (member zones learned) {n} leads",
            c["first_controlled_seconds"],
            "s",
        )
    )
    return rows


def _conditions_rows(c: dict[str, Any]) -> list[dict[str, Any]]:
    """The same send with one event filter and with a 3-level tree of 10 leaves (a
    sequence among them), alternated in the same scenario: the first is the second's
    baseline."""
    n = f"{c['size']:,}"
    plain, tree = c["plain_seconds"], c["tree_seconds"]
    return [
        _alone(f"materialize {n} leads, one event filter (baseline of the next row)", plain, "s"),
        _row(
            f"materialize {n} leads, conditions: 3 levels, 10 leaves, a sequence",
            tree,
            None,
            "s",
            round(tree / plain, 2),
            "<= 1.5x the row above",
            tree <= 1.5 * plain,
        ),
        *(
            [
                _alone(f"preview {n} leads, one event filter", c["preview_plain_seconds"], "s"),
                _row(
                    f"preview {n} leads, the same tree (evaluation only)",
                    c["preview_tree_seconds"],
                    None,
                    "s",
                    round(c["preview_tree_seconds"] / c["preview_plain_seconds"], 2),
                    "<= 1.5x the row above",
                    c["preview_tree_seconds"] <= 1.5 * c["preview_plain_seconds"],
                ),
            ]
            if "preview_tree_seconds" in c
            else []
        ),
        *(
            _alone(
                f"{what}: µs per lead, over the baseline ({c[key]['candidates']:,} leads)",
                round(c[key]["us_per_candidate"], 2),
                "µs",
            )
            for key, what in (
                ("where", "a where leaf (stored events read)"),
                ("sequence_same_key", "a sequence with sameKey (two types read)"),
                ("holdout_splits", "holdout 10% + two splits (a keyed hash per lead)"),
            )
            if key in c
        ),
    ]


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
    parser.add_argument("--rate", type=float, default=500.0, help="single POSTs per second")
    parser.add_argument("--http-seconds", type=float, default=30.0)
    parser.add_argument("--bulk-posts", type=int, default=5)
    parser.add_argument(
        "--big-phones",
        type=int,
        default=5_000_000,
        help=f"leads of the last scenario, with {BIG_EVENTS_PER_PHONE}x as many events (0: skip)",
    )
    parser.add_argument("--pg-port", type=int, default=55432)
    parser.add_argument("--skip-postgres", type=Path, help="reuse the postgres part of this JSON")
    parser.add_argument("--workdir", type=Path, default=Path(".leadstream/bench"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ds = generate(args.phones, args.events, seed=args.seed, fire_ms=_fire_ms())
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
        # Here, not at the top: the table (tests/unit/test_bench_table.py) is read where
        # the bench extra (psycopg) is not installed.
        from bench.baselines.postgres.baseline import run_all
        from bench.baselines.postgres.server import PostgresServer

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
        print("leadstream: an empty worker's start", flush=True)
        result["leadstream"]["empty_start"] = product.empty_start(bootstrap, workdir, args.runs)
        # Last, every other worker stopped: its memory is its own.
        if args.big_phones:
            result["leadstream"]["big"] = _big(bootstrap, workdir, args)
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
