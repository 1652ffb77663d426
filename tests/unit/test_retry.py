"""Bounded retries, then a dead letter that names the error's type and nothing more."""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord
from confluent_kafka import KafkaException

from leadstream.domain.ingest import Rejected
from leadstream.domain.rejects import Reason
from leadstream.lifecycle import environment_cause
from leadstream.settings import Settings
from leadstream.state.port import StoreError
from leadstream.streams import retry
from leadstream.streams.retry import (
    ATTEMPTS,
    EnvironmentFault,
    with_retries,
    with_retries_async,
)
from leadstream.worker import stored_instance_id

SECRET = "+15551234567"


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BACKOFF_SECONDS", (0.0, 0.0))


def flaky(failures: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise KeyError(SECRET)
        return "done"

    return calls, work


def test_a_transient_failure_is_retried_and_succeeds() -> None:
    calls, work = flaky(ATTEMPTS - 1)
    assert with_retries(work, raw=b"m", what="t[0]@1") == "done"  # type: ignore[arg-type]
    assert len(calls) == ATTEMPTS


def test_a_lasting_failure_is_a_dead_letter_with_the_type_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls, work = flaky(10)
    with caplog.at_level(logging.WARNING):
        dead = with_retries(work, raw=b"raw", what="t[0]@1")  # type: ignore[arg-type]
    assert len(calls) == ATTEMPTS
    assert isinstance(dead, Rejected)
    assert dead.reason is Reason.INTERNAL_ERROR and dead.raw == b"raw"
    assert dead.detail == f"KeyError on each of {ATTEMPTS} attempts; the message was skipped"
    # Logged with where it happened, never with the message (a phone, here).
    assert "KeyError at test_retry.py:" in caplog.text
    assert SECRET not in caplog.text and SECRET not in dead.detail


def test_the_async_form_retries_the_same_way() -> None:
    calls, work = flaky(ATTEMPTS - 1)

    async def attempt() -> None:
        work()  # type: ignore[operator]

    assert asyncio.run(with_retries_async(attempt, raw=b"m", what="x")) is None
    calls, work = flaky(10)
    dead = asyncio.run(with_retries_async(attempt, raw=b"m", what="x"))
    assert dead is not None and dead.reason is Reason.INTERNAL_ERROR
    assert len(calls) == ATTEMPTS


def test_cancellation_is_not_swallowed() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(with_retries_async(cancelled, raw=b"", what="x"))


def test_the_instance_id_is_made_once_and_kept_with_the_data(tmp_path: Path) -> None:
    first = stored_instance_id(tmp_path)
    assert first == stored_instance_id(tmp_path)
    assert (tmp_path / "instance-id").read_text().strip() == first
    other = tmp_path / "other"
    other.mkdir()
    assert stored_instance_id(other) != first


def test_the_group_instance_id_changes_with_the_address_only() -> None:
    base = Settings(instance_id="w1", web_port=6066)
    assert base.group_instance_id is not None and base.group_instance_id.startswith("w1-")
    assert base.group_instance_id == Settings(instance_id="w1", web_port=6066).group_instance_id
    assert base.group_instance_id != Settings(instance_id="w1", web_port=6067).group_instance_id
    assert Settings(instance_id=None).group_instance_id is None


def _message(value: bytes, topic: str = "lead-events") -> ConsumerRecord[bytes, bytes]:
    """A message as the router reads it (aiokafka's record)."""
    return ConsumerRecord(topic, 3, 41, 0, 0, None, value, None, -1, len(value), ())


def test_the_router_dead_letters_a_message_whose_parsing_always_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadstream.streams import router

    dead: list[int] = []
    reader = router.InputRouter(
        Settings(), on_rejected=lambda _t, _n: None, on_dead_letter=lambda _t: dead.append(1)
    )

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(router, "parse_lead_events_message", broken)
    parsed = reader._parse(_message(b'{"x": 1}'), now=0)
    assert parsed.events == [] and parsed.rows == 1 and dead == [1]
    (rejected,) = parsed.rejects
    assert rejected.reason is Reason.INTERNAL_ERROR and rejected.raw == b'{"x": 1}'
    monkeypatch.undo()
    good = b'{"organizationId": 1, "eventType": "x", "phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z"}'
    assert len(reader._parse(_message(good), now=1_780_000_000_000).events) == 1


def test_the_router_parses_audience_members_and_dead_letters_them_by_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadstream.streams import router

    dead: list[str] = []
    reader = router.InputRouter(
        Settings(), on_rejected=lambda _t, _n: None, on_dead_letter=dead.append
    )
    batch = (
        b'{"organizationId": 7, "campaignId": "c", "members": '
        b'[{"phoneE164": "+15551234567", "externalId": "x"}, {"phoneE164": "nope"}]}'
    )
    parsed = reader._parse(_message(batch, "audience-members"), now=0)
    assert [(m.phone, m.external_id) for m in parsed.members] == [("+15551234567", "x")]
    assert [(r.index, r.reason) for r in parsed.rejects] == [(1, Reason.INVALID_PHONE)]
    assert parsed.rows == 2

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(router, "parse_audience_members_message", broken)
    parsed = reader._parse(_message(batch, "audience-members"), now=0)
    assert dead == ["audience-members"]
    assert [r.reason for r in parsed.rejects] == [Reason.INTERNAL_ERROR]


ENVIRONMENT_FAULTS = [
    StoreError(
        "the state store failed to write: IO error: While appending to file: File too large"
    ),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EFBIG, "File too large"),
    OSError(errno.EROFS, "Read-only file system"),
    OSError(errno.EIO, "Input/output error"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    TimeoutError(),
    KafkaException("_MSG_TIMED_OUT"),
    KafkaTimeoutError(),
]


def failing_with(exc: BaseException) -> tuple[list[int], object]:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        raise exc

    return calls, work


@pytest.mark.parametrize("exc", ENVIRONMENT_FAULTS, ids=lambda e: type(e).__name__)
def test_an_environment_fault_is_never_retried_into_a_dead_letter(exc: BaseException) -> None:
    """The disk, the store or Kafka failing is not the message's fault: raised at once as
    EnvironmentFault (the caller stops), neither retried nor turned into a reject."""
    assert environment_cause(exc) is not None
    calls, work = failing_with(exc)
    with pytest.raises(EnvironmentFault) as raised:
        with_retries(work, raw=b"m", what="t[0]@1")  # type: ignore[arg-type]
    assert len(calls) == 1 and raised.value.__cause__ is exc
    assert str(raised.value).startswith("t[0]@1: ")

    calls, work = failing_with(exc)

    async def attempt() -> None:
        work()  # type: ignore[operator]

    with pytest.raises(EnvironmentFault):
        asyncio.run(with_retries_async(attempt, raw=b"m", what="t[0]@1"))
    assert len(calls) == 1


@pytest.mark.parametrize(
    "exc",
    [
        # What a message can cause: ZoneInfo("America") raised IsADirectoryError once.
        IsADirectoryError(errno.EISDIR, "Is a directory"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
        ValueError("bad"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_a_message_can_cause_is_still_retried_then_dead_lettered(
    exc: BaseException,
) -> None:
    assert environment_cause(exc) is None
    calls, work = failing_with(exc)
    dead = with_retries(work, raw=b"m", what="t[0]@1")  # type: ignore[arg-type]
    assert isinstance(dead, Rejected) and dead.reason is Reason.INTERNAL_ERROR
    assert len(calls) == ATTEMPTS
