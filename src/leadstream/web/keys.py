"""The auth file (``LEADSTREAM_AUTH_FILE``): read (and re-read by a running worker when it
changes), and written atomically with mode 0600 (``leadstream keys``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec

from leadstream.domain.auth import AuthConfig

__all__ = ["AuthFile", "load_auth", "save_auth"]


def load_auth(path: Path) -> AuthConfig:
    """The configuration in ``path``; an absent file is an empty configuration."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return AuthConfig()
    return msgspec.json.decode(data, type=AuthConfig)


def save_auth(path: Path, config: AuthConfig) -> None:
    """Replace ``path`` atomically; it holds signing secrets, so only the owner may read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(msgspec.json.format(msgspec.json.encode(config), indent=2) + b"\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AuthFile:
    """The auth file, re-read when it changes (keys are managed while workers run)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._config = AuthConfig()

    def config(self) -> AuthConfig:
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return AuthConfig()
        if stamp != self._stamp:
            self._config, self._stamp = load_auth(self._path), stamp
        return self._config
