"""A trace collector for tests: an HTTP server that takes what an OTLP/HTTP exporter
posts to ``/v1/traces`` (protobuf) and keeps the spans, decoded."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = ["Collected", "Collector", "waterfall_svg"]


@dataclass(frozen=True)
class Collected:
    """One span as exported: ids in hex, parent empty for a root, attributes as values."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    service: str
    start_ns: int = 0
    end_ns: int = 0

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@dataclass
class Collector:
    """``endpoint`` is what ``OTEL_EXPORTER_OTLP_ENDPOINT`` should say."""

    spans: list[Collected] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Collector:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector._take(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def _take(self, request: ExportTraceServiceRequest) -> None:
        got = []
        for resource_spans in request.resource_spans:
            attrs = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    got.append(
                        Collected(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                            service=str(attrs.get("service.name", "")),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                        )
                    )
        with self._lock:
            self.spans.extend(got)

    def wait_for(
        self, found: Callable[[list[Collected]], bool], timeout: float = 60.0
    ) -> list[Collected]:
        """Every span so far, once ``found`` says they are enough."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({s.name for s in spans})
                raise TimeoutError(f"the spans never sufficed; {len(spans)} came: {names}")
            time.sleep(0.2)


def waterfall_svg(spans: list[Collected], title: str) -> str:
    """One trace drawn as a trace viewer does: a row per span, children under their
    parent, each bar from its start to its end on a shared time axis."""
    by_parent: dict[str, list[Collected]] = {}
    ids = {s.span_id for s in spans}
    for s in sorted(spans, key=lambda s: s.start_ns):
        by_parent.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
    rows: list[tuple[int, Collected]] = []

    def walk(parent: str, depth: int) -> None:
        for child in by_parent.get(parent, []):
            rows.append((depth, child))
            walk(child.span_id, depth + 1)

    walk("", 0)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    width, label_w, row_h, top = 1000, 430, 22, 44
    scale = (width - label_w - 20) / max(1, end - start)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{top + row_h * len(rows) + 30}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{_escape(title)}</text>',
        f'<text x="{label_w}" y="36" fill="#555">0 ms</text>',
        f'<text x="{width - 20}" y="36" fill="#555" text-anchor="end">'
        f"{(end - start) / 1e6:.1f} ms</text>",
    ]
    for i, (depth, s) in enumerate(rows):
        y = top + i * row_h
        detail = ", ".join(
            f"{k.removeprefix('leadstream.')}={v}"
            for k, v in s.attributes.items()
            if k in ("leadstream.partition", "leadstream.send_id", "http.response.status_code")
        )
        label = f"{s.name}" + (f" ({detail})" if detail else "")
        x = label_w + (s.start_ns - start) * scale
        w = max(2.0, (s.end_ns - s.start_ns) * scale)
        fill = "#4a7fd4" if s.kind != 2 else "#d4874a"
        out.append(f'<text x="{10 + depth * 14}" y="{y + 15}">{_escape(label)}</text>')
        out.append(
            f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{fill}"/>'
        )
    out.append(
        f'<text x="10" y="{top + row_h * len(rows) + 20}" fill="#555">one trace id: '
        f"{spans[0].trace_id}; links not drawn</text></svg>"
    )
    return "\n".join(out)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
