"""A throwaway PostgreSQL cluster for the baseline: initdb, start, yield a conninfo, remove.

The settings suit the benchmark machine (2 cores, 24 GiB) and keep durability equal to the
product's: ``fsync`` and ``synchronous_commit`` stay on, so a committed batch survives a
crash, as an acknowledged leadstream batch does. ``max_wal_size`` and ``checkpoint_timeout``
are large so that no checkpoint lands inside a 2M-row load; WAL is still written and
flushed at every commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psycopg

__all__ = ["DATABASE", "SETTINGS", "PostgresServer", "find_bindir"]

DATABASE = "bench"
OS_USER = "postgres"

# postgresql.conf lines appended after initdb; see README.md for the reasons.
SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "20",
    "shared_buffers": "'4GB'",
    "effective_cache_size": "'16GB'",
    "work_mem": "'128MB'",
    "maintenance_work_mem": "'1GB'",
    "max_wal_size": "'32GB'",
    "min_wal_size": "'2GB'",
    "checkpoint_timeout": "'30min'",
    "wal_buffers": "'64MB'",
    # Durability parity with the product: on, which are also PostgreSQL's defaults.
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    # All data is in memory after the first run; an SSD-like cost model.
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    # JIT compilation costs more than it saves on these sub-second queries: measured with
    # it on, the 1,000,000-lead lists took 3-11% longer and the 100,000-lead ones no less.
    "jit": "off",
    "max_worker_processes": "4",
    "max_parallel_workers": "2",
    "max_parallel_workers_per_gather": "2",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def find_bindir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``: $PATH, then the newest Debian install."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
    )
    for bindir in reversed(candidates):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
        "/usr/lib/postgresql/*/bin; install them with: apt-get install postgresql"
    )


def _as_server_user(argv: Sequence[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return list(argv)
    if shutil.which("runuser") is None:
        raise RuntimeError("running as root needs runuser(1) to start PostgreSQL as 'postgres'")
    return ["runuser", "-u", OS_USER, "--", *argv]


def _run(argv: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(_as_server_user(argv), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{Path(argv[0]).name} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )


def _chown_tree(path: Path) -> None:
    """Hand ``path`` to the server user when we are root (it must own its data directory)."""
    if os.geteuid() != 0:
        return
    shutil.chown(path, OS_USER, OS_USER)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(Path(root, name), OS_USER, OS_USER)


def _log_tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return "(no server log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


class PostgresServer:
    """A fresh cluster in ``workdir`` on 127.0.0.1:``port``; ``with`` gives the bench conninfo.

    On exit the server is stopped (fast mode) and ``workdir`` is removed.
    """

    def __init__(self, workdir: Path, port: int) -> None:
        self.bindir = find_bindir()
        self.workdir = workdir.resolve()
        self.port = port
        self.data = self.workdir / "data"
        self.log = self.workdir / "server.log"
        self.conninfo = f"host=127.0.0.1 port={port} dbname={DATABASE} user={OS_USER}"
        self._started = False

    def __enter__(self) -> str:
        if self.data.exists():
            raise RuntimeError(f"{self.data} already exists; give a fresh workdir")
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException as exc:
            self._cleanup()
            if isinstance(exc, RuntimeError):
                raise RuntimeError(f"{exc}\n--- server log ---\n{_log_tail(self.log)}") from None
            raise
        return self.conninfo

    def __exit__(self, *exc_info: object) -> None:
        self._cleanup()

    def _start(self) -> None:
        _chown_tree(self.workdir)
        _run(
            [
                str(self.bindir / "initdb"),
                f"--pgdata={self.data}",
                f"--username={OS_USER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=self.workdir,
        )
        _write_settings(self.data / "postgresql.conf", self.port, self.workdir)
        self._started = True
        _run(self._pg_ctl(f"--log={self.log}", "-w", "-t", "120", "start"), self.workdir)
        admin = f"host=127.0.0.1 port={self.port} dbname=postgres user={OS_USER}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")

    def _pg_ctl(self, *args: str) -> list[str]:
        return [str(self.bindir / "pg_ctl"), f"--pgdata={self.data}", *args]

    def _cleanup(self) -> None:
        try:
            if self._started and (self.data / "postmaster.pid").exists():
                _run(self._pg_ctl("-m", "fast", "-w", "-t", "120", "stop"), self.workdir)
        finally:
            self._started = False
            shutil.rmtree(self.workdir, ignore_errors=True)


def _write_settings(conf: Path, port: int, workdir: Path) -> None:
    """Append the benchmark settings; the socket lives in workdir, not /var/run/postgresql."""
    lines = [f"{key} = {value}" for key, value in SETTINGS.items()]
    lines += [f"port = {port}", f"unix_socket_directories = '{workdir}'"]
    with conf.open("a") as out:
        out.write("\n# leadstream bench baseline\n" + "\n".join(lines) + "\n")
