"""``leadstream``: the command group, and the command that reads the code (``schemas``);
the others live beside it, one module per group of commands."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from leadstream.cli.api import erase, explain, lead, preview
from leadstream.cli.keys import keys
from leadstream.cli.run import kafka, worker
from leadstream.cli.topics import publish, recipients, trigger
from leadstream.logs import configure_logging
from leadstream.settings import Settings
from leadstream.wire.schemas import check_schemas, write_schemas

__all__ = ["main"]

logger = logging.getLogger(__name__)


@click.group()
@click.version_option(package_name="leadstream")
def main() -> None:
    """leadstream: lead-event filtering for messaging campaigns, on Kafka."""
    _configure_logging()


def _configure_logging() -> None:
    """Logging as LEADSTREAM_LOG_LEVEL and LEADSTREAM_LOG_FORMAT say. A bad LEADSTREAM_*
    variable must not stop ``--help``: logging is then text at INFO, this says so, and a
    command that needs the settings reports the variable itself."""
    try:
        settings = Settings()
        configure_logging(settings.log_level, settings.log_format)
    except ValueError as err:  # pydantic's ValidationError is one
        configure_logging("info", "text")
        if isinstance(err, ValidationError):
            names = ", ".join(f"LEADSTREAM_{e['loc'][0]}".upper() for e in err.errors() if e["loc"])
            problem = f"invalid {names or 'settings'}"
        else:
            problem = str(err)
        logger.warning("%s; logging as text at INFO", problem)


for command in (worker, kafka, publish, trigger, recipients, lead, preview, explain, erase, keys):
    main.add_command(command)


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
)
@click.option(
    "--check", is_flag=True, help="Exit 1 if the files differ from the models instead of writing."
)
def schemas(out: Path, check: bool) -> None:
    """Write the JSON Schema of every topic value (generated from the pydantic models)."""
    if check:
        drift = check_schemas(out)
        for name in drift:
            click.echo(f"out of date: {out / name}", err=True)
        sys.exit(1 if drift else 0)
    for path in write_schemas(out):
        click.echo(str(path))
