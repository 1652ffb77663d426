"""The commands that ask a running worker over its HTTP API: ``lead``, ``erase``,
``preview`` and ``explain``. Each prints the worker's JSON answer; an error answer goes to
stderr with exit status 1, so that a script can tell the two apart.

Each authenticates with an API key (``--api-key``) or, given a signing key
(``--signing-key-id`` and ``--signing-secret``), signs its request v1: the method, path,
query, timestamp and body's hash, so that the signature authorizes that request only."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from leadstream.cli.options import controls_options, event_filter_option
from leadstream.client.publish import build_trigger
from leadstream.domain.auth import RequestLine, signed_headers
from leadstream.settings import Settings

__all__ = ["erase", "explain", "lead", "preview"]

# Long enough for a preview that asks every other worker for its share (each within
# LEADSTREAM_HTTP_TIMEOUT_SECONDS, 30 by default).
_TIMEOUT_SECONDS = 60

_url_option = click.option(
    "--url", default=None, help="Worker base URL [default: http://127.0.0.1:$LEADSTREAM_WEB_PORT]."
)


def _credential_options(command: Any) -> Any:
    """``--api-key``, or ``--signing-key-id`` with ``--signing-secret``: one is needed."""
    for option in reversed(
        [
            click.option(
                "--api-key",
                envvar="LEADSTREAM_API_KEY",
                show_envvar=True,
                default=None,
                help="An API key of the organization (leadstream keys create).",
            ),
            click.option(
                "--signing-key-id",
                envvar="LEADSTREAM_SIGNING_KEY_ID",
                show_envvar=True,
                default=None,
                help="Instead of an API key: the id of a signing key of the organization"
                " (leadstream keys create --kind signing); the request is signed v1.",
            ),
            click.option(
                "--signing-secret",
                envvar="LEADSTREAM_SIGNING_SECRET",
                show_envvar=True,
                default=None,
                help="The secret of that signing key.",
            ),
        ]
    ):
        command = option(command)
    return command


class _Credential:
    """How the command authenticates: a Bearer API key, or a v1 signature."""

    def __init__(
        self, api_key: str | None, signing_key_id: str | None, signing_secret: str | None
    ) -> None:
        if (signing_key_id is None) != (signing_secret is None):
            raise click.UsageError("--signing-key-id and --signing-secret go together")
        if api_key is None and signing_key_id is None:
            raise click.UsageError(
                "give --api-key (LEADSTREAM_API_KEY), or --signing-key-id and --signing-secret"
            )
        self._api_key = api_key
        self._signing = (signing_key_id, signing_secret) if signing_key_id else None

    def headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        """The credential headers of a request to ``target`` (path and query, as sent)."""
        if self._signing is None:
            return {"Authorization": f"Bearer {self._api_key}"}
        key_id, secret = self._signing
        path, _, query = target.partition("?")
        line = RequestLine(method, path, query)
        return signed_headers(key_id, str(secret), line, body, now_s=time.time())


def _ask_worker(
    url: str | None,
    path: str,
    credential: _Credential,
    body: Any = None,
    *,
    method: str | None = None,
) -> None:
    """Print the worker's JSON answer to ``path`` (a POST of ``body`` when there is one);
    exit 1 after printing an error answer, or saying that no worker answered."""
    base = (url or f"http://127.0.0.1:{Settings().web_port}").rstrip("/")
    data = None if body is None else json.dumps(body).encode()
    verb = method or ("GET" if data is None else "POST")
    headers = credential.headers(verb, path, data or b"")
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(  # noqa: S310 - user-given URL
        base + path, data=data, headers=headers, method=verb
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
@_credential_options
def lead(organization_id: str, phone: str, url: str | None, **credential: str | None) -> None:
    """Show one lead's stored events (read-only, from a running worker)."""
    path = f"/api/v1/leads/{_segment(organization_id)}/{_segment(phone)}"
    _ask_worker(url, path, _Credential(**credential))


@click.command()
@click.argument("organization_id")
@click.argument("phone")
@_url_option
@_credential_options
def erase(organization_id: str, phone: str, url: str | None, **credential: str | None) -> None:
    """Erase a lead: its events, memberships, send history and index entries, everywhere
    in the state and its changelog; an opted-out lead leaves a suppression (a keyed hash,
    not the phone), so that it stays opted out if it comes back."""
    path = f"/api/v1/leads/{_segment(organization_id)}/{_segment(phone)}"
    _ask_worker(url, path, _Credential(**credential), method="DELETE")


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
@_credential_options
def preview(
    organization_id: str,
    campaign_id: str,
    scheduled_for: str | None,
    filters: tuple[str, ...],
    quiet_hours: str | None,
    frequency_cap: str | None,
    conditions: str | None,
    holdout: str | None,
    splits: tuple[str, ...],
    audience_filter: Path | None,
    sample: int,
    url: str | None,
    **credential: str | None,
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
            conditions=conditions,
            holdout=holdout,
            splits=splits,
        )
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint=_flag_of(str(err))) from None
    if audience_filter is not None:
        body["audienceFilter"] = _read_json(audience_filter)
    body["sample"] = sample
    _ask_worker(url, "/api/v1/sends/preview", _Credential(**credential), body)


def _flag_of(error: str) -> str:
    """The option a flag-parsing error is about."""
    if "frequency cap" in error:
        return "--frequency-cap"
    if "quiet hours" in error:
        return "--quiet-hours"
    for flag in ("conditions", "holdout", "split"):
        if error.startswith((flag, f"a {flag}")):
            return f"--{flag}"
    return "--filter"


def _preview_body(
    organization_id: str,
    campaign_id: str,
    scheduled_for: str | None,
    filters: list[str],
    *,
    frequency_cap: str | None = None,
    quiet_hours: str | None = None,
    conditions: str | None = None,
    holdout: str | None = None,
    splits: Sequence[str] = (),
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
        conditions=conditions,
        holdout=holdout,
        splits=splits,
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
@_credential_options
def explain(
    organization_id: str, send_id: str, phone: str, url: str | None, **credential: str | None
) -> None:
    """Explain whether a materialized send messaged a lead, at which step it left the send
    and why (from a running worker)."""
    path = f"/api/v1/sends/{_segment(organization_id)}/{_segment(send_id)}/leads/{_segment(phone)}"
    _ask_worker(url, path, _Credential(**credential))
