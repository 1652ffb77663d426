"""What the worker's HTTP endpoints share: errors, the auth file, metered views."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from faust.web import Request, Response, View

from leadstream.auth_file import load_auth
from leadstream.domain.auth import AuthConfig, AuthError
from leadstream.metrics import Metrics

__all__ = [
    "RETRY_AFTER_SECONDS",
    "AuthFile",
    "MeteredView",
    "auth_failed",
    "error_response",
    "media_type",
    "unavailable",
]

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


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


def error_response(view: View, status: int, code: str, message: str, **headers: str) -> Response:
    response = view.json({"error": {"code": code, "message": message}}, status=status)
    for name, value in headers.items():
        response.headers[name] = value
    return response


def auth_failed(view: View, err: AuthError) -> Response:
    """401 or 403, saying nothing about which part of the credential was wrong."""
    code = "unauthorized" if err.status == 401 else "forbidden"
    return error_response(view, err.status, code, err.message)


def unavailable(view: View, message: str) -> Response:
    """503 with Retry-After: Kafka did not confirm in time; a retry is safe."""
    return error_response(
        view, 503, "unavailable", message, **{"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-cased."""
    return str(request.headers.get("Content-Type", "")).split(";")[0].strip().lower()


class MeteredView(View):
    """A POST endpoint whose requests are counted and timed (``/metrics``)."""

    endpoint: ClassVar[str]
    metrics: ClassVar[Metrics]

    async def post(self, request: Request, **params: Any) -> Response:
        started = time.perf_counter()
        response = await self.handle(request, **params)
        self.metrics.http_seconds.labels(self.endpoint).observe(time.perf_counter() - started)
        self.metrics.http_requests.labels(self.endpoint, str(response.status)).inc()
        return response

    async def handle(self, request: Request, **params: Any) -> Response:
        raise NotImplementedError
