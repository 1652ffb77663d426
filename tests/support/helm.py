"""Rendering and linting the Helm chart with a real, pinned ``helm``.

The binary is ``helm`` on PATH when it is :data:`HELM_VERSION`, else one built with ``go
install`` into ``~/.cache/leadstream/helm-<version>/`` (the scheme of
:mod:`tests.support.kustomize`). The build takes minutes on a clean machine (the module
download and a compile of Kubernetes' client libraries), so it is done once per machine,
under a file lock (parallel test processes wait for the one that builds instead of
compiling it again each), and :func:`start_build` starts it in the background as soon as
the chart's tests are collected, so that it runs while the rest of the suite does. When no
helm can be had, the tests fail with a message saying what was tried: a deployment test
that quietly skips checks nothing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "HELM_VERSION",
    "HelmNotFound",
    "build_helm",
    "cache_dir",
    "helm_command",
    "lint",
    "notes",
    "start_build",
    "template",
]

# The Go module proxy serves helm.sh/helm/v4 v4.3.2; it builds with Go 1.25 and later.
HELM_VERSION = "v4.3.2"
HELM_MODULE = "helm.sh/helm/v4"
# `go install` leaves the version helm reports as its source's "v4.3"; the release build
# (helm's Makefile) stamps the full one in, and so does this, so that `helm version` says
# which binary ran. -s -w: no symbol tables, a smaller binary linked sooner.
LDFLAGS = f"-s -w -X {HELM_MODULE}/internal/version.version={HELM_VERSION}"
BUILD_TIMEOUT_SECONDS = 1500


class HelmNotFound(RuntimeError):
    """No helm of the pinned version on PATH, and none could be built."""


def cache_dir() -> Path:
    """Where the pinned helm is built: ``~/.cache/leadstream/helm-<version>``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leadstream" / f"helm-{HELM_VERSION}"


def _version(exe: str) -> str | None:
    try:
        done = subprocess.run(
            [exe, "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _on_path() -> str | None:
    exe = shutil.which("helm")
    return exe if exe is not None and _version(exe) == HELM_VERSION else None


def helm_command() -> str:
    """The helm executable: on PATH if it is the pinned version, else built (once)."""
    return _on_path() or str(build_helm(cache_dir()))


def _binary(cache: Path) -> Path:
    return cache / "helm"


def _ready(cache: Path) -> bool:
    binary = _binary(cache)
    return binary.is_file() and os.access(binary, os.X_OK)


@contextmanager
def _build_lock(cache: Path, *, wait: bool) -> Iterator[bool]:
    """Held by the one process that builds into ``cache``; yields False when ``wait`` is
    False and another process holds it."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / f".{cache.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_helm(cache: Path) -> Path:
    """``cache/helm``, built with ``go install`` unless there; waits for a build that
    another process has under way."""
    if _ready(cache):
        return _binary(cache)
    with _build_lock(cache, wait=True):
        if not _ready(cache):
            _go_install(cache)
    return _binary(cache)


def _go_install(cache: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise HelmNotFound(
            f"cannot render the Helm chart: no helm {HELM_VERSION} on PATH, and no `go` to "
            f"build it into {cache}; install one (e.g. `go install "
            f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}`)"
        )
    # Built beside the cache and moved in whole, so that an interrupted build never leaves
    # half a binary where the next run would take it.
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".helm-") as tmp:
        command = [
            go,
            "install",
            "-trimpath",
            f"-ldflags={LDFLAGS}",
            f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}",
        ]
        try:
            done = subprocess.run(
                command,
                env={**os.environ, "GOBIN": tmp, "CGO_ENABLED": "0"},
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise HelmNotFound(f"`{' '.join(command)}` took over {e.timeout} s") from e
        if done.returncode != 0:
            raise HelmNotFound(
                f"cannot render the Helm chart: no helm {HELM_VERSION} on PATH, and "
                f"`{' '.join(command)}` failed:\n{done.stderr}"
            )
        cache.mkdir(parents=True, exist_ok=True)
        os.replace(Path(tmp) / "helm", _binary(cache))


def start_build() -> None:
    """Start building the pinned helm in a background process, unless one is on PATH, is
    built, or is being built: the tests that need it then wait less, or not at all. The
    process outlives the test run if it must; what it leaves is only ever a whole binary."""
    cache = cache_dir()
    if _ready(cache) or shutil.which("go") is None or _on_path() is not None:
        return
    log = cache.parent / f".{cache.name}.log"
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [sys.executable, "-m", __name__],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _build_unless_under_way() -> None:
    cache = cache_dir()
    with _build_lock(cache, wait=False) as mine:
        if mine and not _ready(cache):
            _go_install(cache)


def template(
    helm: str,
    chart: Path,
    *,
    release: str = "leadstream",
    values: tuple[Path, ...] = (),
    set_values: Mapping[str, str] = {},
    args: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders, in its order."""
    argv = [helm, "template", release, str(chart), *_values_args(values, set_values), *args]
    done = _run(argv)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def lint(
    helm: str,
    chart: Path,
    *,
    values: tuple[Path, ...] = (),
    set_values: Mapping[str, str] = {},
) -> subprocess.CompletedProcess[str]:
    """``helm lint --strict`` (warnings fail too), its output whatever it says."""
    return _run([helm, "lint", "--strict", str(chart), *_values_args(values, set_values)])


def notes(
    helm: str, chart: Path, *, release: str = "leadstream", values: tuple[Path, ...] = ()
) -> str:
    """What ``helm install`` prints after installing (NOTES.txt), from a client-side dry
    run: no cluster is asked."""
    argv = [helm, "install", release, str(chart), "--dry-run=client", *_values_args(values, {})]
    done = _run(argv)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed:\n{done.stderr}")
    return done.stdout.split("\nNOTES:\n", 1)[1]


def _values_args(values: tuple[Path, ...], set_values: Mapping[str, str]) -> list[str]:
    argv: list[str] = []
    for path in values:
        argv += ["--values", str(path)]
    for key, value in set_values.items():
        argv += ["--set", f"{key}={value}"]
    return argv


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    # Helm keeps its own state under these; the tests' runs must neither read a developer's
    # repositories and plugins nor write beside them.
    home = Path(tempfile.gettempdir()) / "leadstream-helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=env)


if __name__ == "__main__":
    _build_unless_under_way()
