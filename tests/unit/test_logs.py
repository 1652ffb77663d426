"""leadstream.logs: the JSON and text lines, their fields, and the phone scrub."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from leadstream.logs import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_fields,
    logging_config,
    scrub,
)


def lines_of(formatter: logging.Formatter, log: Any) -> list[str]:
    """What ``log(logger)`` writes through ``formatter``, line by line."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("leadstream.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # pytest's own capture would choke on a bad call
    try:
        log(logger)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    return out.getvalue().splitlines()


def json_lines(log: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines_of(JsonFormatter(), log)]


def test_a_json_line_has_time_level_logger_message_and_the_send_it_is_about() -> None:
    (line,) = json_lines(
        lambda log: log.info(
            "send %s:%s summary: %d recipients",
            "42",
            "day2",
            7,
            extra=log_fields(organization="42", send_id="day2"),
        )
    )
    assert line.keys() == {"time", "level", "logger", "message", "organization", "send_id"}
    assert line["level"] == "INFO"
    assert line["logger"] == "leadstream.test_logs"
    assert line["message"] == "send 42:day2 summary: 7 recipients"
    assert (line["organization"], line["send_id"]) == ("42", "day2")
    assert line["time"].endswith("Z")
    assert datetime.fromisoformat(line["time"]).utcoffset() == UTC.utcoffset(None)


def test_a_json_line_without_extras_has_no_organization_or_send() -> None:
    (line,) = json_lines(lambda log: log.warning("plain"))
    assert line.keys() == {"time", "level", "logger", "message"}
    assert line["level"] == "WARNING"
    (only_org,) = json_lines(lambda log: log.info("x", extra=log_fields(organization="7")))
    assert only_org["organization"] == "7" and "send_id" not in only_org


def test_an_exception_is_one_string_field_on_one_line_and_its_phones_are_scrubbed() -> None:
    def log(logger: logging.Logger) -> None:
        try:
            raise ValueError("no lead +15551234567 in\nthis partition")
        except ValueError:
            logger.exception("apply failed for %s", "+15557654321")

    raw = lines_of(JsonFormatter(), log)
    assert len(raw) == 1
    line = json.loads(raw[0])
    assert line["level"] == "ERROR"
    assert line["message"] == "apply failed for <phone>"
    assert isinstance(line["exception"], str)
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: no lead <phone> in\nthis partition" in line["exception"]
    assert "5551234567" not in raw[0] and "5557654321" not in raw[0]


def test_a_call_whose_arguments_do_not_fit_still_gives_a_json_line() -> None:
    (line,) = json_lines(lambda log: log.info("%d of %d", "x"))
    assert line["message"].startswith("%d of %d")


def test_a_text_line_is_the_format_of_before_with_phones_scrubbed() -> None:
    (line,) = lines_of(TextFormatter(), lambda log: log.info("lead %s", "+15551234567"))
    date, clock, level, rest = line.split(" ", 3)
    datetime.strptime(f"{date} {clock}", "%Y-%m-%d %H:%M:%S,%f")
    assert (level, rest) == ("INFO", "leadstream.test_logs: lead <phone>")


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("+15551234567", "<phone>"),
        ("lead +442079460958 opted out", "lead <phone> opted out"),
        ("raw '+1 (555) 123-4567' and +1-555-123-4568", "raw '<phone>' and <phone>"),
        ("GET /api/v1/leads/42/%2B15551234567", "GET /api/v1/leads/42/<phone>"),
        ("two: +15551234567,+15551234568", "two: <phone>,<phone>"),
    ],
)
def test_scrub_masks_what_looks_like_an_e164_number(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "lead-events[3]@1780000000000: 2 of 50000 rows rejected",
        "scheduledFor 2026-05-12T18:00:00+02:00",
        "+12 rows, +5 s",
        "send 42:day2 partition 7",
    ],
)
def test_scrub_keeps_what_is_not_a_phone(text: str) -> None:
    assert scrub(text) == text


def test_logging_config_refuses_an_unknown_level_or_format() -> None:
    with pytest.raises(ValueError, match="log level"):
        logging_config("verbose", "json")
    with pytest.raises(ValueError, match="log format"):
        logging_config("info", "yaml")
    assert logging_config("DEBUG", "text")["root"]["level"] == "DEBUG"


def test_configure_logging_json_takes_warnings_and_uncaught_exceptions(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    logging.getLogger("leadstream.test_logs").debug("below the level")
    logging.getLogger("faust.worker").info("from faust")
    warnings.warn("deprecated +15551234567", UserWarning, stacklevel=1)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        sys.excepthook(RuntimeError, exc, exc.__traceback__)
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("faust.worker", "INFO"),
        ("py.warnings", "WARNING"),
        ("leadstream.logs", "CRITICAL"),
    ]
    assert "<phone>" in lines[1]["message"] and "5551234567" not in err
    assert "RuntimeError: boom" in lines[2]["exception"]


def test_mode_takes_the_config_as_faust_worker_would(restore_logging: None) -> None:
    """faust's Worker hands ``logging_config`` to mode's setup_logging: the root logger
    then writes through our formatter, not mode's colored one."""
    from mode.utils.logging import setup_logging

    setup_logging(loglevel="info", logging_config=logging_config("info", "json"))
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)
    assert logging.getLogger().level == logging.INFO


def test_the_cli_still_helps_when_a_setting_is_bad(restore_logging: None) -> None:
    from leadstream.cli.main import main

    result = CliRunner().invoke(
        main, ["worker", "--help"], env={"LEADSTREAM_PARTITIONS": "many"}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert "invalid LEADSTREAM_PARTITIONS; logging as text at INFO" in result.output


def test_the_cli_logs_json_when_asked(restore_logging: None) -> None:
    from leadstream.cli.main import main

    result = CliRunner().invoke(
        main, ["keys", "--help"], env={"LEADSTREAM_LOG_FORMAT": "json"}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)
