"""Worker-to-worker requests never carry a tenant's credential. A member of the group that
advertises a foreign URL (a small server run by this test, which records what it receives
and answers a redirect) is asked for its preview share signed with the cluster's own
secret, addressed to that URL: the foreign server sees no API key, no tenant signature and
no tenant key id; the redirect is not followed; the preview is a 503; and the request it
captured, replayed onto any route, method, body or worker, is a 401."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import new_stack
from tests.support.routes import operations, request_for
from tests.support.signing import signed_request
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG = "42"
PREVIEW = "/api/v1/sends/preview"


class Foreign:
    """An HTTP server that records every request and answers each with a redirect to
    itself (``/followed``), which a worker must never ask."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                seen.append(
                    {
                        "method": "POST",
                        "target": self.path,
                        "headers": dict(self.headers.items()),
                        "body": self.rfile.read(length),
                    }
                )
                self.send_response(307)
                self.send_header("Location", "/followed")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def foreign() -> Iterator[Foreign]:
    server = Foreign()
    try:
        yield server
    finally:
        server.close()


def held_partitions(worker: WorkerProcess) -> list[int]:
    ready = httpx.get(worker.url + "/readyz", timeout=10)
    return list(ready.json()["partitions"]) if ready.status_code == 200 else []


def test_a_member_advertising_a_foreign_url_gets_no_tenant_credential(
    kafka_bootstrap: str, tmp_path: Path, foreign: Foreign
) -> None:
    stack = new_stack(kafka_bootstrap, tmp_path)
    try:
        a = stack.worker(name="a", data_dir=tmp_path / "a")
        # b advertises the foreign server's URL, and has no cluster secret of its own.
        b = stack.worker(
            name="b",
            data_dir=tmp_path / "b",
            env={"LEADSTREAM_ADVERTISED_URL": foreign.url, "LEADSTREAM_CLUSTER_SECRET": None},
        )
        deadline = time.monotonic() + 120
        while not (held_partitions(a) and held_partitions(b)):
            assert time.monotonic() < deadline, "the two workers never shared the partitions"
            time.sleep(0.5)
        api_key = stack.api_key(ORG)
        key_id, secret = stack.signing_key(ORG)
        body = msgspec.json.encode({"organizationId": ORG, "campaignId": "c", "sample": 3})
        json_type = {"Content-Type": "application/json"}

        bearer = httpx.post(
            a.url + PREVIEW,
            content=body,
            headers={**json_type, "Authorization": f"Bearer {api_key}"},
            timeout=60,
        )
        tenant = signed_request("POST", a.url + PREVIEW, key_id, secret, content=body)
        tenant.headers.update(json_type)
        with httpx.Client(timeout=60) as client:
            signed = client.send(tenant)
        for answer in (bearer, signed):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "not_ready"

        assert len(foreign.seen) == 2, foreign.seen
        assert all(seen["target"] != "/followed" for seen in foreign.seen), (
            "a redirect was followed"
        )
        tenant_signature = tenant.headers["X-Leadstream-Signature"]
        for seen in foreign.seen:
            headers = {k.lower(): v for k, v in seen["headers"].items()}
            assert "authorization" not in headers
            assert api_key not in str(headers)
            assert headers["x-leadstream-key-id"] == "cluster"
            assert headers["x-leadstream-signature"] != tenant_signature
            assert key_id not in str(headers) and secret not in str(headers)
            assert seen["target"].startswith(PREVIEW + "?partitions=")
            assert seen["body"] == body

        # b, asked itself, needs a's share and has no secret to ask with.
        alone = httpx.post(
            b.url + PREVIEW,
            content=body,
            headers={**json_type, "Authorization": f"Bearer {api_key}"},
            timeout=60,
        )
        assert alone.status_code == 503, alone.text
        assert alone.json()["error"]["code"] == "no_cluster_secret"
        assert "LEADSTREAM_CLUSTER_SECRET" in alone.json()["error"]["message"]

        replay_everywhere(a, b, foreign.seen[0])
    finally:
        stack.close()


def replay_everywhere(a: WorkerProcess, b: WorkerProcess, captured: dict[str, Any]) -> None:
    """The captured cluster request's credential, replayed: as it is onto a real worker
    (it was addressed to the foreign URL), onto every route and method of the API, with
    another body, and addressed to a's own URL instead: always a 401."""
    credential = {
        k: v
        for k, v in captured["headers"].items()
        if k.lower() in ("x-leadstream-key-id", "x-leadstream-timestamp", "x-leadstream-signature")
    }
    json_type = {"Content-Type": "application/json"}

    def send(method: str, url: str, content: bytes = b"", **headers: str) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            request = client.build_request(
                method, url, content=content, headers={**headers, **credential}
            )
            return client.send(request)

    target, body = captured["target"], captured["body"]
    for worker in (a, b):
        exact = send("POST", worker.url + target, body, **json_type)
        assert exact.status_code == 401, (worker.url, exact.text)
    own = target.split("&to=")[0] + "&to=" + httpx.QueryParams({"to": a.url})["to"]
    readdressed = send("POST", a.url + own, body, **json_type)
    assert readdressed.status_code == 401, readdressed.text
    other_body = body.replace(b'"sample":3', b'"sample":4')
    assert send("POST", a.url + target, other_body, **json_type).status_code == 401
    document = httpx.get(a.url + "/openapi.json", timeout=10).json()
    for template, method, op in operations(document):
        if not op["security"]:
            continue
        path, kwargs = request_for(template, op, ORG)
        query = httpx.QueryParams(kwargs.get("params") or {})
        url = a.url + path + (f"?{query}" if query else "")
        answer = send(method.upper(), url, kwargs.get("content", b""), **kwargs.get("headers", {}))
        assert answer.status_code == 401, (method, template, answer.text)
