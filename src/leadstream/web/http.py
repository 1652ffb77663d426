"""What the worker's HTTP endpoints share: their context, JSON errors, the route guard
(routes, limits and credentials, from the headers), bodies read bounded and verified, and
work moved off the event loop.

A request to a route that needs a credential goes through these steps, each answered at
once when it fails, so that a request without a valid credential costs a few hash lookups
and one HMAC of a short string, and never a byte of its body:

1. :func:`guard_routes`: a documented route and method (404, 405); a place among the
   worker's requests in flight (503, web/limits.py); the credential from the headers
   (:func:`leadstream.domain.auth.read_credential`: 401; a v1 signature is checked whole,
   over the body hash its ``X-Leadstream-Content-SHA256`` header states); the organization
   named by the path or query (403); a place among the organization's requests and in its
   rate (429).
2. The view reads the body through the request's :class:`Admission` (bounded, 408 when it
   stalls, hashed as it streams); a v1 signed body must have the signed hash (401). The
   one exception is a body-only webhook signature, which can only be checked against the
   whole body: such bodies are read under the worker's small limit of unverified bodies
   (and a deadline for the whole body), and only then join their organization's share.
3. The view checks the organization its body names (403) and does its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar

import yarl
from aiohttp import web as aio
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict

from leadstream.domain.auth import (
    AuthError,
    AuthIndex,
    BodySigned,
    Credential,
    RequestLine,
    SignedRequest,
    body_organization,
    forbidden,
    read_credential,
    verify_body_signature,
)
from leadstream.domain.decode import MAX_JSON_BYTES, decode_json
from leadstream.domain.normalize import normalize_organization_id
from leadstream.domain.rejects import Reason, RowError
from leadstream.lifecycle import environment_cause
from leadstream.metrics import Metrics
from leadstream.settings import Settings
from leadstream.web.connections import ConnectionBook
from leadstream.web.ingress import Ingress
from leadstream.web.keys import AuthFile
from leadstream.web.limits import Refusal, RequestLimits, Ticket
from leadstream.web.readiness import Readiness
from leadstream.web.spec import Operation, answer, error_answer

__all__ = [
    "MAX_LISTED_REJECTS",
    "OMITTED",
    "REJECTED",
    "REJECTS",
    "OFF_LOOP_BYTES",
    "RETRY_AFTER_SECONDS",
    "Admission",
    "RowReject",
    "BodyError",
    "Context",
    "Offload",
    "ServedView",
    "admission_of",
    "answer_reject",
    "auth_error",
    "error_response",
    "guard_routes",
    "json_request",
    "listed_rejects",
    "media_type",
    "now_ms",
    "request_line",
    "unavailable",
]

T = TypeVar("T")

# Bodies above this size are decoded and parsed in a thread, so that one large request
# never holds up the others (or health checks) on the event loop.
OFF_LOOP_BYTES = 64 * 1024
# Large bodies decoded at once, at most: each may take a few hundred MB while it is parsed.
_HEAVY_AT_ONCE = 2
# Rejects an answer lists one by one, at most; the rest are counted (rejected,
# rejectsOmitted), so that an answer's size never grows with a hostile body.
MAX_LISTED_REJECTS = 1000
# Routes answered whatever the load: no limit applies to them.
_UNLIMITED = frozenset({"/healthz", "/readyz"})
# The routes that take body-only signatures (deliveries of source systems), and the share
# request between workers, the one route that takes the cluster's key.
_WEBHOOKS = "/api/v1/webhooks/"
_PREVIEW = "/api/v1/sends/preview"
_ADMISSION = "leadstream.admission"

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Context:
    """What every view works with: the ingress service, the settings, the keys, the pool
    that runs heavy parsing off the event loop, the request limits, the connections and
    the readiness kept current in the background. One per app (web/routes.py)."""

    ingress: Ingress
    settings: Settings
    auth: AuthFile
    offload: Offload
    limits: RequestLimits
    connections: ConnectionBook
    readiness: Readiness
    # Told of a fault of the disk or the store met while serving (the worker stops).
    on_fault: Callable[[str], None]


class ServedView(View):
    """A view of the worker's API; ``context`` is bound when the routes are served.
    ``operations`` declares each method it serves (web/spec.py): /openapi.json is made of
    them, and the route guard serves nothing else."""

    context: ClassVar[Context]
    operations: ClassVar[Mapping[str, Operation]] = {}


def error_response(
    view: View, status: int, code: str, message: str, field: str | None = None, **headers: str
) -> Response:
    """``{"error": {"code", "message", "field"?}}``: ``field`` is the JSON path of the
    request's value at fault, when one is."""
    return answer(view, error_answer(code, message, field), status=status, **headers)


def unavailable(view: View, message: str) -> Response:
    """503 with Retry-After: Kafka did not confirm in time; a retry is safe."""
    return error_response(
        view, 503, "unavailable", message, **{"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-cased."""
    return str(request.headers.get("Content-Type", "")).split(";")[0].strip().lower()


class BodyError(Exception):
    """The request cannot be served: answered with ``status``, ``code`` and ``headers``."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, **headers: str
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers

    def answer(self, view: View) -> Response:
        return error_response(
            view, self.status, self.code, self.message, self.field, **self.headers
        )


def _refused(refusal: Refusal) -> BodyError:
    return BodyError(
        refusal.status, refusal.code, refusal.message, Retry_After=str(refusal.retry_after)
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RowReject(BaseModel):
    """One refused row of a body: its index, its phone as written, why."""

    model_config = ConfigDict(extra="forbid")
    index: int | None
    phoneE164: str | None
    reason: Reason
    detail: str


REJECTED = "Every row refused, counted."
REJECTS = (
    f"The first {MAX_LISTED_REJECTS} refused rows, in order; the others are only counted"
    " (rejectsOmitted)."
)
OMITTED = "How many refused rows rejects leaves out: rejected minus the length of rejects."


def answer_reject(index: int | None, phone: str | None, reason: Reason, detail: str) -> RowReject:
    """One entry of an answer's ``rejects``: the row's index, its phone as written, why.
    Built unchecked (an upload may refuse a million rows; its fields are typed here)."""
    return RowReject.model_construct(index=index, phoneE164=phone, reason=reason, detail=detail)


def listed_rejects(rejects: list[RowReject], total: int) -> dict[str, Any]:
    """An answer's reject fields: ``rejected`` (all of them), the first
    :data:`MAX_LISTED_REJECTS` in ``rejects`` and how many were left out."""
    listed = rejects[:MAX_LISTED_REJECTS]
    return {"rejected": total, "rejects": listed, "rejectsOmitted": total - len(listed)}


def auth_error(err: AuthError) -> BodyError:
    """401 or 403 as a :class:`BodyError`, saying nothing about which part was wrong."""
    return BodyError(err.status, "unauthorized" if err.status == 401 else "forbidden", err.message)


def request_line(request: aio.Request) -> RequestLine:
    """The method, path and query a v1 signature covers, as the client sent them."""
    path, _, query = request.raw_path.partition("?")
    return RequestLine(request.method, path, query)


# -- bodies --------------------------------------------------------------------------------


async def _stream(
    request: aio.Request,
    limit: int,
    write: Callable[[bytes], object],
    *,
    stall_s: float,
    digest: Any = None,
) -> int:
    """Hand the body to ``write`` chunk by chunk (and to ``digest``); its size.
    :class:`BodyError` 413 as soon as it is known to exceed ``limit`` (from Content-Length,
    or while reading: nothing beyond is taken), 408 when no byte comes for ``stall_s``."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, "body_too_large", f"at most {limit} bytes")
    stream = request.content
    size = 0
    while True:
        try:
            async with asyncio.timeout(stall_s):
                chunk = await stream.readany()
        except TimeoutError:
            raise BodyError(408, "body_timeout", f"no byte of the body for {stall_s:g} s") from None
        if not chunk:
            return size
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "body_too_large", f"at most {limit} bytes")
        if digest is not None:
            digest.update(chunk)
        write(chunk)


@contextlib.asynccontextmanager
async def _deadline(seconds: float | None) -> AsyncIterator[None]:
    """The whole body within ``seconds`` (408 after), when given."""
    if seconds is None:
        yield
        return
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise BodyError(
            408, "body_timeout", f"the body did not arrive within {seconds:g} s"
        ) from None


class Admission:
    """A request that passed the route guard: its credential, as far as the headers could
    check it, and the places it holds in the limits. The view reads the body through it;
    once read, :attr:`org` is the organization the credential acts for (None for the
    cluster's own key: a share request acts for the organization its body names)."""

    def __init__(
        self,
        credential: Credential,
        line: RequestLine,
        named: tuple[str, ...],
        ticket: Ticket,
        context: Context,
    ) -> None:
        self.credential = credential
        self.line = line
        self._named = named  # organizations the path and query name
        self._ticket = ticket
        self._context = context
        # An API key and a v1 signature are checked from the headers; a body-only
        # signature once its body is read.
        self._verified = not isinstance(credential, BodySigned)
        self.org: str | None = None if isinstance(credential, BodySigned) else credential.org

    def check_named(self) -> None:
        """:class:`BodyError` 403 when the path or query names another organization."""
        if self.org is not None and any(named != self.org for named in self._named):
            raise auth_error(forbidden())

    def acting_org(self, claimed: str | None) -> str:
        """The organization the request acts for, given the one its body names (None: it
        names none); :class:`BodyError` 403 when the credential's is another."""
        if not self._verified:
            raise RuntimeError("the body must be read through the admission first")
        if self.org is None:  # the cluster's key acts for the organization of the body
            if claimed is None:
                raise BodyError(400, "invalid_json", "the body names no organizationId")
            return claimed
        if claimed is not None and claimed != self.org:
            raise auth_error(forbidden())
        return self.org

    async def stream_body(
        self, request: aio.Request, limit: int, write: Callable[[bytes], object]
    ) -> None:
        """The body to ``write`` as it arrives (never held whole); for a v1 signature,
        :class:`BodyError` 401 at its end unless it has the signed hash (what was written
        is then the caller's to drop). An API key or a v1 signature only: a body-only
        signature needs the whole body, and only webhooks take it."""
        credential = self.credential
        if isinstance(credential, BodySigned):
            raise auth_error(AuthError(401, "missing or invalid credentials"))
        digest = hashlib.sha256() if isinstance(credential, SignedRequest) else None
        stall = self._context.settings.http_body_timeout_seconds
        await _stream(request, limit, write, stall_s=stall, digest=digest)
        if isinstance(credential, SignedRequest) and digest is not None:
            try:
                credential.check_body(digest.hexdigest())
            except AuthError as err:
                raise auth_error(err) from None

    async def read_body(self, request: aio.Request, limit: int) -> bytes:
        """The whole body, at most ``limit`` bytes, with the credential verified over it
        (and the organization found) before it is returned."""
        if not isinstance(self.credential, BodySigned):
            chunks: list[bytes] = []
            await self.stream_body(request, limit, chunks.append)
            return b"".join(chunks)
        return await self._read_body_signed(request, limit, self.credential)

    async def _read_body_signed(
        self, request: aio.Request, limit: int, credential: BodySigned
    ) -> bytes:
        # Read and checked under the worker's small limit of unverified bodies, whole
        # within a deadline: whoever sends it, it is nobody's until its HMAC is checked
        # (a key id is no secret).
        settings = self._context.settings
        refused = self._ticket.start_unverified()
        if refused is not None:
            raise _refused(refused)
        try:
            chunks: list[bytes] = []
            async with _deadline(settings.http_unverified_body_seconds):
                await _stream(
                    request, limit, chunks.append, stall_s=settings.http_body_timeout_seconds
                )
            body = b"".join(chunks)
            del chunks
            claimed = _claimed_org(body) if credential.org is None else credential.org
            index = self._context.auth.index()
            check = partial(verify_body_signature, index, credential, body, claimed)
            try:
                self.org = await self._context.offload.run(len(body), check)
            except AuthError as err:
                raise auth_error(err) from None
        finally:
            self._ticket.end_unverified()
        self._verified = True
        self.check_named()
        refused = self._ticket.join_org(self.org)
        if refused is not None:
            raise _refused(refused)
        return body


def _claimed_org(body: bytes) -> str | None:
    """The body's top-level organizationId, normalized; None when it has none usable."""
    try:
        return normalize_organization_id(body_organization(body))
    except RowError:
        return None


def admission_of(request: Request) -> Admission:
    """The admission the route guard gave ``request`` (a secured route's view only)."""
    admission = request[_ADMISSION]  # type: ignore[index]
    if not isinstance(admission, Admission):
        raise TypeError("a secured route's request carries its admission")
    return admission


async def json_request(request: Request, context: Context) -> tuple[str, Any]:
    """What a JSON webhook does first: the media type, the body (at most the smaller of
    ``LEADSTREAM_MAX_BODY_BYTES`` and :data:`MAX_JSON_BYTES`) with its credential
    verified, and the decoded body; ``(organization, document)`` or :class:`BodyError`."""
    if media_type(request) != "application/json":
        raise BodyError(415, "unsupported_media_type", "send application/json")
    admission = admission_of(request)
    raw = await admission.read_body(
        request,  # type: ignore[arg-type]
        min(context.settings.max_body_bytes, MAX_JSON_BYTES),
    )
    try:
        doc = await context.offload.run(len(raw), partial(decode_json, raw))
    except RowError as err:
        raise BodyError(400, "invalid_json", err.detail) from None
    return admission.acting_org(None), doc


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


# -- the route guard -----------------------------------------------------------------------

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


def _json_error(status: int, code: str, message: str, **headers: str) -> aio.Response:
    body = error_answer(code, message).model_dump_json(exclude_unset=True)
    response = aio.Response(text=body, status=status, content_type="application/json")
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _error(err: BodyError) -> aio.Response:
    return _json_error(err.status, err.code, err.message, **err.headers)


Handler = Callable[[aio.Request], Awaitable[aio.StreamResponse]]


def guard_routes(document: Mapping[str, Any], context: Context, metrics: Metrics) -> Any:
    """An aiohttp middleware that serves only what ``document`` (the OpenAPI document)
    describes, within the request limits and for a credential checked from the headers,
    answers every error as JSON, and counts and times every request by its documented
    endpoint (``other`` for the rest) and status.

    * a path or method it does not describe: 404 / 405 (so faust's own debug pages, which
      read tables, are never served, and a route cannot be added without documenting it);
    * beyond the worker's requests in flight: 503 (``/healthz`` and ``/readyz`` aside);
    * an operation with ``security``: the steps of this module's docstring, and the
      request's :class:`Admission` for its view;
    * an exception from a view: a JSON 500 with no detail, logged by type only; but a
      fault of the disk or the store (an upload that cannot be spooled, a state read that
      fails) is the environment's: a 503, and the worker stops (``Context.on_fault``).
    """
    paths: Mapping[str, Mapping[str, Any]] = document["paths"]
    book = context.connections

    @aio.middleware
    async def guard(request: aio.Request, handler: Handler) -> aio.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        endpoint = path if path in paths else "other"
        transport = request.transport
        book.request_started(transport)
        try:
            response = await _answer(request, handler, paths, path, context)
            # Sent before the connection counts as waiting again (its header deadline
            # must not cut a slow client's answer short); aiohttp's own send after this
            # middleware is then a no-op.
            with contextlib.suppress(ConnectionError):
                await response.prepare(request)
                await response.write_eof()
        finally:
            book.request_finished(transport, body_read=request.content.at_eof())
        metrics.http_seconds.labels(endpoint).observe(time.perf_counter() - started)
        metrics.http_requests.labels(endpoint, str(response.status)).inc()
        return response

    return guard


async def _answer(
    request: aio.Request,
    handler: Handler,
    paths: Mapping[str, Mapping[str, Any]],
    path: str | None,
    context: Context,
) -> aio.StreamResponse:
    if path is None:  # aiohttp found no route, and raises its 404 or 405
        return await _served(request, handler, path, context)
    operations = paths.get(path)
    if operations is None:
        return _json_error(404, "not_found", "no such endpoint")
    operation = operations.get("get" if request.method == "HEAD" else request.method.lower())
    if operation is None:
        allowed = ", ".join(m.upper() for m in operations)
        return _json_error(405, "method_not_allowed", f"this endpoint takes {allowed}")
    if path in _UNLIMITED:
        return await _served(request, handler, path, context)
    ticket = context.limits.admit()
    if isinstance(ticket, Refusal):
        return _error(_refused(ticket))
    try:
        if operation.get("security"):
            try:
                request[_ADMISSION] = _admit(request, path, ticket, context)
            except BodyError as err:
                return _error(err)
        return await _served(request, handler, path, context)
    finally:
        ticket.close()


async def _served(
    request: aio.Request, handler: Handler, path: str | None, context: Context
) -> aio.StreamResponse:
    try:
        return await handler(request)
    except aio.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json_error(exc.status, _STATUS_CODES.get(exc.status, "error"), exc.reason)
    except Exception as exc:  # noqa: BLE001 - a JSON 500, never a stack, to the client
        cause = environment_cause(exc, network=False)
        if cause is not None:  # the disk or the store failed: the worker stops (lifecycle.py)
            context.on_fault(f"{request.method} {path}: {cause}")
            return _json_error(503, "unavailable", "the worker cannot write its state; retry")
        logger.error("%s %s failed: %s", request.method, path, type(exc).__name__)
        logger.debug("request failed", exc_info=exc)
        return _json_error(500, "internal_error", "the request could not be processed")


def _admit(
    request: aio.Request,
    path: str,
    ticket: Ticket,
    context: Context,
) -> Admission:
    """Step 1 of the module's docstring, from the headers alone; :class:`BodyError`."""
    line = request_line(request)
    index: AuthIndex = context.auth.index()
    try:
        credential = read_credential(
            index,
            request.headers,
            line,
            now_s=time.time(),
            body_signatures=request.method == "POST" and path.startswith(_WEBHOOKS),
            cluster=_share_request(request, path, context.settings),
        )
    except AuthError as err:
        raise auth_error(err) from None
    admission = Admission(credential, line, _named_orgs(request), ticket, context)
    if isinstance(credential, BodySigned):  # checked with its body (Admission.read_body)
        return admission
    admission.check_named()
    if credential.org is not None:  # the cluster's key acts for the body's organization
        refused = ticket.join_org(credential.org)
        if refused is not None:
            raise _refused(refused)
    return admission


def _named_orgs(request: aio.Request) -> tuple[str, ...]:
    """The organizations the path and the query name, normalized (400 when malformed)."""
    named = [request.match_info.get("organizationId"), request.query.get("organizationId")]
    try:
        return tuple(normalize_organization_id(n) for n in named if n is not None)
    except RowError as err:
        raise BodyError(400, err.reason.value, err.detail) from None


def _share_request(request: aio.Request, path: str, settings: Settings) -> bool:
    """A preview's share request from another worker, addressed to this one: the only
    request the cluster's key may sign."""
    query = request.query
    return (
        request.method == "POST"
        and path == _PREVIEW
        and "partitions" in query
        and _same_url(query.get("to", ""), settings.web_url)
    )


def _same_url(given: str, own: str) -> bool:
    """Whether ``given`` names this worker's advertised URL (as the group spells it: yarl
    lower-cases the scheme and host)."""
    try:
        return yarl.URL(given.rstrip("/")) == yarl.URL(own.rstrip("/"))
    except ValueError:
        return False
