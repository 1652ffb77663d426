"""A store whose disk refuses writes: the RocksDB adapter reports the fault and raises
StoreError, never anything a caller could take for a bad message, and refuses every call
after it.

The file-size limit (RLIMIT_FSIZE, what a full or capped disk looks like to RocksDB: EFBIG
on the write-ahead log) is set in a child process, so that the test session's own files
are not limited; the store is a real rocksdict DB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, resource, sys
from tests.support.changelog import FakeTable, RdictPerPartition
from leadstream.state.port import StoreError
from leadstream.state.rocksdb import TableStore

faults = []
table = FakeTable(RdictPerPartition(__import__("pathlib").Path(sys.argv[1])))
store = TableStore(table, on_fault=faults.append)
store.put(0, b"before", b"1")
logged = len(table.changelog)
pinned = store.reader(0)  # a reader taken before (an index read on another thread)
resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
outcomes = {}
for name, write in [
    ("put", lambda: store.put(0, b"after", b"2")),
    ("delete", lambda: store.delete(0, b"before")),
    ("put_batch", lambda: store.put_batch(0, [(b"e1", b"v"), (b"e2", b"v")], created_ms=1)),
    ("put_memberships", lambda: store.put_memberships(0, [(b"m1", b"v"), (b"m2", None)], group=1)),
]:
    try:
        write()
        outcomes[name] = "written"
    except StoreError as exc:
        outcomes[name] = "StoreError: " + str(exc)
    except BaseException as exc:
        outcomes[name] = "other: " + type(exc).__name__
try:
    store.get(0, b"before")
    outcomes["get"] = "read"
except StoreError as exc:
    outcomes["get"] = "StoreError: " + str(exc)
for name, read in [
    ("reader.get", lambda: pinned.get(0, b"before")),
    ("reader.get_many", lambda: pinned.get_many(0, [b"before"])),
    ("reader.iter_range", lambda: list(pinned.iter_range(0, b"a", b"z"))),
]:
    try:
        read()
        outcomes[name] = "read"
    except StoreError as exc:
        outcomes[name] = "StoreError: " + str(exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(json.dumps({
    "outcomes": outcomes,
    "faults": faults,
    "changelog_after_fault": len(table.changelog) - logged,
    "read": TableStore(table).get(0, b"before").decode(),  # as after a restart
}))
"""


def test_a_write_the_disk_refuses_is_a_store_error_reported_and_never_logged(
    tmp_path: Path,
) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    first, *later = result["outcomes"].items()
    assert first[1].startswith("StoreError: the state store failed to write:"), first
    assert "File too large" in first[1]
    # From the first fault on, every call raises at once (reads too): nothing can carry
    # on past a write that was lost, even a caller that swallowed the first error.
    for name, outcome in later:
        assert outcome.startswith("StoreError: the state store failed earlier:"), (name, outcome)
    assert result["faults"] == [first[1].removeprefix("StoreError: ")]
    # Nothing the DB refused reached the changelog, and what was there is still there.
    assert result["changelog_after_fault"] == 0
    assert result["read"] == "1"
