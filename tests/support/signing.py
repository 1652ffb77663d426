"""Requests signed as a client signs them (v1: the method, path and query as sent, the
timestamp and the body's hash), for tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

from leadstream.domain.auth import RequestLine, signed_headers


def signed_request(
    method: str,
    url: str,
    key_id: str,
    secret: str,
    *,
    content: bytes = b"",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    now_s: float | None = None,
) -> httpx.Request:
    """The request httpx would send, with the headers of a v1 signature of it."""
    request = httpx.Request(method, url, params=params, content=content, headers=headers)
    path, _, query = request.url.raw_path.decode("ascii").partition("?")
    line = RequestLine(method, path, query)
    when = time.time() if now_s is None else now_s
    request.headers.update(signed_headers(key_id, secret, line, content, now_s=when))
    return request


def send_signed(method: str, url: str, key_id: str, secret: str, **kwargs: Any) -> httpx.Response:
    """Send a v1-signed request (see :func:`signed_request`) and return the answer."""
    timeout = kwargs.pop("timeout", 60)
    with httpx.Client(timeout=timeout) as client:
        return client.send(signed_request(method, url, key_id, secret, **kwargs))


def credential_headers(request: httpx.Request) -> dict[str, str]:
    """The credential headers a request carries (to replay them elsewhere)."""
    names = (
        "authorization",
        "x-leadstream-key-id",
        "x-leadstream-timestamp",
        "x-leadstream-signature",
        "x-setter-signature",
        "x-leadstream-content-sha256",
    )
    return {k: v for k, v in request.headers.items() if k.lower() in names}
