"""Rendering a Kustomize directory, as ``kubectl apply -k`` would see it.

The renderer is the first of: ``kustomize`` on PATH, ``kubectl kustomize`` (built into
every kubectl), or a pinned kustomize built once with ``go install`` into the user's
cache directory. When none of them can be had, rendering fails with a message saying
what was tried: a deployment test that quietly skips checks nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "KUSTOMIZE_VERSION",
    "KustomizeNotFound",
    "build_kustomize",
    "cache_dir",
    "kustomize_command",
    "render",
]

# v5.8.1 builds with Go 1.24 and later; v5.8.2 needs Go 1.26, v5.8.3 Go 1.27.
KUSTOMIZE_VERSION = "v5.8.1"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"


class KustomizeNotFound(RuntimeError):
    """No kustomize on PATH, no kubectl, and none could be built."""


def cache_dir() -> Path:
    """Where the pinned kustomize is built: ``~/.cache/leadstream/kustomize-<version>``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leadstream" / f"kustomize-{KUSTOMIZE_VERSION}"


def kustomize_command() -> list[str]:
    """The command that renders the directory given as its last argument."""
    if exe := shutil.which("kustomize"):
        return [exe, "build"]
    if exe := shutil.which("kubectl"):
        return [exe, "kustomize"]
    return [str(build_kustomize(cache_dir())), "build"]


def build_kustomize(cache: Path) -> Path:
    """``cache/kustomize``, built with ``go install`` (about a minute, once) unless there."""
    binary = cache / "kustomize"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go")
    if go is None:
        raise KustomizeNotFound(
            "cannot render the Kubernetes manifests: no `kustomize` or `kubectl` on PATH, "
            f"and no `go` to build kustomize {KUSTOMIZE_VERSION} into {cache}; install one "
            f"(e.g. `go install {KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}`)"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the cache and moved in whole, so that a build interrupted or run twice
    # at once never leaves half a binary where the next run would take it.
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".kustomize-") as tmp:
        command = [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"]
        done = subprocess.run(
            command,
            env={**os.environ, "GOBIN": tmp},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise KustomizeNotFound(
                f"cannot render the Kubernetes manifests: no `kustomize` or `kubectl` on "
                f"PATH, and `{' '.join(command)}` failed:\n{done.stderr}"
            )
        cache.mkdir(parents=True, exist_ok=True)
        os.replace(Path(tmp) / "kustomize", binary)
    return binary


def render(directory: Path, command: list[str] | None = None) -> list[dict[str, Any]]:
    """The objects ``directory`` renders to, in kustomize's order."""
    argv = [*(command or kustomize_command()), str(directory)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]
