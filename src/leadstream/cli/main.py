"""``leadstream``: the command group, and the commands that read the worker and the code
(``lead``, ``schemas``); the others live beside it, one module per group of commands."""

from __future__ import annotations

import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click
from pydantic import ValidationError

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


for command in (worker, kafka, publish, trigger, recipients, keys):
    main.add_command(command)


@main.command()
@click.argument("organization_id")
@click.argument("phone")
@click.option(
    "--url", default=None, help="Worker base URL [default: http://127.0.0.1:$LEADSTREAM_WEB_PORT]."
)
@click.option(
    "--api-key",
    envvar="LEADSTREAM_API_KEY",
    show_envvar=True,
    required=True,
    help="An API key of the lead's organization (leadstream keys create).",
)
def lead(organization_id: str, phone: str, url: str | None, api_key: str) -> None:
    """Show one lead's stored events (read-only, from a running worker)."""
    base = url or f"http://127.0.0.1:{Settings().web_port}"
    path = f"/api/v1/leads/{urllib.parse.quote(organization_id)}/{urllib.parse.quote(phone)}"
    request = urllib.request.Request(  # noqa: S310 - user-given URL
        base + path, headers={"Authorization": f"Bearer {api_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - user-given URL
            click.echo(json.dumps(json.load(resp), indent=2))
    except urllib.error.HTTPError as exc:
        click.echo(exc.read().decode(errors="replace"), err=True)
        sys.exit(1)


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
