"""Running ``leadstream worker`` as a user does, in a subprocess, for tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def _copy(source: Any, log: Any) -> None:
    with source, log:
        for line in source:
            log.write(line)
            log.flush()


# Ports a test server listens on are drawn below the kernel's ephemeral range: a port
# picked there (bind to 0) is free when picked, but any outgoing connection of the run's
# other processes (three test processes, brokers, workers) may take it before the server
# binds it; below the range, only another listener could.
_FIRST_PORT = 15_000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    return free_broker_port(1)


def free_broker_port(ports: int = 2) -> int:
    """A free port whose ``ports - 1`` successors are free too (a local broker takes port +
    1 for its controller, and a cluster three ports per node), below the ephemeral range."""
    last = max(_FIRST_PORT + 1_000, _ephemeral_start()) - ports
    while True:
        port = random.randint(_FIRST_PORT, last)
        try:
            with contextlib.ExitStack() as held:
                for candidate in range(port, port + ports):
                    held.enter_context(socket.create_server(("127.0.0.1", candidate)))
            return port
        except OSError:
            continue


@dataclass
class WorkerProcess:
    """One worker process with its own environment (app id, topic prefix, data dir)."""

    env: dict[str, str]
    log_path: Path
    # The key of an organization, for reading its leads (Stack.api_key).
    api_key: Callable[[Any], str] | None = None
    port: int = field(default_factory=free_port)
    # Its output through a pipe that the test copies to the log file, rather than the file
    # itself: a worker under a file-size limit (tests/integration/test_disk_faults.py)
    # could not write its log otherwise.
    log_through_pipe: bool = False
    proc: subprocess.Popen[bytes] | None = None
    _http: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True, timeout: float = 120.0) -> WorkerProcess:
        env = {**os.environ, **self.env, "LEADSTREAM_WEB_PORT": str(self.port)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "leadstream.cli", "worker"],
            env=env,
            stdout=subprocess.PIPE if self.log_through_pipe else log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.log_through_pipe:
            threading.Thread(target=_copy, args=(self.proc.stdout, log), daemon=True).start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready after {timeout} s:\n{self.tail()}")

    def lead(self, org: Any, phone: str) -> dict[str, Any]:
        # One kept-alive client: a new one per call costs ~20 ms (its SSL context), which
        # made a 5,000-lead check take two minutes.
        if self._http is None:
            self._http = httpx.Client(timeout=10)
        assert self.api_key is not None, "reading a lead needs a key of its organization"
        for _ in range(20):
            resp = self._http.get(
                f"{self.url}/api/v1/leads/{org}/{phone}",
                headers={"Authorization": f"Bearer {self.api_key(org)}"},
            )
            if resp.status_code != 429:  # a check reading thousands of leads at full speed
                break
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        resp.raise_for_status()
        return dict(resp.json())

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush, no commit."""
        assert self.proc is not None
        self._close_http()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        self._close_http()
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
