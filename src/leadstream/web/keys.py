"""The auth file (``LEADSTREAM_AUTH_FILE``): read (and re-read by a running worker when it
changes), and written atomically with mode 0600 (``leadstream keys``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec

from leadstream.domain.auth import AuthConfig, AuthIndex

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
    """The auth file, re-read when it changes (keys are managed while workers run), and
    its :class:`AuthIndex`, built once per version of the file."""

    def __init__(self, path: Path, cluster_secret: str | None = None) -> None:
        self._path = path
        self._cluster_secret = cluster_secret
        self._stamp: tuple[int, int, int] | None = None
        self._config = AuthConfig()
        self._index = AuthIndex.of(self._config, cluster_secret)

    def config(self) -> AuthConfig:
        self._refresh()
        return self._config

    def index(self) -> AuthIndex:
        """The credentials to check a request against (a stat of the file per call)."""
        self._refresh()
        return self._index

    def _refresh(self) -> None:
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        config = AuthConfig() if stamp is None else load_auth(self._path)
        self._config, self._stamp = config, stamp
        self._index = AuthIndex.of(config, self._cluster_secret)
