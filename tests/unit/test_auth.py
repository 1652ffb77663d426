"""Credentials: API keys as hashes, HMAC signatures with rotation, timestamps, organizations."""

from __future__ import annotations

import json
import stat

import pytest

from leadstream.domain.auth import (
    ApiKey,
    AuthConfig,
    AuthError,
    OrgAuth,
    SigningKey,
    authenticate,
    hash_api_key,
    new_api_key,
    new_signing_secret,
    revoked,
    sign,
    with_key,
)
from leadstream.web.keys import load_auth, save_auth

NOW = 1_800_000_000.0
BODY = b'{"organizationId": "42", "eventType": "x", "events": []}'


@pytest.fixture
def keys() -> dict[str, str]:
    return {
        "api": new_api_key(),
        "old": new_signing_secret(),
        "new": new_signing_secret(),
        "other_api": new_api_key(),
    }


@pytest.fixture
def config(keys: dict[str, str]) -> AuthConfig:
    c = AuthConfig()
    c = with_key(c, "42", ApiKey("ak1", hash_api_key(keys["api"]), "t"))
    c = with_key(c, "42", SigningKey("sk_old", keys["old"], "t"))
    c = with_key(c, "42", SigningKey("sk_new", keys["new"], "t"))
    c = with_key(c, "7", ApiKey("ak7", hash_api_key(keys["other_api"]), "t"))
    return c


def status_of(config: AuthConfig, headers: dict[str, str], body: bytes = BODY, **kw) -> int:
    try:
        authenticate(config, headers, body, now_s=NOW, **kw)
    except AuthError as err:
        return err.status
    return 200


def test_bearer_key_authenticates_its_organization(config, keys) -> None:
    assert authenticate(config, {"Authorization": f"Bearer {keys['api']}"}, BODY, now_s=NOW) == "42"
    assert authenticate(config, {"authorization": f"bearer {keys['api']}"}, BODY, now_s=NOW) == "42"


def test_api_keys_are_stored_only_as_hashes(config, keys) -> None:
    stored = json.dumps([k.hash for o in config.organizations.values() for k in o.api_keys])
    assert keys["api"] not in stored and keys["other_api"] not in stored


def test_wrong_missing_or_revoked_keys_are_401_without_saying_why(config, keys) -> None:
    assert status_of(config, {}) == 401
    assert status_of(config, {"Authorization": "Bearer lsk_wrong"}) == 401
    assert status_of(config, {"Authorization": "Basic abc"}) == 401
    revoked_config = revoked(config, "42", "ak1", "later")
    with pytest.raises(AuthError) as wrong:
        authenticate(config, {"Authorization": "Bearer nope"}, BODY, now_s=NOW)
    with pytest.raises(AuthError) as gone:
        authenticate(revoked_config, {"Authorization": f"Bearer {keys['api']}"}, BODY, now_s=NOW)
    assert wrong.value.status == gone.value.status == 401
    assert wrong.value.message == gone.value.message


def test_both_signing_keys_work_during_rotation_and_either_header_name(config, keys) -> None:
    for secret in (keys["old"], keys["new"]):
        assert status_of(config, {"X-Leadstream-Signature": sign(secret, BODY)}) == 200
        assert status_of(config, {"X-Setter-Signature": sign(secret, BODY)}) == 200
    rotated = revoked(config, "42", "sk_old", "later")
    assert status_of(rotated, {"X-Leadstream-Signature": sign(keys["old"], BODY)}) == 401
    assert status_of(rotated, {"X-Leadstream-Signature": sign(keys["new"], BODY)}) == 200


def test_a_tampered_body_or_unknown_secret_is_401(config, keys) -> None:
    signature = sign(keys["new"], BODY)
    assert status_of(config, {"X-Leadstream-Signature": signature}, BODY + b" ") == 401
    assert status_of(config, {"X-Leadstream-Signature": sign("other", BODY)}) == 401
    assert status_of(config, {"X-Leadstream-Signature": "sha256=zz"}) == 401


def test_timestamps_are_signed_with_the_body_and_must_be_fresh(config, keys) -> None:
    ts = str(int(NOW))
    headers = {"X-Leadstream-Signature": sign(keys["new"], BODY, ts), "X-Leadstream-Timestamp": ts}
    assert status_of(config, headers) == 200
    stale = str(int(NOW) - 301)
    assert (
        status_of(
            config,
            {
                "X-Leadstream-Signature": sign(keys["new"], BODY, stale),
                "X-Leadstream-Timestamp": stale,
            },
        )
        == 401
    )
    edge = str(int(NOW) - 300)
    assert (
        status_of(
            config,
            {
                "X-Leadstream-Signature": sign(keys["new"], BODY, edge),
                "X-Leadstream-Timestamp": edge,
            },
        )
        == 200
    )
    # The timestamp is part of what is signed: changing it breaks the signature.
    assert (
        status_of(
            config,
            {
                "X-Leadstream-Signature": sign(keys["new"], BODY, ts),
                "X-Leadstream-Timestamp": str(int(NOW) - 1),
            },
        )
        == 401
    )


def test_an_organization_can_require_timestamps(config, keys) -> None:
    strict = AuthConfig(
        {
            **config.organizations,
            "42": OrgAuth(
                config.organizations["42"].api_keys, config.organizations["42"].signing_keys, True
            ),
        }
    )
    assert status_of(strict, {"X-Leadstream-Signature": sign(keys["new"], BODY)}) == 401
    ts = str(int(NOW))
    assert (
        status_of(
            strict,
            {"X-Leadstream-Signature": sign(keys["new"], BODY, ts), "X-Leadstream-Timestamp": ts},
        )
        == 200
    )


def test_a_key_acts_only_for_its_own_organization(config, keys) -> None:
    headers = {"Authorization": f"Bearer {keys['other_api']}"}
    assert status_of(config, headers, claimed_org="7") == 200
    assert status_of(config, headers, claimed_org="42") == 403


def test_revoking_an_unknown_key_is_an_error(config) -> None:
    with pytest.raises(KeyError):
        revoked(config, "42", "nope", "t")
    with pytest.raises(KeyError):
        revoked(config, "nobody", "ak1", "t")


def test_auth_file_round_trip_is_private(tmp_path, config) -> None:
    path = tmp_path / "sub" / "auth.json"
    assert load_auth(path) == AuthConfig()
    save_auth(path, config)
    assert load_auth(path) == config
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
