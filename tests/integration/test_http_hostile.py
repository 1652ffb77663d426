"""Hostile bodies on every POST endpoint of a live worker: each answer is a JSON 4xx or a
success (never a 5xx), health checks keep answering while the worst are processed, and the
worker's memory stays bounded."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import new_stack
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG = "42"
ENDPOINTS = [
    ("/api/v1/webhooks/lead-events", "application/json"),
    ("/api/v1/webhooks/campaigns/audience-filter", "application/json"),
    ("/api/v1/campaigns/hostile/audience", "application/json"),
    ("/api/v1/campaigns/hostile/audience", "application/x-ndjson"),
    ("/api/v1/campaigns/hostile/audience", "text/csv"),
    ("/api/v1/sends/preview", "application/json"),
]


def deep(depth: int, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    return prefix + b"[" * depth + b"]" * depth + suffix


def tree(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice([None, True, 10**40, -1.5e300, "x" * rng.randint(0, 500), "\u2028\x00"])
    if rng.random() < 0.5:
        return [tree(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    keys = ["organizationId", "events", "members", "leads", "phoneE164", "mode", "k"]
    return {rng.choice(keys): tree(rng, depth - 1) for _ in range(rng.randint(0, 4))}


def hostile_bodies(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    yield "deep-100k", deep(100_000)
    yield "members-deep-20k", deep(20_000, b'{"members": [', b"]}")
    yield "members-deep-100k", deep(100_000, b'{"members": [', b"]}")
    yield "events-deep-5k", deep(5_000, b'{"organizationId": 42, "events": [', b"]}")
    yield (
        "int-5000-digits",
        b'{"organizationId": 42, "events": [{"phoneE164": 1' + b"0" * 5000 + b"}]}",
    )
    yield "members-int-5000", b'[{"phoneE164": 1' + b"0" * 5000 + b"}]"
    yield "1e400", b'{"organizationId": 42, "campaignId": 1e400, "members": [{"x": 1e400}]}'
    yield "nan", b'{"organizationId": NaN, "events": [NaN]}'
    yield "not-utf8", b'{"organizationId": "\xff", "events": ["\xed\xa0\x80"]}'
    yield "empty", b""
    yield "null", b"null"
    yield (
        "long-string",
        b'{"organizationId": 42, "events": [{"phoneE164": "' + b"9" * 2_000_000 + b'"}]}',
    )
    yield "csv-long-field", b'phoneE164,externalId\n"' + b"x" * 1_000_000 + b'",y\n'
    yield (
        "wrong-types",
        msgspec.json.encode(
            {"organizationId": [42], "events": {"a": 1}, "members": 5, "leads": "x", "mode": 1}
        ),
    )
    for i in range(8):
        yield f"bytes-{i}", bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000)))
    for i in range(8):
        yield f"tree-{i}", msgspec.json.encode(tree(rng, rng.randint(1, 10)))


# The worst for memory: a 15 MB batch of empty objects, decoded whole before its size
# (5,000,000 rows > 50,000) can be refused.
WORST = b'{"organizationId": 42, "events": [' + b",".join([b"{}"] * 5_000_000) + b"]}"


@pytest.fixture(scope="module")
def served(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, WorkerProcess]]:
    stack = new_stack(kafka_bootstrap, tmp_path_factory.mktemp("hostile"))
    try:
        yield stack, stack.worker()
    finally:
        stack.close()


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


def post(worker: WorkerProcess, key: str, path: str, media: str, body: bytes) -> httpx.Response:
    return httpx.post(
        worker.url + path,
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": media},
        timeout=120,
    )


def assert_answered(answer: httpx.Response, what: str) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    document = answer.json()  # every answer is JSON
    if answer.status_code >= 400:
        assert document["error"]["code"] and document["error"]["message"], what


def test_every_endpoint_answers_every_hostile_body_with_json_and_no_5xx(served) -> None:
    stack, worker = served
    key = stack.api_key(ORG)
    statuses: dict[int, int] = {}
    for name, body in hostile_bodies(random.Random(7)):
        for path, media in ENDPOINTS:
            answer = post(worker, key, path, media, body)
            assert_answered(answer, f"{name} -> {path} ({media})")
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    print("statuses", statuses)
    assert worker.alive()


def test_health_answers_while_the_worst_bodies_are_processed_and_memory_is_bounded(
    served,
) -> None:
    stack, worker = served
    assert worker.proc is not None
    key = stack.api_key(ORG)
    before = rss_mb(worker.proc.pid, "VmRSS")
    answers: list[httpx.Response] = []

    def hostile() -> None:
        answers.append(post(worker, key, "/api/v1/webhooks/lead-events", "application/json", WORST))
        answers.append(
            post(
                worker,
                key,
                "/api/v1/campaigns/hostile/audience",
                "application/json",
                deep(100_000, b'{"members": [', b"]}"),
            )
        )

    sender = threading.Thread(target=hostile)
    sender.start()
    health_waits = []
    while sender.is_alive():
        started = time.monotonic()
        # A stalled event loop shows here as a timeout (the bound is far above any
        # scheduling delay; a frozen loop was ~29 s before).
        assert httpx.get(worker.url + "/healthz", timeout=10).status_code == 200
        health_waits.append(time.monotonic() - started)
        time.sleep(0.1)
    sender.join()
    assert [a.status_code for a in answers] == [413, 400], [a.text[:200] for a in answers]
    assert answers[0].json()["error"]["code"] == "batch_too_large"
    peak = rss_mb(worker.proc.pid, "VmHWM")
    print(
        f"worker RSS {before:.0f} MB before, peak {peak:.0f} MB; /healthz answered "
        f"{len(health_waits)} times meanwhile, slowest {max(health_waits, default=0):.2f} s"
    )
    assert peak - before < 1_000, f"the worst body took the worker from {before} to {peak} MB"
    assert worker.alive()


def test_a_body_over_the_json_bound_is_413_before_it_is_read_whole(served) -> None:
    stack, worker = served
    key = stack.api_key(ORG)
    body = b'{"organizationId": 42, "events": [], "pad": "' + b"x" * (17 << 20) + b'"}'
    for path in ("/api/v1/webhooks/lead-events", "/api/v1/webhooks/campaigns/audience-filter"):
        answer = post(worker, key, path, "application/json", body)
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"
