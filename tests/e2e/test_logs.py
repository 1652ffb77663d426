"""A worker run with LEADSTREAM_LOG_FORMAT=json writes nothing but JSON objects, one a
line, on stdout and stderr (its own lines, faust's, and the lead-events router child's),
and no phone number of what it was given."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

ORG = 42
PHONES = ["+15550107001", "+15550107002", "+15550107003"]
BAD_PHONE = "+1555010700"  # one digit short: invalid_phone


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_json_worker_logs_json_lines_only_and_no_phone(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(log_format="json")
    worker = stack.worker()
    now = datetime.now(UTC)
    stack.members(ORG, "logs", [{"phoneE164": p} for p in PHONES])
    row = {"organizationId": ORG, "eventType": "webinar_attended", "occurredAt": iso(now)}
    stack.send_events([{**row, "phoneE164": PHONES[0]}, {**row, "phoneE164": BAD_PHONE}])
    key = stack.api_key(ORG)
    answer = httpx.post(
        f"{worker.url}/api/v1/webhooks/lead-events",
        content=msgspec.json.encode(
            {
                "organizationId": ORG,
                "eventType": "purchase",
                "events": [
                    {"phoneE164": PHONES[1], "occurredAt": iso(now)},
                    {"phoneE164": BAD_PHONE, "occurredAt": iso(now)},
                ],
            }
        ),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["rejected"] == 1, answer.text
    stack.wait_caught_up()
    assert [r["reason"] for r in stack.rejects(expect=1)] == ["invalid_phone"]
    read = httpx.get(
        f"{worker.url}/api/v1/leads/{ORG}/{quote(PHONES[0], safe='')}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert read.status_code == 200, read.text
    stack.trigger(
        organizationId=ORG,
        campaignId="logs",
        sendId="logs-1",
        scheduledFor=iso(now - timedelta(minutes=1)),
    )
    summary = stack.send_list("logs-1", ORG).summary
    assert summary is not None and summary["recipientCount"] == len(PHONES)
    worker.stop()  # its shutdown is logged too

    output = worker.log_path.read_text()
    lines: list[dict[str, Any]] = []
    for number, text in enumerate(output.splitlines(), 1):
        try:
            line = json.loads(text)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {text!r}")
        assert isinstance(line, dict), f"line {number} is not a JSON object: {text!r}"
        assert {"time", "level", "logger", "message"} <= line.keys(), text
        lines.append(line)
    for phone in [*PHONES, BAD_PHONE]:
        digits = phone.lstrip("+")
        assert digits not in output and digits[1:] not in output, f"{phone} is in the log"

    loggers = {line["logger"] for line in lines}
    assert "leadstream.streams.router" in loggers, sorted(loggers)  # the child process
    assert any(name.split(".")[0] in {"faust", "mode"} for name in loggers), sorted(loggers)
    about_the_send = [
        line
        for line in lines
        if line.get("send_id") == "logs-1" and line.get("organization") == str(ORG)
    ]
    assert any(
        line["logger"] == "leadstream.materialize.materializer" and "summary" in line["message"]
        for line in about_the_send
    ), about_the_send
