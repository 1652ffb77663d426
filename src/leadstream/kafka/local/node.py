"""Run a real single-node Apache Kafka broker (KRaft mode) for development and tests.

The broker jars come from Maven Central through ``mvn`` (driven by
``deploy/kafka/pom.xml``, which pins the Kafka release) and are cached per
version, so the only host requirements are Java 17+ and Maven. No Docker, no
download from anywhere but Maven Central.

Typical use::

    kafka = LocalKafka(Path(".kafka"), bootstrap="localhost:9092")
    kafka.start()      # idempotent; returns once clients can produce
    ...
    kafka.stop()       # idempotent

The broker is a detached process: it keeps running after the Python process
that started it exits, and any later ``LocalKafka`` with the same ``home``
finds it again through the pid file.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LocalKafka", "KafkaStatus", "KAFKA_VERSION", "LocalKafkaError"]

logger = logging.getLogger(__name__)


class LocalKafkaError(RuntimeError):
    """Raised when the local broker cannot be fetched, formatted, started or stopped."""


_POM_NS = "{http://maven.apache.org/POM/4.0.0}"

# Logged by KafkaRaftServer once the broker is unfenced and its listeners accept
# requests (same text in 3.x and 4.x), i.e. the point where producing works.
_READY_MARKER = b"Kafka Server started"

_BROKER_MAIN = "kafka.Kafka"
_STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
_NODE_ID = 1
_LOG_TAIL_LINES = 40

# Sized for a 2-core / 24 GiB dev or CI machine: a 1 GiB cap is plenty for a
# test broker, and a small initial heap keeps the resident size low when idle.
# G1 settings mirror what kafka-server-start.sh uses.
_BROKER_JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# The storage tool is a one-shot CLI: optimise for JVM start-up, not throughput.
_TOOL_JVM_OPTS: tuple[str, ...] = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)


def _find_deploy_dir() -> Path:
    """Locate ``deploy/kafka``: the source checkout first, then the wheel's package data."""
    here = Path(__file__).resolve()
    candidates = (
        here.parents[3] / "deploy" / "kafka",  # src/leadstream/kafka/local.py in a checkout
        here.parents[1] / "_deploy" / "kafka",  # leadstream/_deploy/kafka in a wheel
    )
    for candidate in candidates:
        if (candidate / "pom.xml").is_file():
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise LocalKafkaError(f"deploy/kafka/pom.xml not found (looked in: {searched})")


def _read_kafka_version(pom: Path) -> str:
    """Return the ``kafka.version`` property of a Maven pom."""
    try:
        root = ET.parse(pom).getroot()  # noqa: S314 - our own packaged pom, not untrusted input
    except (OSError, ET.ParseError) as exc:
        raise LocalKafkaError(f"cannot read Kafka version from {pom}: {exc}") from exc
    # Accept poms with or without the Maven namespace.
    for tag in (f"{_POM_NS}properties/{_POM_NS}kafka.version", "properties/kafka.version"):
        node = root.find(tag)
        if node is not None and node.text and node.text.strip():
            return node.text.strip()
    raise LocalKafkaError(f"{pom} has no <properties><kafka.version> entry")


_DEPLOY_DIR = _find_deploy_dir()
KAFKA_VERSION: str = _read_kafka_version(_DEPLOY_DIR / "pom.xml")
"""The Apache Kafka release pinned in ``deploy/kafka/pom.xml``."""


def _parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[addr]:port``) and validate the port range."""
    host, sep, port_text = bootstrap.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"bootstrap must look like 'host:port', got {bootstrap!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    # The controller listener takes port + 1, so that must be valid too.
    if not 0 < port < 65535:
        raise ValueError(f"bootstrap port must be in 1..65534, got {port}")
    return host, port


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _new_cluster_id() -> str:
    """Return a random cluster id in Kafka's ``Uuid`` text form (22 url-safe base64 chars)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # Kafka's own generator rejects ids starting with '-' because CLI
        # parsers would take them for options.
        if not text.startswith("-"):
            return text


def _server_properties(host: str, port: int, data_dir: Path) -> dict[str, str]:
    """Broker settings for a combined broker+controller node tuned for single-node tests."""
    controller = f"{_format_host(host)}:{port + 1}"
    client = f"{_format_host(host)}:{port}"
    return {
        "process.roles": "broker,controller",
        "node.id": str(_NODE_ID),
        # A static voter set rather than the dynamic quorum (--standalone):
        # it is valid for 3.9 and 4.x alike and keeps working if the port of
        # an existing home changes, since voters are read from this file.
        "controller.quorum.voters": f"{_NODE_ID}@{controller}",
        "listeners": f"PLAINTEXT://{client},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{client}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "8",
        "default.replication.factor": "1",
        "auto.create.topics.enable": "true",
        "min.insync.replicas": "1",
        # Internal topics default to RF 3; a single node needs 1 or group
        # coordination and transactions never become available.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer internal partitions than the defaults (50) make the first
        # consumer group / transactional producer come up noticeably faster.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        # Tests join groups constantly; the default 3 s delay is pure waiting.
        "group.initial.rebalance.delay.ms": "0",
    }


def _escape_property(value: str) -> str:
    # java.util.Properties treats backslash as an escape character.
    return value.replace("\\", "\\\\")


def _render_properties(props: Mapping[str, str]) -> str:
    """Render a mapping as a Java ``.properties`` file."""
    lines = ["# Generated by leadstream.kafka.local on every start; edits are overwritten."]
    lines += [f"{key}={_escape_property(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _tail_lines(path: Path, count: int = _LOG_TAIL_LINES) -> list[str]:
    """Last ``count`` lines of a text file, or nothing if it does not exist."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=count)]
    except FileNotFoundError:
        return []


def _output_tail(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise LocalKafkaError("java not found: install Java 17+ or set JAVA_HOME")
    return found


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock shared by every process using the same ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class KafkaStatus:
    """Snapshot of a local broker.

    ``running`` means the broker process is alive *and* its client port accepts
    connections; ``pid`` is set whenever the process is alive, even if it is not
    (yet) serving.
    """

    running: bool
    pid: int | None
    bootstrap: str
    log_path: Path
    version: str


class LocalKafka:
    """A single-node KRaft broker (combined broker + controller) living under ``home``.

    Layout of ``home``: ``data/`` (log dirs and KRaft metadata),
    ``logs/server.log`` (broker log), ``logs/console.log`` (JVM stdout/stderr),
    ``server.properties`` (regenerated on each start) and ``kafka.pid``.
    """

    def __init__(
        self,
        home: Path,
        bootstrap: str = "localhost:9092",
        cache_dir: Path | None = None,
    ) -> None:
        """Describe a broker; nothing is started or downloaded here.

        Args:
            home: Directory holding this broker's data, logs, config and pid file.
            bootstrap: ``host:port`` of the client (PLAINTEXT) listener; the
                controller listener uses ``port + 1`` on the same host.
            cache_dir: Where the Kafka jars are cached, shared between homes;
                defaults to ``~/.cache/leadstream/kafka-<version>``.
        """
        self.home = Path(home).expanduser().absolute()
        self.bootstrap = bootstrap
        self.host, self.port = _parse_bootstrap(bootstrap)
        self.controller_port = self.port + 1
        self.cache_dir = (
            Path(cache_dir).expanduser().absolute()
            if cache_dir is not None
            else Path.home() / ".cache" / "leadstream" / f"kafka-{KAFKA_VERSION}"
        )
        self.data_dir = self.home / "data"
        self.log_dir = self.home / "logs"
        self.log_path = self.log_dir / "server.log"
        self.console_path = self.log_dir / "console.log"
        self.config_path = self.home / "server.properties"
        self.pid_path = self.home / "kafka.pid"
        self._lock_path = self.home / ".localkafka.lock"

    def __repr__(self) -> str:
        return f"LocalKafka(home={str(self.home)!r}, bootstrap={self.bootstrap!r})"

    # -- distribution -----------------------------------------------------

    def ensure_distribution(self) -> Path:
        """Fetch the broker jars with Maven (once per pom content) and return the libs dir.

        The dir is ``cache_dir/libs-<hash of pom.xml>``: changing the pom (the
        Kafka version, the logging backend) gives a new dir instead of
        rewriting one that a running broker still loads classes from. A file
        lock in ``cache_dir`` serialises concurrent callers, and the jars are
        fetched into a staging dir that is renamed into place, so a
        half-finished download is never used.
        """
        pom_bytes = (_DEPLOY_DIR / "pom.xml").read_bytes()
        libs = self.cache_dir / f"libs-{hashlib.sha256(pom_bytes).hexdigest()[:16]}"
        if libs.is_dir():
            return libs
        with _file_lock(self.cache_dir / ".lock"):
            if not libs.is_dir():
                self._fetch(pom_bytes, libs)
        return libs

    def _fetch(self, pom_bytes: bytes, libs: Path) -> None:
        """Run Maven into a staging dir and rename it to ``libs`` (the lock is held)."""
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError("mvn not found: install Maven to fetch the Kafka jars")
        # Leftovers of a fetch that was killed; nobody else stages while we hold the lock.
        for stale in self.cache_dir.glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
        # Run Maven on a copy: the package's own deploy dir may be read-only
        # (site-packages) and Maven must not write next to it.
        pom_copy = self.cache_dir / "pom.xml"
        pom_copy.write_bytes(pom_bytes)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.cache_dir))
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom_copy),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ]
        logger.info("fetching Apache Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
        started = time.monotonic()
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                cmd,
                cwd=self.cache_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise LocalKafkaError(f"mvn timed out fetching Kafka jars: {cmd}") from exc
        broker_jar = staging / f"kafka_2.13-{KAFKA_VERSION}.jar"
        if result.returncode != 0 or not broker_jar.is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise LocalKafkaError(
                f"mvn failed (exit {result.returncode}) fetching Kafka {KAFKA_VERSION}:\n"
                + _output_tail(result)
            )
        staging.rename(libs)
        logger.info("fetched Kafka jars in %.1fs", time.monotonic() - started)

    # -- lifecycle --------------------------------------------------------

    def status(self) -> KafkaStatus:
        """Report whether this home's broker process is alive and serving clients."""
        pid = self._live_pid()
        running = pid is not None and _port_open(self.host, self.port)
        return KafkaStatus(
            running=running,
            pid=pid,
            bootstrap=self.bootstrap,
            log_path=self.log_path,
            version=KAFKA_VERSION,
        )

    def start(self, timeout: float = 120.0) -> KafkaStatus:
        """Start the broker unless it already runs, and wait until clients can produce.

        Idempotent: an already running broker of this ``home`` is returned as is.
        On first use this fetches the jars (not counted in ``timeout``) and
        formats ``home/data``; later starts reuse the existing data.

        Raises:
            LocalKafkaError: if the port is taken by something else, the broker
                exits, or it is not ready within ``timeout`` seconds. The
                message carries the last lines of the broker log.
        """
        with _file_lock(self._lock_path):
            current = self.status()
            if current.running:
                return current
            if current.pid is not None:
                # Our broker is alive but not yet answering, e.g. a start by a
                # process that died before readiness: wait for it instead of
                # spawning a second one on the same data dir.
                self._wait_ready(current.pid, log_offset=None, timeout=timeout)
                return self.status()
            self._refuse_busy_ports()
            libs = self.ensure_distribution()
            java = _find_java()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(
                _render_properties(_server_properties(self.host, self.port, self.data_dir))
            )
            if not (self.data_dir / "meta.properties").is_file():
                self._format_storage(java, libs)

            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            argv = [
                java,
                *_BROKER_JVM_OPTS,
                *self._logging_jvm_opts(),
                "-cp",
                str(libs / "*"),
                _BROKER_MAIN,
                str(self.config_path),
            ]
            started = time.monotonic()
            pid = self._spawn_detached(argv)
            self.pid_path.write_text(f"{pid}\n")
            logger.info("started Kafka %s (pid %d) on %s", KAFKA_VERSION, pid, self.bootstrap)
            try:
                self._wait_ready(pid, log_offset=log_offset, timeout=timeout)
            except BaseException:
                # Never leave a half-started broker behind holding the data dir.
                self._terminate(pid, timeout=15.0)
                self.pid_path.unlink(missing_ok=True)
                raise
            logger.info("Kafka ready on %s after %.1fs", self.bootstrap, time.monotonic() - started)
            return self.status()

    def _refuse_busy_ports(self) -> None:
        for port in (self.port, self.controller_port):
            if _port_open(self.host, port):
                raise LocalKafkaError(
                    f"{self.host}:{port} is already in use by a process that is not "
                    f"the broker of {self.home}"
                )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker: SIGTERM (clean shutdown), SIGKILL after ``timeout``. Idempotent."""
        with _file_lock(self._lock_path):
            pid = self._live_pid()
            if pid is not None:
                logger.info("stopping Kafka (pid %d)", pid)
                self._terminate(pid, timeout=timeout)
            self.pid_path.unlink(missing_ok=True)

    # -- internals --------------------------------------------------------

    def _logging_jvm_opts(self) -> list[str]:
        return [
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={_DEPLOY_DIR / 'log4j2.yaml'}",
        ]

    def _format_storage(self, java: str, libs: Path) -> None:
        cluster_id = _new_cluster_id()
        cmd = [
            java,
            *_TOOL_JVM_OPTS,
            *self._logging_jvm_opts(),
            "-cp",
            str(libs / "*"),
            _STORAGE_TOOL_MAIN,
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self.config_path),
        ]
        logger.info("formatting %s (cluster id %s)", self.data_dir, cluster_id)
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                cmd,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalKafkaError(f"kafka storage format timed out: {cmd}") from exc
        if result.returncode != 0:
            raise LocalKafkaError(
                f"kafka storage format failed (exit {result.returncode}):\n" + _output_tail(result)
            )

    def _spawn_detached(self, argv: list[str]) -> int:
        # The broker must outlive this Python process and must never become
        # its zombie, so a throwaway /bin/sh backgrounds the JVM and exits at
        # once; the JVM is re-parented to init, which reaps it. The new session
        # keeps terminal signals (Ctrl-C in a test run) away from the broker.
        script = '"$@" </dev/null >>"$LEADSTREAM_KAFKA_CONSOLE" 2>&1 & echo $!'
        env = dict(os.environ, LEADSTREAM_KAFKA_CONSOLE=str(self.console_path))
        try:
            # The argv reaches the JVM as "$@", never parsed by the shell.
            result = subprocess.run(  # noqa: S603
                ["/bin/sh", "-c", script, "sh", *argv],
                cwd=self.home,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
                start_new_session=True,
            )
            return int(result.stdout.strip())
        except (subprocess.SubprocessError, ValueError, OSError) as exc:
            raise LocalKafkaError(f"could not launch the Kafka JVM: {exc}") from exc

    def _wait_ready(self, pid: int, *, log_offset: int | None, timeout: float) -> None:
        """Wait for the ready marker after ``log_offset`` (if given) and an open client port."""
        deadline = time.monotonic() + timeout
        marker_seen = log_offset is None
        carry = b""
        offset = log_offset or 0
        while True:
            if not self._is_our_broker(pid):
                raise LocalKafkaError(
                    f"Kafka (pid {pid}) exited during start-up\n{self._log_excerpt()}"
                )
            if not marker_seen:
                chunk, offset = self._read_log_from(offset)
                window = carry + chunk
                marker_seen = _READY_MARKER in window
                carry = window[-len(_READY_MARKER) :]
            if marker_seen and _port_open(self.host, self.port):
                return
            if time.monotonic() >= deadline:
                raise LocalKafkaError(
                    f"Kafka (pid {pid}) not ready on {self.bootstrap} within {timeout:.0f}s\n"
                    f"{self._log_excerpt()}"
                )
            time.sleep(0.2)

    def _read_log_from(self, offset: int) -> tuple[bytes, int]:
        try:
            with self.log_path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                # The size-based rollover may have started a fresh file.
                if size < offset:
                    offset = 0
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)

    def _log_excerpt(self) -> str:
        parts = []
        for path in (self.log_path, self.console_path):
            lines = _tail_lines(path)
            if lines:
                parts.append(f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines))
        return "\n".join(parts) if parts else f"(no output in {self.log_dir})"

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            pid = None
        if pid is not None and self._is_our_broker(pid):
            return pid
        # The pid file can be missing or stale while the broker runs (deleted
        # by hand, or a start that died between spawn and writing it); the
        # broker is still recognisable by its config path on the command line.
        return self._scan_for_broker()

    def _scan_for_broker(self) -> int | None:
        try:
            entries = list(Path("/proc").iterdir())
        except OSError:
            return None
        for entry in entries:
            if entry.name.isdigit() and self._is_our_broker(int(entry.name)):
                return int(entry.name)
        return None

    def _is_our_broker(self, pid: int) -> bool:
        """True if ``pid`` is alive and is this home's broker (guards against pid reuse)."""
        proc = Path("/proc") / str(pid)
        try:
            # Field 3 of /proc/<pid>/stat is the state; the command name in
            # field 2 may contain spaces, hence splitting after the last ')'.
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        except PermissionError:
            return True
        if state in ("Z", "X"):
            return False
        return _BROKER_MAIN.encode() in cmdline and str(self.config_path).encode() in cmdline

    def _terminate(self, pid: int, *, timeout: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if self._wait_exit(pid, timeout):
            return
        logger.warning("Kafka (pid %d) ignored SIGTERM for %.0fs; sending SIGKILL", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not self._wait_exit(pid, 10.0):
            raise LocalKafkaError(f"Kafka (pid {pid}) survived SIGKILL")

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._is_our_broker(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True
