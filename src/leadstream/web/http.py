"""What the worker's HTTP endpoints share: their context, JSON errors, bounded bodies,
the JSON request preamble, the route guard, and work moved off the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar

from aiohttp import web as aio
from faust.web import Request, Response, View

from leadstream.domain.auth import AuthError, authenticate, has_credentials
from leadstream.domain.decode import MAX_JSON_BYTES, decode_json
from leadstream.domain.rejects import Reason, RowError
from leadstream.metrics import Metrics
from leadstream.settings import Settings
from leadstream.web.ingress import Ingress
from leadstream.web.keys import AuthFile

__all__ = [
    "OFF_LOOP_BYTES",
    "RETRY_AFTER_SECONDS",
    "BodyError",
    "Context",
    "ServedView",
    "Offload",
    "answer_reject",
    "auth_error",
    "error_response",
    "guard_routes",
    "json_request",
    "media_type",
    "now_ms",
    "read_body",
    "stream_body",
    "unavailable",
]

T = TypeVar("T")
Json = dict[str, Any]

# Bodies above this size are decoded and parsed in a thread, so that one large request
# never holds up the others (or health checks) on the event loop.
OFF_LOOP_BYTES = 64 * 1024
# Large bodies decoded at once, at most: each may take a few hundred MB while it is parsed.
_HEAVY_AT_ONCE = 2

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Context:
    """What every view works with: the ingress service, the settings, the keys, and the
    pool that runs heavy parsing off the event loop. One per app (web/routes.py)."""

    ingress: Ingress
    settings: Settings
    auth: AuthFile
    offload: Offload


class ServedView(View):
    """A view of the worker's API; ``context`` is bound when the routes are served."""

    context: ClassVar[Context]


def error_response(view: View, status: int, code: str, message: str, **headers: str) -> Response:
    response = view.json({"error": {"code": code, "message": message}}, status=status)
    for name, value in headers.items():
        response.headers[name] = value
    return response


def unavailable(view: View, message: str) -> Response:
    """503 with Retry-After: Kafka did not confirm in time; a retry is safe."""
    return error_response(
        view, 503, "unavailable", message, **{"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-cased."""
    return str(request.headers.get("Content-Type", "")).split(";")[0].strip().lower()


class BodyError(Exception):
    """The request body cannot be used at all: answered with ``status`` and ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def stream_body(request: Request, limit: int, write: Callable[[bytes], object]) -> None:
    """Hand the request body to ``write`` chunk by chunk; :class:`BodyError` 413 as soon
    as it is known to exceed ``limit`` bytes (from Content-Length, or while reading:
    nothing beyond the limit is taken)."""
    length = request.headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise BodyError(413, "body_too_large", f"at most {limit} bytes")
    size = 0
    stream: Any = request.content  # type: ignore[attr-defined]
    async for chunk in stream.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "body_too_large", f"at most {limit} bytes")
        write(chunk)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (see :func:`stream_body`)."""
    chunks: list[bytes] = []
    await stream_body(request, limit, chunks.append)
    return b"".join(chunks)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def answer_reject(index: int | None, phone: str | None, reason: Reason, detail: str) -> Json:
    """One entry of an answer's ``rejects``: the row's index, its phone as written, why."""
    return {"index": index, "phoneE164": phone, "reason": reason.value, "detail": detail}


def auth_error(err: AuthError) -> BodyError:
    """401 or 403 as a :class:`BodyError`, saying nothing about which part was wrong."""
    return BodyError(err.status, "unauthorized" if err.status == 401 else "forbidden", err.message)


async def json_request(request: Request, context: Context) -> tuple[str, Any]:
    """What every JSON endpoint does first: the media type, the body (at most the smaller
    of ``LEADSTREAM_MAX_BODY_BYTES`` and :data:`MAX_JSON_BYTES`), the credential (the
    organization it acts for) and the decoded body, in that order; :class:`BodyError` at
    the first that fails."""
    if media_type(request) != "application/json":
        raise BodyError(415, "unsupported_media_type", "send application/json")
    body = await read_body(request, min(context.settings.max_body_bytes, MAX_JSON_BYTES))
    config = context.auth.config()
    check = partial(authenticate, config, request.headers, body, now_s=time.time())
    try:
        org = await context.offload.run(len(body), check)
    except AuthError as err:
        raise auth_error(err) from None
    try:
        doc = await context.offload.run(len(body), partial(decode_json, body))
    except RowError as err:
        raise BodyError(400, "invalid_json", err.detail) from None
    return org, doc


class Offload:
    """Runs CPU-heavy work on a thread instead of the event loop, large jobs two at a time."""

    def __init__(self) -> None:
        self._heavy: asyncio.Semaphore | None = None

    async def run(self, size: int, work: Callable[[], T]) -> T:
        """``work()``: inline when ``size`` (the bytes it reads) is small, else in a thread."""
        if size <= OFF_LOOP_BYTES:
            return work()
        if self._heavy is None:  # made on the loop that serves requests
            self._heavy = asyncio.Semaphore(_HEAVY_AT_ONCE)
        async with self._heavy:
            return await asyncio.to_thread(work)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_body",
}


def _json_error(status: int, code: str, message: str) -> aio.Response:
    return aio.json_response({"error": {"code": code, "message": message}}, status=status)


Handler = Callable[[aio.Request], Awaitable[aio.StreamResponse]]


def _refusal(operations: Mapping[str, Any] | None, request: aio.Request) -> aio.Response | None:
    """Why a request to a route is refused before its view runs, if it is."""
    if operations is None:
        return _json_error(404, "not_found", "no such endpoint")
    operation = operations.get("get" if request.method == "HEAD" else request.method.lower())
    if operation is None:
        allowed = ", ".join(m.upper() for m in operations)
        return _json_error(405, "method_not_allowed", f"this endpoint takes {allowed}")
    if operation.get("security") and not has_credentials(request.headers):
        return _json_error(401, "unauthorized", "missing or invalid credentials")
    return None


def guard_routes(document: Mapping[str, Any], metrics: Metrics) -> Any:
    """An aiohttp middleware that serves only what ``document`` (the OpenAPI document)
    describes, answers every error as JSON, and counts and times every request by its
    documented endpoint (``other`` for the rest) and status.

    * a path or method it does not describe: 404 / 405 (so faust's own debug pages, which
      read tables, are never served, and a route cannot be added without documenting it);
    * an operation with ``security`` and no credential header at all: 401 before the view
      runs (the view checks the credential itself, and its organization);
    * an exception from a view: a JSON 500 with no detail, logged by type only.
    """
    paths: Mapping[str, Mapping[str, Any]] = document["paths"]

    @aio.middleware
    async def guard(request: aio.Request, handler: Handler) -> aio.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        endpoint = path if path in paths else "other"
        response = await _answer(request, handler, paths, path)
        metrics.http_seconds.labels(endpoint).observe(time.perf_counter() - started)
        metrics.http_requests.labels(endpoint, str(response.status)).inc()
        return response

    return guard


async def _answer(
    request: aio.Request,
    handler: Handler,
    paths: Mapping[str, Mapping[str, Any]],
    path: str | None,
) -> aio.StreamResponse:
    if path is not None:  # None: aiohttp found no route, and raises its 404 or 405
        refused = _refusal(paths.get(path), request)
        if refused is not None:
            return refused
    try:
        return await handler(request)
    except aio.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json_error(exc.status, _STATUS_CODES.get(exc.status, "error"), exc.reason)
    except Exception as exc:  # noqa: BLE001 - a JSON 500, never a stack, to the client
        logger.error("%s %s failed: %s", request.method, path, type(exc).__name__)
        logger.debug("request failed", exc_info=exc)
        return _json_error(500, "internal_error", "the request could not be processed")
