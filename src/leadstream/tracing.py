"""OpenTelemetry traces: a W3C ``traceparent`` taken from HTTP requests and Kafka headers,
carried on the internal topics and in the held trigger, and written on every output
record of a send (docs/contract.md, "Traces").

Off unless the standard variables say otherwise (:func:`configure`): the API's tracer is
then a no-op, and the only work left per batch is one lookup of a header. A span never
carries a phone number: organizations, send ids, partitions and counts only.

The shape of a trace:

- ``HTTP <method> <route>`` (server): a request, child of the caller's ``traceparent``;
  the records it writes carry its context.
- ``route batch``: one per batch the input router reads, linked to every traced message in
  it; ``route`` (consumer): one per traced message, its child, linked to the batch; what
  the message became carries its context.
- ``apply``: one per lead-keyed command applied, child of the context the command carries
  (a route, an HTTP request; a root without one).
- ``materialize``: one per partition's share of a send, child of the trigger's route;
  ``commit``: its transaction, a child. Every recipient chunk carries ``materialize``'s
  context; ``summary``, also a child of the trigger's route, is carried by the summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "Link",
    "SpanKind",
    "configure",
    "context_of",
    "current",
    "enabled",
    "exporters",
    "headers_of",
    "http_headers",
    "kafka_headers",
    "links_of",
    "shutdown",
    "start",
    "traceparent",
    "tracer",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Attribute names: the product's own, never a phone number.
ORGANIZATION = "leadstream.organization_id"
SEND = "leadstream.send_id"
PARTITION = "leadstream.partition"

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("leadstream")
_enabled = False


def enabled() -> bool:
    """Whether this process records spans (:func:`configure` turned the SDK on)."""
    return _enabled


def exporters(env: Mapping[str, str]) -> list[str]:
    """The exporters the standard variables ask for: ``OTEL_TRACES_EXPORTER``'s list
    (``otlp``, ``console``), else ``otlp`` when an ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``
    is set; none by default, with ``none``, or when ``OTEL_SDK_DISABLED`` is true."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [e for e in named if e]
    if "none" in named:
        return []
    for name in named:
        if name not in ("otlp", "console"):
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={name!r}: leadstream exports traces with otlp"
                " (HTTP/protobuf) or console"
            )
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return named or (["otlp"] if endpoint else [])


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Turn the SDK on when the standard variables ask for it (:func:`exporters`). The
    exporter and its batching read the rest of the ``OTEL_*`` variables themselves
    (endpoint, headers, timeout, sampler, service name). Returns whether it is on."""
    global _enabled
    wanted = exporters(os.environ if env is None else env)
    if not wanted:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES; the service is OTEL_SERVICE_NAME's,
    # else the product's.
    service = (os.environ if env is None else env).get("OTEL_SERVICE_NAME") or "leadstream"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    for name in wanted:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def shutdown() -> None:
    """Export what is buffered and stop (at the end of a process that configured it)."""
    provider = trace.get_tracer_provider()
    if _enabled and hasattr(provider, "shutdown"):
        provider.shutdown()


def current() -> Span:
    """The current span (an invalid one when there is none)."""
    return trace.get_current_span()


def tracer() -> trace.Tracer:
    """The product's tracer (a proxy: the SDK's once :func:`configure` installed it)."""
    return _tracer


def context_of(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    """The remote parent a ``traceparent`` (and ``tracestate``) names; None without a
    valid one."""
    if not carrier or TRACEPARENT not in carrier:
        return None
    ctx = _propagator.extract(carrier)
    span = trace.get_current_span(ctx)
    return ctx if span.get_span_context().is_valid else None


def headers_of(headers: Any) -> dict[str, str] | None:
    """The trace headers of a Kafka message (a list of (name, bytes) pairs, a mapping, or
    None), decoded; None when it carries none."""
    if not headers:
        return None
    pairs: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in pairs:
        name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        if name in (TRACEPARENT, TRACESTATE) and isinstance(value, bytes | str):
            found[name] = value.decode("latin-1") if isinstance(value, bytes) else value
    return found or None


def traceparent(span: Span | None = None) -> str:
    """The ``traceparent`` of ``span`` (the current one by default); empty when it is not
    a real one (tracing off, or no span)."""
    span = span or trace.get_current_span()
    if not span.get_span_context().is_valid:
        return ""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT, "")


def kafka_headers(parent: str = "") -> list[tuple[str, bytes]]:
    """Headers that carry ``parent`` (a ``traceparent``), else the current span's; none
    when there is no real span."""
    value = parent or traceparent()
    return [(TRACEPARENT, value.encode())] if value else []


def http_headers() -> dict[str, str]:
    """HTTP headers that carry the current span's ``traceparent`` (none without one)."""
    value = traceparent()
    return {TRACEPARENT: value} if value else {}


def links_of(parents: Sequence[otel_context.Context]) -> list[Link]:
    """Links to the spans those contexts name."""
    out = []
    for ctx in parents:
        span_context = trace.get_current_span(ctx).get_span_context()
        if span_context.is_valid:
            out.append(Link(span_context))
    return out


@contextmanager
def start(
    name: str,
    *,
    parent: str | otel_context.Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    links: Sequence[Link] = (),
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A span named ``name``, current inside the block, child of ``parent`` (a
    ``traceparent``, a context, or else the current span)."""
    if not _enabled:
        ctx = None  # off: not even a parent's context is passed on
    elif isinstance(parent, str):
        ctx = context_of({TRACEPARENT: parent}) if parent else None
    else:
        ctx = parent
    with _tracer.start_as_current_span(
        name,
        context=ctx,
        kind=kind,
        links=links,
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
    ) as span:
        yield span
