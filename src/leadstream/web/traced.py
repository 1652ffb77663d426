"""A span for every HTTP request (leadstream.tracing): a child of the caller's W3C
``traceparent``, named by the route's template (never its values: a path may hold a
phone number), with the organization the credential acted for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web as aio

from leadstream import tracing
from leadstream.web.http import admission_of

__all__ = ["trace_requests"]

Handler = Callable[[aio.Request], Awaitable[aio.StreamResponse]]


@aio.middleware
async def trace_requests(request: aio.Request, handler: Handler) -> aio.StreamResponse:
    """The request in a server span; the records its view writes carry the span's
    context (topology.send_command)."""
    if not tracing.enabled():
        return await handler(request)
    route = _template(request)
    parent = tracing.context_of(
        {
            k: request.headers[k]
            for k in (tracing.TRACEPARENT, tracing.TRACESTATE)
            if k in request.headers
        }
    )
    with tracing.start(
        f"HTTP {request.method} {route}",
        parent=parent,
        kind=tracing.SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route},
    ) as span:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except aio.HTTPException as exc:
            status = exc.status
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            org = _organization(request)
            if org is not None:
                span.set_attribute(tracing.ORGANIZATION, org)
            send = request.match_info.get("sendId")
            if send is not None:
                span.set_attribute(tracing.SEND, send)


def _template(request: aio.Request) -> str:
    resource: Any = request.match_info.route.resource
    canonical = getattr(resource, "canonical", None)
    return str(canonical) if canonical else "unmatched"


def _organization(request: aio.Request) -> str | None:
    """The organization the credential acted for, else the one the path names."""
    try:
        org = admission_of(cast(Any, request)).org  # a secured route, once admitted
    except (KeyError, TypeError):
        org = None
    if org is not None:
        return org
    return request.match_info.get("organizationId")
