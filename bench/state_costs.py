"""``python -m bench.state_costs``: what the lead table's writes cost in one process, on a
real RocksDB, without Kafka: ingest per event (bulk commands of 5,000 events, one-event
commands, and source duplicates), the bytes kept locally and logged to the changelog, and
the time of an erase in a large partition.

The store is the worker's own adapter (:class:`~leadstream.state.rocksdb.TableStore`) over
a stand-in for the faust table: real raw-mode Rdicts, and a changelog that is only
counted (faust's producer is not in these figures; it costs the same before and after a
change to what a record holds, per record). Times are the CPU time of the applying
thread (``time.thread_time``): on a machine shared with other work, wall-clock figures
of the same run varied by 2x.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict

from leadstream.domain.audience import MemberOp
from leadstream.domain.erase import erase_lead
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events
from leadstream.domain.send_state import apply_members
from leadstream.index.partition import OptTypes
from leadstream.index.table import IndexedStore
from leadstream.state.rocksdb import TableStore
from leadstream.wire.records import RECIPIENT_ENTRIES

__all__ = ["main", "measure"]

ORG = "org-1"
DAY = 86_400_000
START = 1_780_000_000_000
COMMAND = 5_000  # events of one bulk command (the router's COMMAND_ROWS)
TYPES = ("page_view", "click", "buy", "opted_out")


class _Partitions:
    """What TableStore reaches through ``table.data``: one raw-mode Rdict per partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, Rdict] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(str(self.root / f"p{partition}"), Options(raw_mode=True))
        return self.dbs[partition]


class _CountingTable:
    """A faust table stand-in whose changelog is counted, not sent."""

    def __init__(self, root: Path) -> None:
        self.data = _Partitions(root)
        self.records = 0
        self.bytes = 0

    def send_changelog(self, partition: int, key: bytes, value: bytes | None, **_: Any) -> None:
        self.records += 1
        self.bytes += len(key) + len(value or b"")


def _phone(i: int) -> str:
    return f"+1212{i:07d}"


def _events(leads: int, per_lead: int, rng: random.Random) -> list[LeadEvent]:
    """``per_lead`` events for each lead, spread over 30 days, in random order (a bulk
    export mixes leads), a third with metadata."""
    out = []
    for lead in range(leads):
        for j in range(per_lead):
            meta = b'{"plan":"p%d"}' % (j % 3) if j % 3 == 0 else None
            at = START - rng.randrange(30 * DAY)
            out.append(LeadEvent(ORG, _phone(lead), TYPES[j % len(TYPES)], at, meta))
    rng.shuffle(out)
    return out


def _disk(db: Rdict, root: Path) -> tuple[int, int]:
    """(logical bytes of every key and value, bytes of the DB's files once flushed and
    compacted)."""
    logical = sum(len(k) + len(v) for k, v in db.items())
    db.flush()
    db.compact_range(None, None)
    files = sum(f.stat().st_size for f in root.rglob("*.sst"))
    return logical, files


def measure(leads: int, per_lead: int, realtime: int, erases: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="state-costs-"))
    try:
        table = _CountingTable(root)
        store = IndexedStore(
            TableStore(table), OptTypes("opted_out", "opted_in"), RECIPIENT_ENTRIES
        )
        result: dict[str, Any] = {"leads": leads, "events": leads * per_lead}
        # Every lead is a member (an externalId for half), so erases rewrite both kinds.
        ops = [MemberOp(ORG, "c1", _phone(i), f"crm-{i}" if i % 2 else None) for i in range(leads)]
        started = time.thread_time()
        for i in range(0, len(ops), COMMAND):
            apply_members(store, 0, ops[i : i + COMMAND], group=START + i)
        result["members_us_each"] = (time.thread_time() - started) / len(ops) * 1e6
        events = _events(leads, per_lead, rng)
        commands = [events[i : i + COMMAND] for i in range(0, len(events), COMMAND)]
        records_before = table.records
        started = time.thread_time()
        for n, command in enumerate(commands):
            apply_events(store, 0, command, horizon_ms=0, now_ms=START + n)
        result["bulk_us_per_event"] = (time.thread_time() - started) / len(events) * 1e6
        result["bulk_changelog_records"] = table.records - records_before
        # Source duplicates: a tenth of the events sent again, in later commands.
        again = rng.sample(events, len(events) // 10)
        dup_commands = [again[i : i + COMMAND] for i in range(0, len(again), COMMAND)]
        logged = table.bytes
        started = time.thread_time()
        for n, command in enumerate(dup_commands):
            apply_events(store, 0, command, horizon_ms=0, now_ms=START + DAY + n)
        result["duplicates_us_per_event"] = (time.thread_time() - started) / len(again) * 1e6
        result["duplicates_changelog_bytes"] = table.bytes - logged
        # Real-time: one event per command, new events of existing leads, and every event
        # of a few new leads.
        singles = [
            LeadEvent(ORG, _phone(rng.randrange(leads)), "click", START + DAY + i)
            for i in range(realtime)
        ]
        fresh = range(leads, leads + erases)
        for i, lead in enumerate(fresh):
            for j in range(per_lead):
                at = START + DAY + rng.randrange(realtime)
                singles.insert(
                    rng.randrange(len(singles)), LeadEvent(ORG, _phone(lead), "buy", at + i + j)
                )
        started = time.thread_time()
        for n, ev in enumerate(singles):
            apply_events(store, 0, [ev], horizon_ms=0, now_ms=START + 2 * DAY + n)
        result["realtime_us_per_event"] = (time.thread_time() - started) / len(singles) * 1e6
        held = len(events) + len(singles)
        result["changelog_bytes_per_event"] = table.bytes / held
        logical, files = _disk(table.data._db_for_partition(0), root)  # noqa: SLF001
        result["local_bytes_per_event_logical"] = logical / held
        result["local_bytes_per_event_sst"] = files / held
        store.index(0)
        # The first erase of a partition also looks once for batches logged before groups
        # existed (one scan of the batch keys) and lists the partition's lead ids.
        started = time.thread_time()
        erase_lead(store, 0, ORG, "+19999999999", now_ms=START + 3 * DAY)
        result["erase_first_ms"] = (time.thread_time() - started) * 1000
        for name, victims in (
            ("bulk", rng.sample(range(leads), erases)),  # events in 5,000-event commands
            ("realtime", list(fresh)),  # events one per command
        ):
            times = []
            for victim in victims:
                started = time.thread_time()
                erase_lead(store, 0, ORG, _phone(victim), now_ms=START + 3 * DAY)
                times.append(time.thread_time() - started)
            result[f"erase_{name}_ms_median"] = statistics.median(times) * 1000
            result[f"erase_{name}_ms_max"] = max(times) * 1000
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--per-lead", type=int, default=10)
    parser.add_argument("--realtime", type=int, default=20_000)
    parser.add_argument("--erases", type=int, default=20)
    args = parser.parse_args(argv)
    got = measure(args.leads, args.per_lead, args.realtime, args.erases)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in got.items()}))


if __name__ == "__main__":
    main()
