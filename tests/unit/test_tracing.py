"""leadstream.tracing: which variables turn it on, how a traceparent is read from HTTP and
Kafka headers and written back, and that spans are children and links of what they
should be (the SDK's in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from leadstream import tracing
from leadstream.wire.records import reject_headers, send_headers

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID, SPAN_ID = int("0af7651916cd43dd8448eb211c80319c", 16), int("b7ad6b7169203331", 16)

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory: the global provider can be set once a process, so the
    product's proxy tracer is pointed at this one for the test."""
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(tracing, "_tracer", _provider.get_tracer("leadstream"))
    _exporter.clear()
    yield _exporter
    _exporter.clear()


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
    ],
)
def test_the_standard_variables_decide_and_it_is_off_by_default(env, wanted) -> None:
    assert tracing.exporters(env) == wanted


def test_an_exporter_it_does_not_have_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="jaeger"):
        tracing.exporters({"OTEL_TRACES_EXPORTER": "jaeger"})


def test_off_nothing_is_recorded_and_no_header_is_written() -> None:
    assert not tracing.enabled()
    with tracing.start("apply", parent=PARENT) as span:
        assert not span.is_recording()
        assert tracing.kafka_headers() == []
        assert tracing.traceparent() == ""


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", PARENT.encode())],
        [(b"traceparent", PARENT.encode()), ("other", b"x")],
        {"traceparent": PARENT.encode()},
        [("traceparent", PARENT)],
    ],
)
def test_kafka_headers_of_every_shape_give_the_parent(headers) -> None:
    ctx = tracing.context_of(tracing.headers_of(headers))
    assert ctx is not None
    span_context = trace.get_current_span(ctx).get_span_context()
    assert (span_context.trace_id, span_context.span_id) == (TRACE_ID, SPAN_ID)


@pytest.mark.parametrize(
    "headers",
    [None, [], [("other", b"x")], [("traceparent", b"garbage")], [("traceparent", b"\xff")]],
)
def test_no_valid_traceparent_is_no_parent(headers) -> None:
    assert tracing.context_of(tracing.headers_of(headers)) is None


def test_a_span_is_the_child_of_the_traceparent_and_its_headers_carry_it(spans) -> None:
    with tracing.start("route", parent=PARENT, attributes={tracing.ORGANIZATION: "42"}) as span:
        written = dict(tracing.kafka_headers())
        mine = span.get_span_context()
    [finished] = spans.get_finished_spans()
    assert finished.parent is not None
    assert (finished.parent.trace_id, finished.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert finished.context.trace_id == TRACE_ID
    assert finished.attributes == {tracing.ORGANIZATION: "42"}
    assert written["traceparent"] == f"00-{TRACE_ID:032x}-{mine.span_id:016x}-01".encode()
    # What it wrote is read back as this span, the parent of the next step.
    ctx = tracing.context_of(tracing.headers_of(list(written.items())))
    assert ctx is not None
    assert trace.get_current_span(ctx).get_span_context().span_id == mine.span_id


def test_a_batch_links_to_its_traced_messages(spans) -> None:
    others = [PARENT, "00-11111111111111111111111111111111-2222222222222222-01"]
    contexts = [tracing.context_of({"traceparent": p}) for p in others]
    with tracing.start("route batch", links=tracing.links_of([c for c in contexts if c])):
        pass
    [batch] = spans.get_finished_spans()
    assert batch.parent is None
    assert [(link.context.trace_id, link.context.span_id) for link in batch.links] == [
        (TRACE_ID, SPAN_ID),
        (int("1" * 32, 16), int("2" * 16, 16)),
    ]


def test_none_attributes_are_left_out(spans) -> None:
    with tracing.start("apply", attributes={tracing.ORGANIZATION: None, tracing.PARTITION: 3}):
        pass
    [span] = spans.get_finished_spans()
    assert span.attributes == {tracing.PARTITION: 3}


def test_output_and_reject_headers_name_what_a_dispatcher_routes_on() -> None:
    assert send_headers("42", "s-1", "recipients", 3) == [
        ("organizationId", b"42"),
        ("sendId", b"s-1"),
        ("type", b"recipients"),
        ("chunk", b"3"),
    ]
    assert dict(send_headers("42", "s-1", "summary")) == {
        "organizationId": b"42",
        "sendId": b"s-1",
        "type": b"summary",
    }
    assert reject_headers("lead-events", "invalid_phone") == [
        ("sourceTopic", b"lead-events"),
        ("reason", b"invalid_phone"),
    ]


def test_a_request_to_another_worker_carries_the_current_span(spans) -> None:
    assert tracing.http_headers() == {}
    with tracing.start("HTTP POST /api/v1/sends/preview", parent=PARENT) as span:
        carried = tracing.http_headers()
    mine = span.get_span_context()
    assert carried == {"traceparent": f"00-{TRACE_ID:032x}-{mine.span_id:016x}-01"}
