"""The hash locks of the Python dependencies (requirements/): every dependency pyproject.toml
declares is pinned with its hashes, so a new one cannot land unlocked, and the README, CI
and the Dockerfile install from them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What hatchling asks for to build leadstream editable, on top of build-system.requires.
EDITABLE_BUILD = ["editables"]


def read_lock(name: str) -> dict[str, tuple[Version, list[str]]]:
    """Package -> (pinned version, its hashes), from a pip-compile style lock."""
    text = (ROOT / "requirements" / name).read_text()
    entries: dict[str, tuple[Version, list[str]]] = {}
    # One requirement per logical line, "name==version \ --hash=sha256:... \ ...", then
    # "# via" comments (no requirement or hash holds a '#').
    for logical in text.replace("\\\n", " ").splitlines():
        line = logical.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", spec)
        assert match, f"{name}: not an exact pin: {line!r}"
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:")]
        assert hashes and len(hashes) == len(options), f"{name}: {spec} has no sha256 hash"
        package = canonicalize_name(match[1])
        assert package not in entries, f"{name}: {package} pinned twice"
        entries[package] = (Version(match[2]), hashes)
    return entries


RUNTIME = read_lock("runtime.txt")
TEST = read_lock("test.txt")


def declared(*groups: str) -> list[Requirement]:
    """The requirements of pyproject.toml: the build backend, the runtime dependencies and
    the named extras (leadstream's own extras, like dev's "leadstream[test]", left out)."""
    texts = [*PROJECT["build-system"]["requires"], *EDITABLE_BUILD]
    texts += PROJECT["project"]["dependencies"]
    for group in groups:
        texts += PROJECT["project"]["optional-dependencies"][group]
    found = [Requirement(t) for t in texts]
    return [r for r in found if canonicalize_name(r.name) != "leadstream"]


@pytest.mark.parametrize(("lock", "groups"), [(RUNTIME, ()), (TEST, ("test",))])
def test_every_declared_dependency_is_locked_within_its_range(
    lock: dict[str, tuple[Version, list[str]]], groups: tuple[str, ...]
) -> None:
    for requirement in declared(*groups):
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is declared in pyproject.toml but not locked"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} is locked, outside {requirement.specifier}: refresh the lock"
        )
    # An extra's packages are locked too: aiokafka[snappy,lz4,zstd] brings cramjam.
    assert "cramjam" in lock


def test_the_test_lock_is_the_runtime_lock_plus_the_test_extra() -> None:
    for name, (version, hashes) in RUNTIME.items():
        assert name in TEST, f"{name} is in the runtime lock only"
        assert TEST[name][0] == version, f"{name}: {version} at runtime, {TEST[name][0]} in tests"
        assert sorted(TEST[name][1]) == sorted(hashes), name


def command(markdown: str, marker: str) -> str:
    lines = [line for line in markdown.splitlines() if line.startswith("python3 -m venv .venv")]
    [found] = [line for line in lines if line.endswith(marker)]
    return found


def test_the_readme_and_ci_install_from_the_locks_and_agree() -> None:
    readme = (ROOT / "README.md").read_text()
    tests = command(readme, ".venv/bin/pytest -n 3 --dist loadfile")
    worker = command(readme, "worker --local-kafka")
    assert "--require-hashes -r requirements/test.txt" in tests
    assert "--require-hashes -r requirements/runtime.txt" in worker
    for line in (tests, worker):
        assert "--no-deps --no-build-isolation -e ." in line
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pip " in line]
    assert ci == [tests], "'.ci/run' must run exactly the README's test command"


def test_the_image_installs_from_the_runtime_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert runs and "--require-hashes -r requirements/runtime.txt" in runs[0]
    assert all(
        "--require-hashes" in line or "--no-deps --no-build-isolation" in line for line in runs
    ), runs
