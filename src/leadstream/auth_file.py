"""The auth file (``LEADSTREAM_AUTH_FILE``): read, and written atomically with mode 0600."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import msgspec

from leadstream.domain.auth import AuthConfig

__all__ = ["load_auth", "save_auth"]

logger = logging.getLogger(__name__)


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
