"""The commands that ask a running worker over its HTTP API: ``lead``, ``preview`` and
``explain``. Each prints the worker's JSON answer; an error answer goes to stderr with exit
status 1, so that a script can tell the two apart."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from leadstream.cli.options import controls_options, event_filter_option
from leadstream.client.publish import build_trigger
from leadstream.settings import Settings

__all__ = ["erase", "explain", "lead", "preview"]

# Long enough for a preview that asks every other worker for its share (each within
# LEADSTREAM_HTTP_TIMEOUT_SECONDS, 30 by default).
_TIMEOUT_SECONDS = 60

_url_option = click.option(
    "--url", default=None, help="Worker base URL [default: http://127.0.0.1:$LEADSTREAM_WEB_PORT]."
)
_api_key_option = click.option(
    "--api-key",
    envvar="LEADSTREAM_API_KEY",
    show_envvar=True,
    required=True,
    help="An API key of the organization (leadstream keys create).",
)


def _ask_worker(
    url: str | None, path: str, api_key: str, body: Any = None, *, method: str | None = None
) -> None:
    """Print the worker's JSON answer to ``path`` (a POST of ``body`` when there is one);
    exit 1 after printing an error answer, or saying that no worker answered."""
    base = (url or f"http://127.0.0.1:{Settings().web_port}").rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(  # noqa: S310 - user-given URL
        base + path, data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as resp:  # noqa: S310
            click.echo(json.dumps(json.load(resp), indent=2))
    except urllib.error.HTTPError as exc:
        click.echo(exc.read().decode(errors="replace"), err=True)
        sys.exit(1)
    except OSError as exc:  # URLError, a refused connection, a timeout
        click.echo(f"no answer from {base}: {exc}", err=True)
        sys.exit(1)


def _segment(value: str) -> str:
    """One path segment, percent-encoded (``+`` of a phone included)."""
    return urllib.parse.quote(value, safe="")


@click.command()
@click.argument("organization_id")
@click.argument("phone")
@_url_option
@_api_key_option
def lead(organization_id: str, phone: str, url: str | None, api_key: str) -> None:
    """Show one lead's stored events (read-only, from a running worker)."""
    _ask_worker(url, f"/api/v1/leads/{_segment(organization_id)}/{_segment(phone)}", api_key)


@click.command()
@click.argument("organization_id")
@click.argument("phone")
@_url_option
@_api_key_option
def erase(organization_id: str, phone: str, url: str | None, api_key: str) -> None:
    """Erase a lead: its events, memberships, send history and index entries, everywhere
    in the state and its changelog; an opted-out lead leaves a suppression (a keyed hash,
    not the phone), so that it stays opted out if it comes back."""
    path = f"/api/v1/leads/{_segment(organization_id)}/{_segment(phone)}"
    _ask_worker(url, path, api_key, method="DELETE")


@click.command()
@click.option("--org", "organization_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option(
    "--scheduled-for",
    default=None,
    help="RFC 3339 with offset, e.g. 2026-05-12T18:00:00Z [default: now].",
)
@event_filter_option
@controls_options
@click.option(
    "--audience-filter",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='A JSON file {"mode": "include"|"exclude", "leads": [{"externalId": ...} or '
    '{"phoneE164": ...}, ...]}: the audience filter to preview with.',
)
@click.option(
    "--sample",
    default=0,
    show_default=True,
    type=click.IntRange(0, 100),
    help="How many of the recipients to list.",
)
@_url_option
@_api_key_option
def preview(
    organization_id: str,
    campaign_id: str,
    scheduled_for: str | None,
    filters: tuple[str, ...],
    quiet_hours: str | None,
    frequency_cap: str | None,
    audience_filter: Path | None,
    sample: int,
    url: str | None,
    api_key: str,
) -> None:
    """Preview a send: the counts and some recipients it would have if materialized now
    (or at --scheduled-for), from a running worker. Nothing is written."""
    try:
        body = _preview_body(
            organization_id,
            campaign_id,
            scheduled_for,
            list(filters),
            frequency_cap=frequency_cap,
            quiet_hours=quiet_hours,
        )
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint=_flag_of(str(err))) from None
    if audience_filter is not None:
        body["audienceFilter"] = _read_json(audience_filter)
    body["sample"] = sample
    _ask_worker(url, "/api/v1/sends/preview", api_key, body)


def _flag_of(error: str) -> str:
    """The option a flag-parsing error is about."""
    if "frequency cap" in error:
        return "--frequency-cap"
    if "quiet hours" in error:
        return "--quiet-hours"
    return "--filter"


def _preview_body(
    organization_id: str,
    campaign_id: str,
    scheduled_for: str | None,
    filters: list[str],
    *,
    frequency_cap: str | None = None,
    quiet_hours: str | None = None,
) -> dict[str, Any]:
    """The trigger ``leadstream trigger`` would publish, without the sendId a preview does
    without, and without scheduledFor when none is given (the worker then takes now)."""
    trigger = build_trigger(
        organization_id=organization_id,
        campaign_id=campaign_id,
        send_id="preview",
        scheduled_for=scheduled_for or "",
        filters=filters,
        audience_filter=False,
        frequency_cap=frequency_cap,
        quiet_hours=quiet_hours,
    )
    body = {k: v for k, v in trigger.items() if k not in ("sendId", "scheduledFor")}
    if scheduled_for is not None:
        body["scheduledFor"] = scheduled_for
    return body


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise click.BadParameter(f"{path}: {err}", param_hint="--audience-filter") from None


@click.command()
@click.argument("organization_id")
@click.argument("send_id")
@click.argument("phone")
@_url_option
@_api_key_option
def explain(organization_id: str, send_id: str, phone: str, url: str | None, api_key: str) -> None:
    """Explain whether a materialized send messaged a lead, at which step it left the send
    and why (from a running worker)."""
    path = f"/api/v1/sends/{_segment(organization_id)}/{_segment(send_id)}/leads/{_segment(phone)}"
    _ask_worker(url, path, api_key)
