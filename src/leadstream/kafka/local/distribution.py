"""The Apache Kafka jars: the release pinned in ``deploy/kafka/pom.xml``, fetched from Maven
Central with ``mvn`` once per pom and cached, and checked against the SHA-256 of every jar
pinned in ``deploy/kafka/jars.sha256`` before each use; and the JVM that runs them."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "DEPLOY_DIR",
    "KAFKA_VERSION",
    "MANIFEST",
    "LocalKafkaError",
    "default_cache_dir",
    "ensure_distribution",
    "file_lock",
    "find_java",
    "output_tail",
    "read_manifest",
    "tail_lines",
    "verify_distribution",
]

logger = logging.getLogger(__name__)


class LocalKafkaError(RuntimeError):
    """Raised when the local broker cannot be fetched, formatted, started or stopped."""


_POM_NS = "{http://maven.apache.org/POM/4.0.0}"
_LOG_TAIL_LINES = 40


def _find_deploy_dir() -> Path:
    """Locate ``deploy/kafka``: the source checkout first, then the wheel's package data."""
    here = Path(__file__).resolve()
    candidates = (
        here.parents[4] / "deploy" / "kafka",  # src/leadstream/kafka/local/ in a checkout
        here.parents[2] / "_deploy" / "kafka",  # leadstream/_deploy/kafka in a wheel
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


DEPLOY_DIR = _find_deploy_dir()
KAFKA_VERSION: str = _read_kafka_version(DEPLOY_DIR / "pom.xml")
"""The Apache Kafka release pinned in ``deploy/kafka/pom.xml``."""


MANIFEST = DEPLOY_DIR / "jars.sha256"
"""The SHA-256 of every jar the broker runs on, in ``sha256sum`` format (``sha256sum -c``
reads it in the libs dir)."""

_MANIFEST_LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9][A-Za-z0-9._+-]*)")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "leadstream" / f"kafka-{KAFKA_VERSION}"


def read_manifest(path: Path) -> dict[str, str]:
    """File name -> SHA-256 (hex) of a ``<sha256>  <file name>`` manifest."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LocalKafkaError(f"cannot read the Kafka jar manifest {path}: {exc}") from exc
    pinned: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None or match[2] in pinned:
            raise LocalKafkaError(f"{path}:{number}: not a '<sha256>  <jar name>' line")
        pinned[match[2]] = match[1]
    if not pinned:
        raise LocalKafkaError(f"the Kafka jar manifest {path} lists no jar")
    return pinned


def verify_distribution(libs: Path, manifest: Path | None = None) -> None:
    """Raise unless ``libs`` holds exactly the jars of ``manifest``, each with its SHA-256.

    The broker runs ``java -cp 'libs/*'``, so a jar too many is code on its classpath just
    as a changed one is. Every jar is hashed on every call: 0.03 s for the 45 jars (43 MB)
    once they are in the page cache, about 0.2 s when read from disk, next to seconds for a
    broker start; a cache keyed on size and mtime would believe a jar rewritten with its
    old timestamp.
    """
    manifest = MANIFEST if manifest is None else manifest
    pinned = read_manifest(manifest)
    try:
        present = {entry.name: entry for entry in libs.iterdir()}
    except OSError as exc:
        raise LocalKafkaError(f"cannot list the Kafka jars in {libs}: {exc}") from exc
    for name in sorted(pinned.keys() - present.keys()):
        raise LocalKafkaError(f"Kafka jar {libs / name} is missing (pinned in {manifest})")
    for name in sorted(present.keys() - pinned.keys()):
        raise LocalKafkaError(f"{libs / name} is not a Kafka jar pinned in {manifest}")
    for name, expected in sorted(pinned.items()):
        path = present[name]
        try:
            with path.open("rb") as handle:
                actual = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            raise LocalKafkaError(f"cannot read Kafka jar {path}: {exc}") from exc
        if actual != expected:
            raise LocalKafkaError(
                f"Kafka jar {path} has SHA-256 {actual}, not the {expected} pinned in {manifest}"
            )


def ensure_distribution(cache_dir: Path) -> Path:
    """Fetch the broker jars with Maven (once per pom content) and return the libs dir.

    The dir is ``cache_dir/libs-<hash of pom.xml>``: changing the pom (the Kafka version,
    the logging backend) gives a new dir instead of rewriting one that a running broker
    still loads classes from. A file lock in ``cache_dir`` serialises concurrent callers,
    and the jars are fetched into a staging dir that is renamed into place, so a
    half-finished download is never used. The jars are checked against ``MANIFEST`` when
    fetched and again on every call (``verify_distribution``), so a jar changed, added or
    removed in the cache since stops the broker from starting.
    """
    pom_bytes = (DEPLOY_DIR / "pom.xml").read_bytes()
    libs = cache_dir / f"libs-{hashlib.sha256(pom_bytes).hexdigest()[:16]}"
    if not libs.is_dir():
        with file_lock(cache_dir / ".lock"):
            if not libs.is_dir():
                _fetch(cache_dir, pom_bytes, libs)
    try:
        verify_distribution(libs)
    except LocalKafkaError as exc:
        raise LocalKafkaError(
            f"{exc}: refusing to start Kafka (delete {libs} to fetch the jars again)"
        ) from None
    return libs


def _fetch(cache_dir: Path, pom_bytes: bytes, libs: Path) -> None:
    """Run Maven into a staging dir and rename it to ``libs`` (the lock is held)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("mvn not found: install Maven to fetch the Kafka jars")
    # Leftovers of a fetch that was killed; nobody else stages while we hold the lock.
    for stale in cache_dir.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    # Run Maven on a copy: the package's own deploy dir may be read-only (site-packages)
    # and Maven must not write next to it.
    pom_copy = cache_dir / "pom.xml"
    pom_copy.write_bytes(pom_bytes)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_dir))
    cmd = [
        mvn,
        "-B",
        "-q",
        # A download that does not match the checksum the repository publishes beside it
        # fails the fetch (Maven's default only warns).
        "--strict-checksums",
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
            cwd=cache_dir,
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
            + output_tail(result)
        )
    try:
        verify_distribution(staging)
    except LocalKafkaError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise LocalKafkaError(f"Maven fetched a jar that is not pinned: {exc}") from None
    staging.rename(libs)
    logger.info("fetched Kafka jars in %.1fs", time.monotonic() - started)


def find_java() -> str:
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
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock shared by every process using the same ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def tail_lines(path: Path, count: int = _LOG_TAIL_LINES) -> list[str]:
    """Last ``count`` lines of a text file, or nothing if it does not exist."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=count)]
    except FileNotFoundError:
        return []


def output_tail(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
