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
    """A send's compliance controls and audience conditions, as `trigger` and `preview`
    take them."""
    command = click.option(
        "--conditions",
        default=None,
        help="The send's conditions tree: a JSON file, or the JSON itself, e.g."
        ' \'{"any": [{"event": "registered"}, {"event": "ad_click", "within": {"minutes":'
        " 1440}}]}'.",
    )(command)
    command = click.option(
        "--holdout",
        default=None,
        help="PERCENT[:SALT]: hold out PERCENT (0 to 50) of the leads, the same ones every"
        " send (a SALT draws another group).",
    )(command)
    command = click.option(
        "--split",
        "splits",
        multiple=True,
        help="NAME=PERCENT: one split of the recipients (repeat; the percents add up to 100);"
        " each recipient carries its split's name as variant.",
    )(command)
    command = click.option(
        "--quiet-hours",
        default=None,
        help="HH:MM-HH:MM[@TIME_ZONE], us-tcpa, or both joined by +: no message while the"
        " lead's local time is in it, e.g. 21:00-08:00 (the zone decides for numbers with"
        " several zones); us-tcpa: 08:00-21:00 local and the state rules.",
    )(command)
    return click.option(
        "--frequency-cap",
        default=None,
        help="MAX_SENDS/HOURS: skip leads that received MAX_SENDS sends of the organization"
        " scheduled in the HOURS before this one, e.g. 1/24.",
    )(command)
