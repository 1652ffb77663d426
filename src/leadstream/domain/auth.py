"""Per-organization credentials and what a request's credential proves: pure rules over an
:class:`AuthConfig` value (the file is read and written by :mod:`leadstream.web.keys`).

A request carries one credential:

* ``Authorization: Bearer <api key>``: decided from the headers alone.
* A **v1 signature**: ``X-Leadstream-Key-Id``, ``X-Leadstream-Timestamp`` (Unix seconds,
  within :data:`TIMESTAMP_TOLERANCE_S` of the worker's clock) and ``X-Leadstream-Signature:
  v1=<hex>``, the HMAC-SHA256 under that key's secret of :func:`canonical_v1`: the
  timestamp, method, path as sent, raw query and the SHA-256 of the body. It authorizes
  exactly that request. The body's hash travels in ``X-Leadstream-Content-SHA256`` (the
  empty body's when absent), so that the whole signature is checked from the headers, and
  the body read afterwards must have that hash (:class:`SignedRequest`).
* A **body-only signature** ``sha256=<hex>`` (``X-Setter-Signature`` too), the HMAC of the
  body or of ``"{timestamp}.{body}"``: the deliveries of source systems that cannot sign
  more. The web layer allows it on the webhook POSTs only, and an organization can turn it
  off. Its organization is the key id's when one is sent, else the body's top-level
  ``organizationId``; only that organization's keys are tried (:func:`verify_body_signature`).

An :class:`AuthIndex` is built once per configuration (API key hash -> organization, key
id -> organization and secret), so that checking a request costs one hash lookup, or one
HMAC, whatever the number of organizations. A failure never says which part was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

__all__ = [
    "CLUSTER_KEY_ID",
    "CONTENT_SHA256_HEADER",
    "EMPTY_BODY_SHA256",
    "TIMESTAMP_TOLERANCE_S",
    "ApiKey",
    "AuthConfig",
    "AuthError",
    "AuthIndex",
    "BodySigned",
    "Credential",
    "Granted",
    "OrgAuth",
    "RequestLine",
    "SignedRequest",
    "SigningKey",
    "body_organization",
    "canonical_v1",
    "forbidden",
    "hash_api_key",
    "new_api_key",
    "new_key",
    "new_signing_secret",
    "read_credential",
    "revoked",
    "sign",
    "sign_v1",
    "signed_headers",
    "verify_body_signature",
    "with_body_signatures",
    "with_key",
    "with_timestamp_required",
]

TIMESTAMP_TOLERANCE_S = 300
# The key id of worker-to-worker requests, signed with LEADSTREAM_CLUSTER_SECRET (a tenant's
# key ids start with sk_, so they never collide with it).
CLUSTER_KEY_ID = "cluster"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
# The header of a v1 signed request that carries the body's hex SHA-256 (the signed one).
CONTENT_SHA256_HEADER = "X-Leadstream-Content-SHA256"

_API_KEY_PREFIX = "lsk_"
_V1 = "v1="
_BODY_ONLY = "sha256="
# Credential headers are short: an API key is 47 characters, a signature 67. Anything
# longer (aiohttp allows 8 KiB a header) is refused before it is hashed.
_MAX_CREDENTIAL_CHARS = 512
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
    # Body-only signatures (sha256=) must carry a signed timestamp.
    require_timestamp: bool = False
    # Body-only signatures are accepted on the webhook POSTs at all.
    body_signatures: bool = True


class AuthConfig(msgspec.Struct, frozen=True):
    organizations: dict[str, OrgAuth] = {}


class AuthError(Exception):
    """401 (no valid credential) or 403 (a valid credential of another organization)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _unauthorized() -> AuthError:
    return AuthError(401, "missing or invalid credentials")


def forbidden() -> AuthError:
    """403: the credential is valid and acts for another organization."""
    return AuthError(403, "this credential does not act for that organization")


# -- keys ----------------------------------------------------------------------------------


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


# -- the index -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signer:
    org: str
    secret: bytes
    body_signatures: bool
    require_timestamp: bool


@dataclass(frozen=True, slots=True)
class AuthIndex:
    """The active credentials of a configuration, by what a request names: an API key's
    hash, a signing key's id, an organization (its body-only signing secrets). Built once
    per configuration (:meth:`of`), never per request."""

    api_keys: Mapping[str, str] = field(default_factory=dict)  # hash -> org
    signers: Mapping[str, _Signer] = field(default_factory=dict)  # key id -> signer
    body_secrets: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)  # org -> secrets
    timestamp_required: frozenset[str] = frozenset()
    cluster_secret: bytes | None = None

    @classmethod
    def of(cls, config: AuthConfig, cluster_secret: str | None = None) -> AuthIndex:
        api_keys: dict[str, str] = {}
        signers: dict[str, _Signer] = {}
        body: dict[str, tuple[bytes, ...]] = {}
        for org, auth in config.organizations.items():
            for api_key in auth.api_keys:
                if api_key.revoked_at is None:
                    api_keys[api_key.hash] = org
            active = [k for k in auth.signing_keys if k.revoked_at is None]
            for key in active:
                if key.id != CLUSTER_KEY_ID:
                    signers[key.id] = _Signer(
                        org, key.secret.encode(), auth.body_signatures, auth.require_timestamp
                    )
            if auth.body_signatures and active:
                body[org] = tuple(k.secret.encode() for k in active)
        required = frozenset(o for o, a in config.organizations.items() if a.require_timestamp)
        return cls(
            api_keys,
            signers,
            body,
            required,
            None if cluster_secret is None else cluster_secret.encode(),
        )


# -- what a request's headers prove ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestLine:
    """What a v1 signature covers besides the body: the method, the path as sent (still
    percent-encoded) and the raw query string (empty when there is none)."""

    method: str
    path: str
    query: str


@dataclass(frozen=True, slots=True)
class Granted:
    """An API key: the organization it acts for, known from the headers alone."""

    org: str


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A good v1 signature of this request with a body whose hex SHA-256 is
    ``body_sha256`` (as ``X-Leadstream-Content-SHA256`` says): the body, once read, must
    have that hash (:meth:`check_body`). ``org`` is None for the cluster's own key (a
    share request between workers acts for the organization its body names)."""

    org: str | None
    key_id: str
    body_sha256: str

    def check_body(self, body_sha256: str) -> None:
        """:class:`AuthError` 401 unless the body read has the hash that was signed."""
        if not hmac.compare_digest(body_sha256, self.body_sha256):
            raise _unauthorized()


@dataclass(frozen=True, slots=True)
class BodySigned:
    """A body-only signature: checked against the body (:func:`verify_body_signature`).
    ``org`` is known when a key id was sent."""

    org: str | None
    key_id: str | None
    signature: str = field(repr=False)
    timestamp: str | None


Credential = Granted | SignedRequest | BodySigned


def canonical_v1(timestamp: str, line: RequestLine, body_sha256: str) -> str:
    """The string a v1 signature is the HMAC-SHA256 of."""
    return f"v1:{timestamp}:{line.method.upper()}:{line.path}:{line.query}:{body_sha256}"


def sign_v1(secret: str, timestamp: str, line: RequestLine, body: bytes) -> str:
    """The ``X-Leadstream-Signature`` value of a v1 signature of this request."""
    message = canonical_v1(timestamp, line, hashlib.sha256(body).hexdigest()).encode()
    return _V1 + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    key_id: str, secret: str, line: RequestLine, body: bytes, *, now_s: float
) -> dict[str, str]:
    """The headers of a v1 signed request, timestamped ``now_s``."""
    timestamp = str(int(now_s))
    return {
        "X-Leadstream-Key-Id": key_id,
        "X-Leadstream-Timestamp": timestamp,
        "X-Leadstream-Signature": sign_v1(secret, timestamp, line, body),
        CONTENT_SHA256_HEADER: hashlib.sha256(body).hexdigest(),
    }


Body = bytes | Callable[[], Iterable[bytes]]


def sign(secret: str, body: Body, timestamp: str | None = None) -> str:
    """The body-only signature header value of ``body`` (and ``timestamp`` when given).

    ``body`` may be a callable returning the body in chunks."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    if timestamp is not None:
        mac.update(timestamp.encode() + b".")
    for chunk in [body] if isinstance(body, bytes) else body():
        mac.update(chunk)
    return _BODY_ONLY + mac.hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The header ``name`` (lower case), or :class:`AuthError` when it is there but cannot
    be a credential (not ASCII, control characters, too long): never a 500."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):  # a plain dict: any case
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if value is None:
        return None
    if len(value) > _MAX_CREDENTIAL_CHARS or not value.isascii() or not value.isprintable():
        raise _unauthorized()
    return value.strip()


def _fresh(timestamp: str, now_s: float) -> bool:
    return (
        _TIMESTAMP.fullmatch(timestamp) is not None
        and abs(now_s - int(timestamp)) <= TIMESTAMP_TOLERANCE_S
    )


def read_credential(
    index: AuthIndex,
    headers: Mapping[str, str],
    line: RequestLine,
    *,
    now_s: float,
    body_signatures: bool,
    cluster: bool,
) -> Credential:
    """What the request's headers prove, before any byte of its body is read, or
    :class:`AuthError` 401.

    ``body_signatures``: the route takes body-only signatures (a webhook POST);
    ``cluster``: it takes the cluster's own key (a preview's share request)."""
    authorization = _header(headers, "authorization")
    if authorization is not None and authorization[:7].lower() == "bearer ":
        org = index.api_keys.get(hash_api_key(authorization[7:].strip()))
        if org is None:
            raise _unauthorized()
        return Granted(org)
    signature = _header(headers, "x-leadstream-signature") or _header(headers, "x-setter-signature")
    if signature is None:
        raise _unauthorized()
    key_id = _header(headers, "x-leadstream-key-id")
    timestamp = _header(headers, "x-leadstream-timestamp")
    if key_id is not None and _KEY_ID.fullmatch(key_id) is None:
        raise _unauthorized()
    if timestamp is not None and not _fresh(timestamp, now_s):
        raise _unauthorized()
    if signature.startswith(_V1):
        content = _header(headers, CONTENT_SHA256_HEADER.lower())
        return _v1_request(index, line, signature, key_id, timestamp, content, cluster=cluster)
    if signature.startswith(_BODY_ONLY) and body_signatures:
        return _body_signed(index, signature, key_id, timestamp)
    raise _unauthorized()


def _v1_request(
    index: AuthIndex,
    line: RequestLine,
    signature: str,
    key_id: str | None,
    timestamp: str | None,
    content: str | None,
    *,
    cluster: bool,
) -> SignedRequest:
    """The signature checked from the headers: one HMAC of a short string."""
    given = signature[len(_V1) :].lower()
    body_sha256 = EMPTY_BODY_SHA256 if content is None else content.lower()
    if (
        key_id is None
        or timestamp is None
        or _HEX_SHA256.fullmatch(given) is None
        or _HEX_SHA256.fullmatch(body_sha256) is None
    ):
        raise _unauthorized()
    org: str | None
    if key_id == CLUSTER_KEY_ID:
        if not cluster or index.cluster_secret is None:
            raise _unauthorized()
        org, secret = None, index.cluster_secret
    else:
        signer = index.signers.get(key_id)
        if signer is None:
            raise _unauthorized()
        org, secret = signer.org, signer.secret
    message = canonical_v1(timestamp, line, body_sha256).encode()
    expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise _unauthorized()
    return SignedRequest(org, key_id, body_sha256)


def _body_signed(
    index: AuthIndex, signature: str, key_id: str | None, timestamp: str | None
) -> BodySigned:
    given = signature[len(_BODY_ONLY) :].lower()
    if _HEX_SHA256.fullmatch(given) is None:
        raise _unauthorized()
    org = None
    if key_id is not None:
        signer = index.signers.get(key_id)
        if signer is None or not signer.body_signatures:
            raise _unauthorized()
        if signer.require_timestamp and timestamp is None:
            raise _unauthorized()
        org = signer.org
    return BodySigned(org, key_id, given, timestamp)


class _OrganizationOnly(msgspec.Struct):
    organizationId: str | int | None = None  # noqa: N815 - the wire name


def body_organization(body: bytes) -> str | int | None:
    """The top-level ``organizationId`` of a JSON body, read without building the rest
    (msgspec skips the other fields); None when there is none or the body is no object."""
    try:
        return msgspec.json.decode(body, type=_OrganizationOnly).organizationId
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def verify_body_signature(
    index: AuthIndex, credential: BodySigned, body: Body, claimed_org: str | None
) -> str:
    """The organization a body-only signature acts for, or :class:`AuthError` 401: the key
    id's organization's key (when one was sent), else each active key of ``claimed_org``
    (the body's organizationId): one HMAC of the body per key tried."""
    candidates: tuple[bytes, ...]
    if credential.key_id is not None:
        signer = index.signers.get(credential.key_id)
        if signer is None or not signer.body_signatures:
            raise _unauthorized()
        org, candidates = signer.org, (signer.secret,)
    else:
        if claimed_org is None:
            raise _unauthorized()
        org, candidates = claimed_org, index.body_secrets.get(claimed_org, ())
        if org in index.timestamp_required and credential.timestamp is None:
            raise _unauthorized()
    for secret in candidates:
        expected = sign(secret.decode(), body, credential.timestamp)[len(_BODY_ONLY) :]
        if hmac.compare_digest(expected, credential.signature):
            return org
    raise _unauthorized()


# -- configuration changes -----------------------------------------------------------------


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
    """``config`` where body-only signatures of ``org`` must (or need not) carry a signed
    timestamp."""
    current = config.organizations.get(org, OrgAuth())
    updated = msgspec.structs.replace(current, require_timestamp=required)
    return msgspec.structs.replace(config, organizations={**config.organizations, org: updated})


def with_body_signatures(config: AuthConfig, org: str, accepted: bool) -> AuthConfig:
    """``config`` where ``org``'s body-only signatures are (or are no longer) accepted."""
    current = config.organizations.get(org, OrgAuth())
    updated = msgspec.structs.replace(current, body_signatures=accepted)
    return msgspec.structs.replace(config, organizations={**config.organizations, org: updated})
