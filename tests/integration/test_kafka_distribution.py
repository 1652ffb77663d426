"""The real Kafka jars, as Maven fetched them, against the checked-in manifest of their
SHA-256 (deploy/kafka/jars.sha256): the fetched set passes, and a copy with one jar changed
or one jar gone is refused, naming the jar. No broker is started; Maven fetches the jars
once if this machine has none cached (the session's local broker needs them anyway)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leadstream.kafka.local import LocalKafkaError, distribution

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fetched() -> Path:
    return distribution.ensure_distribution(distribution.default_cache_dir())


@pytest.fixture
def copy(fetched: Path, tmp_path: Path) -> Path:
    libs = tmp_path / "libs"
    shutil.copytree(fetched, libs)
    return libs


def test_the_fetched_jars_are_exactly_the_pinned_ones(fetched: Path) -> None:
    pinned = distribution.read_manifest(distribution.MANIFEST)
    assert sorted(p.name for p in fetched.iterdir()) == sorted(pinned)
    distribution.verify_distribution(fetched)


def test_a_copy_with_a_changed_jar_is_refused(copy: Path) -> None:
    distribution.verify_distribution(copy)
    jar = copy / f"kafka-clients-{distribution.KAFKA_VERSION}.jar"
    with jar.open("r+b") as handle:  # one byte in the middle, size unchanged
        handle.seek(jar.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(LocalKafkaError, match=rf"{jar} has SHA-256 [0-9a-f]{{64}}, not the"):
        distribution.verify_distribution(copy)


def test_a_copy_with_a_missing_jar_is_refused(copy: Path) -> None:
    jar = copy / f"kafka_2.13-{distribution.KAFKA_VERSION}.jar"
    jar.unlink()
    with pytest.raises(LocalKafkaError, match=rf"Kafka jar {jar} is missing"):
        distribution.verify_distribution(copy)


def test_a_fetch_that_brings_other_jars_is_not_kept(
    fetched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A manifest that pins another content for one jar stands for Maven bringing a jar
    # that is not the pinned one: the fetch fails and leaves no libs dir to start from.
    pinned = distribution.read_manifest(distribution.MANIFEST)
    jar = next(name for name in sorted(pinned) if name.startswith("log4j-core-"))
    pinned[jar] = "0" * 64
    manifest = tmp_path / "jars.sha256"
    manifest.write_text("".join(f"{digest}  {name}\n" for name, digest in pinned.items()))
    monkeypatch.setattr(distribution, "MANIFEST", manifest)
    cache = tmp_path / "cache"
    with pytest.raises(LocalKafkaError, match=rf"Maven fetched a jar that is not pinned: .*{jar}"):
        distribution.ensure_distribution(cache)
    assert [p.name for p in cache.iterdir() if p.is_dir()] == []
