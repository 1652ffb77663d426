"""A signature authorizes one request: every operation /openapi.json describes is called
once, correctly signed v1, and each one's credential headers are then replayed unchanged
onto every other route and method, onto the same route for another organization, with
another query and with another body: every replay is a 401. A credential of one
organization on another's route is a 403, answered from the headers before the body."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from leadstream.domain.auth import CONTENT_SHA256_HEADER
from tests.conftest import new_stack
from tests.support.routes import operations, request_for
from tests.support.signing import credential_headers, signed_request
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

OWNER, OTHER = "42", "7"


@pytest.fixture(scope="module")
def served(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, WorkerProcess, dict[str, Any]]]:
    stack = new_stack(kafka_bootstrap, tmp_path_factory.mktemp("signatures"))
    try:
        stack.signing_key(OWNER), stack.signing_key(OTHER), stack.api_key(OWNER)
        worker = stack.worker()
        document = httpx.get(f"{worker.url}/openapi.json", timeout=10).json()
        yield stack, worker, document
    finally:
        stack.close()


@dataclass(frozen=True)
class Call:
    """One operation's request, as the walk makes it."""

    template: str
    method: str
    path: str
    kwargs: dict[str, Any]

    def request(self, worker: WorkerProcess, **changes: Any) -> httpx.Request:
        kwargs = {**self.kwargs, **changes}
        return httpx.Request(
            self.method.upper(),
            worker.url + kwargs.pop("path", self.path),
            params=kwargs.get("params"),
            content=kwargs.get("content", b""),
            headers=kwargs.get("headers"),
        )


def secured_calls(document: dict[str, Any], org: str) -> list[Call]:
    calls = []
    for template, method, op in operations(document):
        if op["security"]:
            path, kwargs = request_for(template, op, org)
            calls.append(Call(template, method, path, kwargs))
    return calls


def send(request: httpx.Request, credential: dict[str, str]) -> httpx.Response:
    for name in (
        "X-Leadstream-Key-Id",
        "X-Leadstream-Timestamp",
        "X-Leadstream-Signature",
        CONTENT_SHA256_HEADER,
    ):
        request.headers.pop(name, None)
    request.headers.update(credential)
    with httpx.Client(timeout=60) as client:
        return client.send(request)


def another_value(call: Call) -> str:
    """The call's path with its first parameter other than the organization changed."""
    template, path = call.template.split("/"), call.path.split("/")
    for i, segment in enumerate(template):
        if segment.startswith("{") and segment != "{organizationId}":
            path[i] += "0"
            return "/".join(path)
    raise AssertionError(f"{call.template} has no parameter besides the organization")


def other_org(call: Call, worker: WorkerProcess) -> httpx.Request:
    """The same operation for organization OTHER (in its path, query or body)."""
    changes: dict[str, Any] = {}
    if f"/{OWNER}/" in call.path:
        changes["path"] = call.path.replace(f"/{OWNER}/", f"/{OTHER}/", 1)
    params = call.kwargs.get("params") or {}
    if "organizationId" in params:
        changes["params"] = {**params, "organizationId": OTHER}
    content = call.kwargs.get("content", b"")
    if b'"organizationId"' in content:
        doc = msgspec.json.decode(content)
        changes["content"] = msgspec.json.encode({**doc, "organizationId": OTHER})
    assert changes, f"{call.template}: names no organization"
    return call.request(worker, **changes)


def test_every_signed_request_replayed_anywhere_else_is_401(served) -> None:
    stack, worker, document = served
    key_id, secret = stack.signing_key(OWNER)
    calls = secured_calls(document, OWNER)
    assert len(calls) >= 7
    signed: list[tuple[Call, dict[str, str]]] = []
    for call in calls:
        request = call.request(worker)
        original = signed_request(
            request.method,
            str(request.url),
            key_id,
            secret,
            content=call.kwargs.get("content", b""),
            headers=call.kwargs.get("headers"),
        )
        with httpx.Client(timeout=60) as client:
            answer = client.send(original)
        assert answer.status_code not in (401, 403), (call.template, call.method, answer.text)
        signed.append((call, credential_headers(original)))

    replays = 0
    for call, credential in signed:
        where = f"{call.method} {call.template}"
        for other in calls:
            if (other.template, other.method) == (call.template, call.method):
                continue
            answer = send(other.request(worker), credential)
            assert answer.status_code == 401, (
                where,
                "->",
                other.method,
                other.template,
                answer.text,
            )
            replays += 1
        variants = {
            "another organization": other_org(call, worker),
            "another query": call.request(
                worker, params={**(call.kwargs.get("params") or {}), "x": "1"}
            ),
        }
        # The same route, another value of a path parameter other than the organization
        # (another organization is a variant of its own above).
        if any(
            seg.startswith("{") and seg != "{organizationId}" for seg in call.template.split("/")
        ):
            variants["another path"] = call.request(worker, path=another_value(call))
        if call.kwargs.get("content"):
            variants["another body"] = call.request(
                worker,
                content=call.kwargs["content"].replace(b"+1555", b"+1556")
                if b"+1555" in call.kwargs["content"]
                else call.kwargs["content"] + b" ",
            )
        for what, request in variants.items():
            answer = send(request, credential)
            assert answer.status_code == 401, (where, what, answer.text)
            assert answer.json()["error"]["code"] == "unauthorized"
            replays += 1
    print(f"{len(signed)} signed requests, {replays} replays, all 401")


def test_a_credential_of_another_organization_is_403(served) -> None:
    """Bearer and v1 credentials of OWNER, each on a request for OTHER that it signed (or
    carries) itself: a 403, never a 401 and never the data."""
    stack, worker, document = served
    key_id, secret = stack.signing_key(OWNER)
    bearer = {"Authorization": f"Bearer {stack.api_key(OWNER)}"}
    for call in secured_calls(document, OTHER):
        request = call.request(worker)
        carried = send(call.request(worker), bearer)
        assert carried.status_code == 403, (call.template, carried.text)
        mine = signed_request(
            request.method,
            str(request.url),
            key_id,
            secret,
            content=call.kwargs.get("content", b""),
            headers=call.kwargs.get("headers"),
        )
        with httpx.Client(timeout=60) as client:
            answer = client.send(mine)
        assert answer.status_code == 403, (call.method, call.template, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"


def head_only(worker: WorkerProcess, head: str) -> tuple[int, bytes]:
    """Send only a request's head (its body is declared and never sent); the answer's
    status and bytes, which must come before any byte of the body."""
    with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as sock:
        sock.sendall(head.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else 0
    return status, received


def test_credentials_are_answered_from_the_headers_before_the_body(served) -> None:
    stack, worker, _ = served
    key_id, _ = stack.signing_key(OWNER)
    api_key = stack.api_key(OWNER)
    big = f"Content-Length: {64 << 20}\r\nContent-Type: text/csv\r\n"
    host = f"Host: 127.0.0.1:{worker.port}\r\n"
    cases = [
        # No valid credential, whatever the declared body: 401 at once.
        ("POST /api/v1/webhooks/lead-events", "Authorization: Bearer x\r\n", 401),
        ("POST /api/v1/campaigns/c/audience", "Authorization: Bearer x\r\n", 401),
        (
            "POST /api/v1/campaigns/c/audience",
            f"X-Leadstream-Key-Id: sk_unknown\r\nX-Leadstream-Timestamp: 1\r\n"
            f"X-Leadstream-Signature: v1={'0' * 64}\r\n",
            401,
        ),
        (  # a known key id with a stale timestamp
            "POST /api/v1/sends/preview",
            f"X-Leadstream-Key-Id: {key_id}\r\nX-Leadstream-Timestamp: 1000\r\n"
            f"X-Leadstream-Signature: v1={'0' * 64}\r\n",
            401,
        ),
        (  # a known key id, a fresh timestamp, a wrong signature (the body's hash is a
            # header: the signature is checked before the body)
            "POST /api/v1/campaigns/c/audience",
            f"X-Leadstream-Key-Id: {key_id}\r\nX-Leadstream-Timestamp: {int(time.time())}\r\n"
            f"X-Leadstream-Signature: v1={'0' * 64}\r\n{CONTENT_SHA256_HEADER}: {'1' * 64}\r\n",
            401,
        ),
        (  # the same without the hash header (it then states an empty body)
            "POST /api/v1/sends/preview",
            f"X-Leadstream-Key-Id: {key_id}\r\nX-Leadstream-Timestamp: {int(time.time())}\r\n"
            f"X-Leadstream-Signature: v1={'0' * 64}\r\n",
            401,
        ),
        (  # a body-only signature anywhere but a webhook
            "POST /api/v1/campaigns/c/audience",
            f"X-Leadstream-Signature: sha256={'0' * 64}\r\n",
            401,
        ),
        ("POST /api/v1/campaigns/c/audience", "Authorization: Bearer caf\xe9\r\n", 401),
        # A valid key of another organization than the query names: 403 at once.
        (
            f"POST /api/v1/campaigns/c/audience?organizationId={OTHER}",
            f"Authorization: Bearer {api_key}\r\n",
            403,
        ),
    ]
    for line, credential, status in cases:
        head = f"{line} HTTP/1.1\r\n{host}{credential}{big}\r\n"
        got, raw = head_only(worker, head)
        assert got == status, (line, credential, raw[:300])
        assert b'"error"' in raw or b"Content-Length" in raw


def test_a_credential_header_that_is_not_ascii_is_401_not_500(served) -> None:
    _, worker, _ = served
    for value in (b"Bearer caf\xc3\xa9", b"Bearer \xff\xfe", b"\xe2\x80\x8b"):
        for name in (b"Authorization", b"X-Leadstream-Signature", b"X-Leadstream-Key-Id"):
            head = (
                b"GET /api/v1/leads/42/+15551234567 HTTP/1.1\r\nHost: x\r\n"
                + name
                + b": "
                + value
                + b"\r\n\r\n"
            )
            with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as sock:
                sock.sendall(head)
                answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 401 "), (name, value, answer[:200])
