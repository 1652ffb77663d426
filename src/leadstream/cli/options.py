"""What the CLI's commands share: options that show their environment variable, and the
settings built from them."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from leadstream.kafka.admin import KafkaUnavailable
from leadstream.kafka.properties import KafkaConfigError
from leadstream.settings import Settings

__all__ = [
    "controls_options",
    "event_filter_option",
    "auth_file_option",
    "bootstrap_option",
    "data_dir_option",
    "env_option",
    "exits_when_kafka_refuses",
    "prefix_option",
    "settings_from",
]

logger = logging.getLogger("leadstream")

# Exit status of a command that could not use Kafka (a supervisor restarts it; a person
# reads the one line that says why).
KAFKA_UNUSABLE = 3

# What a click decorator accepts and returns (click.decorators.FC).
_FC = TypeVar("_FC", bound=Callable[..., Any] | click.Command)


def env_option(name: str, env: str, **kwargs: Any) -> Callable[[_FC], _FC]:
    """An option read from ``env`` when not given; ``--help`` names the variable."""
    return click.option(name, envvar=env, show_envvar=True, default=None, **kwargs)


def exits_when_kafka_refuses(command: Callable[..., None]) -> Callable[..., None]:
    """A command that ends with one log line and a non-zero exit, not a traceback, when
    the Kafka configuration cannot be honoured or the cluster refuses or cannot be
    reached (the message names the cause and never a secret)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except (KafkaConfigError, KafkaUnavailable) as exc:
            logger.error("cannot use Kafka: %s", exc)  # noqa: TRY400 - the cause is the message
            sys.exit(KAFKA_UNUSABLE)

    return run


def settings_from(**overrides: Any) -> Settings:
    """The settings from the environment, with the options that were given on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


bootstrap_option = env_option(
    "--bootstrap",
    "LEADSTREAM_KAFKA_BOOTSTRAP",
    help="Kafka bootstrap servers [default: localhost:9092].",
)
data_dir_option = env_option(
    "--data-dir",
    "LEADSTREAM_DATA_DIR",
    type=click.Path(path_type=Path),
    help="Directory for RocksDB state and the local broker [default: .leadstream].",
)
prefix_option = env_option(
    "--topic-prefix", "LEADSTREAM_TOPIC_PREFIX", help="Prefix of topic names."
)
auth_file_option = env_option(
    "--auth-file",
    "LEADSTREAM_AUTH_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The auth file [default: DATA_DIR/auth.json].",
)


# A send's event filters, as `trigger` and `preview` take them.
event_filter_option = click.option(
    "--filter",
    "filters",
    multiple=True,
    help="MODE:EVENT_TYPE[:within=MINUTES][:min=COUNT][:where=KEY=VALUE], e.g."
    " exclude:webinar_attended:within=120 or include:purchase:where=plan=gold|silver."
    " Repeat to AND several.",
)


def controls_options(command: _FC) -> _FC:
    """A send's compliance controls, as `trigger` and `preview` take them."""
    command = click.option(
        "--quiet-hours",
        default=None,
        help="HH:MM-HH:MM[@TIME_ZONE]: no message while the lead's local time is in it,"
        " e.g. 21:00-08:00 (the zone decides for numbers with several zones).",
    )(command)
    return click.option(
        "--frequency-cap",
        default=None,
        help="MAX_SENDS/HOURS: skip leads that received MAX_SENDS sends of the organization"
        " scheduled in the HOURS before this one, e.g. 1/24.",
    )(command)
