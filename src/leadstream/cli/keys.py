"""``leadstream keys``: the organizations' credentials in the auth file."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from leadstream.cli.options import auth_file_option, data_dir_option
from leadstream.cli.options import settings_from as _settings
from leadstream.domain.auth import (
    new_key,
    revoked,
    with_body_signatures,
    with_key,
    with_timestamp_required,
)
from leadstream.domain.normalize import normalize_organization_id
from leadstream.domain.rejects import RowError
from leadstream.web.keys import load_auth, save_auth

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Per-organization credentials in LEADSTREAM_AUTH_FILE (default DATA_DIR/auth.json)."""


def _auth_path(auth_file: Path | None, data_dir: Path | None) -> Path:
    return _settings(auth_file=auth_file, data_dir=data_dir).auth_path


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _org(organization_id: str) -> str:
    try:
        return normalize_organization_id(organization_id)
    except RowError as err:
        raise click.BadParameter(err.detail, param_hint="--org") from None


@keys.command("create")
@click.option("--org", "organization_id", required=True)
@click.option(
    "--kind",
    type=click.Choice(["api", "signing"]),
    default="api",
    show_default=True,
    help="api: a Bearer token (stored as a hash); signing: an HMAC-SHA256 secret.",
)
@auth_file_option
@data_dir_option
def keys_create(
    organization_id: str, kind: str, auth_file: Path | None, data_dir: Path | None
) -> None:
    """Create a key and print it once; it is never shown again."""
    org = _org(organization_id)
    path = _auth_path(auth_file, data_dir)
    key, secret = new_key(kind, _now())
    save_auth(path, with_key(load_auth(path), org, key))
    click.echo(f"{key.id} {secret}")


@keys.command("list")
@click.option("--org", "organization_id", required=True)
@auth_file_option
@data_dir_option
def keys_list(organization_id: str, auth_file: Path | None, data_dir: Path | None) -> None:
    """List an organization's keys (ids, kinds, dates; never the secrets)."""
    auth = load_auth(_auth_path(auth_file, data_dir)).organizations.get(str(organization_id))
    if auth is None:
        return
    for kind, items in (("api", auth.api_keys), ("signing", auth.signing_keys)):
        for k in items:
            state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
            click.echo(f"{k.id}\t{kind}\tcreated {k.created_at}\t{state}")


@keys.command("require-timestamp")
@click.argument("setting", type=click.Choice(["on", "off"]))
@click.option("--org", "organization_id", required=True)
@auth_file_option
@data_dir_option
def keys_require_timestamp(
    setting: str, organization_id: str, auth_file: Path | None, data_dir: Path | None
) -> None:
    """Require (on) or not (off) a signed X-Leadstream-Timestamp on body-only signatures
    (v1 signatures always carry one)."""
    path = _auth_path(auth_file, data_dir)
    save_auth(
        path, with_timestamp_required(load_auth(path), _org(organization_id), setting == "on")
    )
    state = "required" if setting == "on" else "optional"
    click.echo(f"organization {organization_id}: signed timestamps {state}")


@keys.command("body-signatures")
@click.argument("setting", type=click.Choice(["on", "off"]))
@click.option("--org", "organization_id", required=True)
@auth_file_option
@data_dir_option
def keys_body_signatures(
    setting: str, organization_id: str, auth_file: Path | None, data_dir: Path | None
) -> None:
    """Accept (on, the default) or refuse (off) body-only signatures (sha256=...) on the
    webhook POSTs; v1 signatures and API keys are not affected."""
    path = _auth_path(auth_file, data_dir)
    save_auth(path, with_body_signatures(load_auth(path), _org(organization_id), setting == "on"))
    state = "accepted" if setting == "on" else "refused"
    click.echo(f"organization {organization_id}: body-only signatures {state}")


@keys.command("revoke")
@click.argument("key_id")
@click.option("--org", "organization_id", required=True)
@auth_file_option
@data_dir_option
def keys_revoke(
    key_id: str, organization_id: str, auth_file: Path | None, data_dir: Path | None
) -> None:
    """Revoke one key of an organization."""
    path = _auth_path(auth_file, data_dir)
    try:
        save_auth(path, revoked(load_auth(path), str(organization_id), key_id, _now()))
    except KeyError:
        raise click.BadParameter(f"organization {organization_id} has no key {key_id}") from None
    click.echo(f"revoked {key_id}")
