"""Per-organization credentials: API keys (stored only as hashes) and HMAC signing keys.

Pure rules over an :class:`AuthConfig` value; reading and writing the file
(``LEADSTREAM_AUTH_FILE``) happens in :mod:`leadstream.web.keys`.

A request authenticates with ``Authorization: Bearer <api key>`` or with an HMAC-SHA256 of
the raw body in ``X-Leadstream-Signature: sha256=<hex>`` (``X-Setter-Signature`` accepted
too). With ``X-Leadstream-Timestamp`` the signed message is ``"{ts}.{body}"`` and the
timestamp must be within 5 minutes; an organization can require it. Several keys of each
kind may be active at once (rotation). Every comparison is constant-time, and a failure
never says which part was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping

import msgspec

__all__ = [
    "TIMESTAMP_TOLERANCE_S",
    "ApiKey",
    "AuthConfig",
    "AuthError",
    "OrgAuth",
    "SigningKey",
    "authenticate",
    "has_credentials",
    "hash_api_key",
    "new_api_key",
    "new_key",
    "new_signing_secret",
    "revoked",
    "sign",
    "with_key",
    "with_timestamp_required",
]

TIMESTAMP_TOLERANCE_S = 300
_SIGNATURE_HEADERS = ("x-leadstream-signature", "x-setter-signature")
_API_KEY_PREFIX = "lsk_"


class ApiKey(msgspec.Struct, frozen=True):
    id: str
    hash: str
    created_at: str
    revoked_at: str | None = None


class SigningKey(msgspec.Struct, frozen=True):
    id: str
    secret: str
    created_at: str
    revoked_at: str | None = None


class OrgAuth(msgspec.Struct, frozen=True):
    api_keys: list[ApiKey] = []
    signing_keys: list[SigningKey] = []
    require_timestamp: bool = False


class AuthConfig(msgspec.Struct, frozen=True):
    organizations: dict[str, OrgAuth] = {}


class AuthError(Exception):
    """401 (no valid credential) or 403 (a valid credential of another organization)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def new_key(kind: str, created_at: str) -> tuple[ApiKey | SigningKey, str]:
    """A new key of ``kind`` (``api`` or ``signing``): its record for the auth file and the
    secret to hand out once (an API key's record keeps only its hash)."""
    if kind == "api":
        secret = new_api_key()
        return ApiKey("ak_" + secrets.token_hex(6), hash_api_key(secret), created_at), secret
    if kind == "signing":
        secret = new_signing_secret()
        return SigningKey("sk_" + secrets.token_hex(6), secret, created_at), secret
    raise ValueError(f"a key is api or signing, not {kind!r}")


def new_api_key() -> str:
    return _API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_signing_secret() -> str:
    return secrets.token_hex(32)


def hash_api_key(key: str) -> str:
    # API keys are 256 random bits: a plain SHA-256 cannot be brute-forced back.
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


Body = bytes | Callable[[], Iterable[bytes]]


def sign(secret: str, body: Body, timestamp: str | None = None) -> str:
    """The signature header value for ``body`` (and ``timestamp`` when given).

    ``body`` may be a callable returning the body in chunks, so that a large upload is
    verified from disk without being held in memory.
    """
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    if timestamp is not None:
        mac.update(timestamp.encode() + b".")
    for chunk in [body] if isinstance(body, bytes) else body():
        mac.update(chunk)
    return "sha256=" + mac.hexdigest()


def _unauthorized() -> AuthError:
    return AuthError(401, "missing or invalid credentials")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def has_credentials(headers: Mapping[str, str]) -> bool:
    """Whether the request carries a credential at all (valid or not): a Bearer token or
    a signature header."""
    authorization = _header(headers, "authorization")
    if authorization is not None and authorization.lower().startswith("bearer "):
        return True
    return any(_header(headers, name) for name in _SIGNATURE_HEADERS)


def _bearer_org(config: AuthConfig, token: str) -> str | None:
    digest = hash_api_key(token)
    found = None
    for org, auth in config.organizations.items():
        for key in auth.api_keys:
            if key.revoked_at is None and hmac.compare_digest(key.hash, digest):
                found = org
    return found


def _signature_org(
    config: AuthConfig, signature: str, body: Body, timestamp: str | None, now_s: float
) -> str | None:
    if timestamp is not None:
        try:
            ts = int(timestamp)
        except ValueError:
            return None
        if abs(now_s - ts) > TIMESTAMP_TOLERANCE_S:
            return None
    found = None
    for org, auth in config.organizations.items():
        if auth.require_timestamp and timestamp is None:
            continue
        for key in auth.signing_keys:
            if key.revoked_at is None and hmac.compare_digest(
                sign(key.secret, body, timestamp), signature
            ):
                found = org
    return found


def authenticate(
    config: AuthConfig,
    headers: Mapping[str, str],
    body: Body,
    *,
    now_s: float,
    claimed_org: str | None = None,
) -> str:
    """The organization the request acts for, or :class:`AuthError`.

    ``claimed_org`` is the organizationId in the body, if any: a key acts only for its own
    organization (403 otherwise).
    """
    org = None
    authorization = _header(headers, "authorization")
    if authorization is not None and authorization.lower().startswith("bearer "):
        org = _bearer_org(config, authorization[7:].strip())
    if org is None:
        signature = next(filter(None, (_header(headers, n) for n in _SIGNATURE_HEADERS)), None)
        if signature is not None:
            org = _signature_org(
                config, signature.strip(), body, _header(headers, "x-leadstream-timestamp"), now_s
            )
    if org is None:
        raise _unauthorized()
    if claimed_org is not None and claimed_org != org:
        raise AuthError(403, "this credential does not act for that organization")
    return org


def with_key(config: AuthConfig, org: str, key: ApiKey | SigningKey) -> AuthConfig:
    """``config`` with one more key for ``org``."""
    current = config.organizations.get(org, OrgAuth())
    if isinstance(key, ApiKey):
        updated = msgspec.structs.replace(current, api_keys=[*current.api_keys, key])
    else:
        updated = msgspec.structs.replace(current, signing_keys=[*current.signing_keys, key])
    return msgspec.structs.replace(config, organizations={**config.organizations, org: updated})


def revoked(config: AuthConfig, org: str, key_id: str, at: str) -> AuthConfig:
    """``config`` with key ``key_id`` of ``org`` revoked; KeyError when there is no such key."""
    current = config.organizations.get(org)
    ids = (
        {k.id for k in current.api_keys} | {k.id for k in current.signing_keys}
        if current
        else set()
    )
    if current is None or key_id not in ids:
        raise KeyError(key_id)
    updated = msgspec.structs.replace(
        current,
        api_keys=[
            msgspec.structs.replace(k, revoked_at=at) if k.id == key_id else k
            for k in current.api_keys
        ],
        signing_keys=[
            msgspec.structs.replace(k, revoked_at=at) if k.id == key_id else k
            for k in current.signing_keys
        ],
    )
    return msgspec.structs.replace(config, organizations={**config.organizations, org: updated})


def with_timestamp_required(config: AuthConfig, org: str, required: bool) -> AuthConfig:
    """``config`` where signatures of ``org`` must (or need not) carry a signed timestamp."""
    current = config.organizations.get(org, OrgAuth())
    updated = msgspec.structs.replace(current, require_timestamp=required)
    return msgspec.structs.replace(config, organizations={**config.organizations, org: updated})
