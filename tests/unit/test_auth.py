"""Credentials: API keys as hashes, v1 signatures of one request, body-only signatures for
webhooks, rotation, timestamps, the index, and headers that cannot be credentials."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadstream.domain.auth import (
    CLUSTER_KEY_ID,
    CONTENT_SHA256_HEADER,
    EMPTY_BODY_SHA256,
    TIMESTAMP_TOLERANCE_S,
    ApiKey,
    AuthConfig,
    AuthError,
    AuthIndex,
    BodySigned,
    Granted,
    OrgAuth,
    RequestLine,
    SignedRequest,
    SigningKey,
    body_organization,
    canonical_v1,
    hash_api_key,
    new_api_key,
    new_signing_secret,
    read_credential,
    revoked,
    sign,
    sign_v1,
    signed_headers,
    verify_body_signature,
    with_body_signatures,
    with_key,
    with_timestamp_required,
)
from leadstream.web.keys import AuthFile, load_auth, save_auth

NOW = 1_800_000_000.0
BODY = b'{"organizationId": "42", "eventType": "x", "events": []}'
LINE = RequestLine("POST", "/api/v1/webhooks/lead-events", "")
GET = RequestLine("GET", "/api/v1/leads/42/%2B15551234567", "")
CLUSTER_SECRET = "c" * 32


@pytest.fixture
def keys() -> dict[str, str]:
    return {
        "api": new_api_key(),
        "old": new_signing_secret(),
        "new": new_signing_secret(),
        "other_api": new_api_key(),
        "other_signing": new_signing_secret(),
    }


@pytest.fixture
def config(keys: dict[str, str]) -> AuthConfig:
    c = AuthConfig()
    c = with_key(c, "42", ApiKey("ak1", hash_api_key(keys["api"]), "t"))
    c = with_key(c, "42", SigningKey("sk_old", keys["old"], "t"))
    c = with_key(c, "42", SigningKey("sk_new", keys["new"], "t"))
    c = with_key(c, "7", ApiKey("ak7", hash_api_key(keys["other_api"]), "t"))
    return with_key(c, "7", SigningKey("sk_7", keys["other_signing"], "t"))


def index_of(config: AuthConfig) -> AuthIndex:
    return AuthIndex.of(config, CLUSTER_SECRET)


def credential(
    config: AuthConfig,
    headers: dict[str, str],
    line: RequestLine = LINE,
    *,
    webhook: bool = True,
    cluster: bool = False,
    now: float = NOW,
) -> Any:
    return read_credential(
        index_of(config), headers, line, now_s=now, body_signatures=webhook, cluster=cluster
    )


def org_of(
    config: AuthConfig,
    headers: dict[str, str],
    line: RequestLine = LINE,
    body: bytes = BODY,
    **kw: Any,
) -> str | int:
    """The organization the request acts for, or the status it is refused with: what the
    web layer does with a credential (web/http.py), in one call."""
    try:
        found = credential(config, headers, line, **kw)
        if isinstance(found, Granted):
            return found.org
        if isinstance(found, SignedRequest):
            found.check_body(hashlib.sha256(body).hexdigest())
            return found.org or "cluster"
        claimed = body_organization(body)
        return verify_body_signature(
            index_of(config), found, body, None if claimed is None else str(claimed)
        )
    except AuthError as err:
        return err.status


def v1(key_id: str, secret: str, line: RequestLine = LINE, body: bytes = BODY, **kw: Any):
    return signed_headers(key_id, secret, line, body, now_s=kw.get("now", NOW))


# -- API keys ------------------------------------------------------------------------------


def test_bearer_key_authenticates_its_organization_from_the_headers(config, keys) -> None:
    assert credential(config, {"Authorization": f"Bearer {keys['api']}"}) == Granted("42")
    assert credential(config, {"authorization": f"bearer {keys['api']}"}) == Granted("42")
    assert credential(config, {"Authorization": f"Bearer {keys['other_api']}"}) == Granted("7")


def test_api_keys_are_stored_only_as_hashes(config, keys) -> None:
    stored = json.dumps([k.hash for o in config.organizations.values() for k in o.api_keys])
    assert keys["api"] not in stored and keys["other_api"] not in stored


def test_wrong_missing_or_revoked_keys_are_401_without_saying_why(config, keys) -> None:
    assert org_of(config, {}) == 401
    assert org_of(config, {"Authorization": "Bearer lsk_wrong"}) == 401
    assert org_of(config, {"Authorization": "Basic abc"}) == 401
    gone = revoked(config, "42", "ak1", "later")
    with pytest.raises(AuthError) as wrong:
        credential(config, {"Authorization": "Bearer nope"})
    with pytest.raises(AuthError) as revoked_key:
        credential(gone, {"Authorization": f"Bearer {keys['api']}"})
    assert wrong.value.status == revoked_key.value.status == 401
    assert wrong.value.message == revoked_key.value.message


def test_a_bearer_key_decides_alone_even_beside_a_signature(config, keys) -> None:
    headers = {"Authorization": "Bearer lsk_wrong", **v1("sk_new", keys["new"])}
    assert org_of(config, headers) == 401


# -- v1 signatures -------------------------------------------------------------------------


def test_the_v1_canonical_string_is_exactly_as_documented() -> None:
    line = RequestLine("post", "/api/v1/campaigns/a%2Fb/audience", "organizationId=42&x=%20")
    digest = hashlib.sha256(b"body").hexdigest()
    assert canonical_v1("1800000000", line, digest) == (
        f"v1:1800000000:POST:/api/v1/campaigns/a%2Fb/audience:organizationId=42&x=%20:{digest}"
    )
    secret = new_signing_secret()
    expected = hmac.new(
        secret.encode(), canonical_v1("1800000000", line, digest).encode(), hashlib.sha256
    ).hexdigest()
    assert sign_v1(secret, "1800000000", line, b"body") == "v1=" + expected


def test_a_v1_signature_authorizes_its_request_with_any_active_key(config, keys) -> None:
    assert org_of(config, v1("sk_new", keys["new"])) == "42"
    assert org_of(config, v1("sk_old", keys["old"])) == "42"
    rotated = revoked(config, "42", "sk_old", "later")
    assert org_of(rotated, v1("sk_old", keys["old"])) == 401
    assert org_of(rotated, v1("sk_new", keys["new"])) == "42"


def test_a_v1_signature_is_checked_whole_from_the_headers(config, keys) -> None:
    """401 from the headers alone (the web layer answers before reading the body): the
    body's hash is a header, signed."""
    headers = v1("sk_new", keys["new"])
    other_hash = hashlib.sha256(BODY + b" ").hexdigest()
    for broken in (
        {**headers, CONTENT_SHA256_HEADER: other_hash},
        {k: v for k, v in headers.items() if k != CONTENT_SHA256_HEADER},  # the empty body's
        {**headers, CONTENT_SHA256_HEADER: "not-a-hash"},
        {**headers, "X-Leadstream-Key-Id": "sk_unknown"},
        {k: v for k, v in headers.items() if k != "X-Leadstream-Key-Id"},
        {k: v for k, v in headers.items() if k != "X-Leadstream-Timestamp"},
        {**headers, "X-Leadstream-Timestamp": str(int(NOW) - TIMESTAMP_TOLERANCE_S - 1)},
        {**headers, "X-Leadstream-Timestamp": str(int(NOW) + TIMESTAMP_TOLERANCE_S + 1)},
        {**headers, "X-Leadstream-Signature": "v1=" + "0" * 63},
    ):
        with pytest.raises(AuthError) as refused:
            credential(config, broken)
        assert refused.value.status == 401, broken
    found = credential(config, headers)
    assert isinstance(found, SignedRequest) and found.org == "42" and found.key_id == "sk_new"


def test_the_timestamp_window_is_300_seconds_either_way(config, keys) -> None:
    for offset, status in ((-300, "42"), (300, "42"), (-301, 401), (301, 401), (0, "42")):
        headers = v1("sk_new", keys["new"], now=NOW + offset)
        assert org_of(config, headers) == status, offset
    # A timestamp is digits only: no sign, underscore, exponent or other script's digits.
    for odd in (f"+{int(NOW)}", f"-{int(NOW)}", "1_800_000_000", "١٨٠٠٠٠٠٠٠٠", "1.8e9"):
        headers = {**v1("sk_new", keys["new"]), "X-Leadstream-Timestamp": odd}
        assert org_of(config, headers) == 401, odd


_segments = st.text(st.sampled_from("abcXYZ019-_%.~+:"), min_size=1, max_size=12)


@st.composite
def requests(draw: Any) -> tuple[RequestLine, bytes]:
    method = draw(st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
    path = "/" + "/".join(draw(st.lists(_segments, min_size=1, max_size=5)))
    query = draw(st.sampled_from(["", "partitions=1", "organizationId=42", "a=%2B&b="]))
    return RequestLine(method, path, query), draw(st.binary(max_size=64))


@settings(max_examples=300, deadline=None)
@given(original=requests(), other=requests(), offset=st.integers(-400, 400))
def test_a_v1_signature_authorizes_exactly_its_own_request(original, other, offset) -> None:
    """Any change of method, path, query, body or timestamp (beyond the window or to
    another second) makes the signature fail; the same request verifies."""
    secret = "s" * 64
    config = with_key(AuthConfig(), "42", SigningKey("sk_a", secret, "t"))
    line, body = original
    headers = signed_headers("sk_a", secret, line, body, now_s=NOW)
    assert org_of(config, headers, line, body) == "42"
    other_line, other_body = other
    same = (other_line.method, other_line.path, other_line.query, other_body) == (
        line.method,
        line.path,
        line.query,
        body,
    )
    assert (org_of(config, headers, other_line, other_body) == "42") == same
    moved = {**headers, "X-Leadstream-Timestamp": str(int(NOW) + (offset or 1))}
    assert org_of(config, moved, line, body, now=NOW + (offset or 1)) == 401


def test_another_organizations_key_id_or_secret_does_not_verify(config, keys) -> None:
    # The secret of org 7 under a key id of org 42, and the reverse: 401, never a 403.
    assert org_of(config, v1("sk_new", keys["other_signing"])) == 401
    assert org_of(config, v1("sk_7", keys["new"])) == 401
    assert org_of(config, v1("sk_7", keys["other_signing"])) == "7"


def test_a_request_without_body_signs_the_empty_body(config, keys) -> None:
    headers = v1("sk_new", keys["new"], GET, b"")
    found = credential(config, headers, GET, webhook=False)
    found.check_body(EMPTY_BODY_SHA256)
    # Without the content header a request states the empty body.
    bare = {k: v for k, v in headers.items() if k != CONTENT_SHA256_HEADER}
    credential(config, bare, GET, webhook=False).check_body(EMPTY_BODY_SHA256)
    with pytest.raises(AuthError):  # a body sent with it is not the signed one
        found.check_body(hashlib.sha256(b"x").hexdigest())
    delete = RequestLine("DELETE", GET.path, GET.query)
    with pytest.raises(AuthError):
        credential(config, headers, delete, webhook=False)


# -- body-only signatures ------------------------------------------------------------------


def test_body_only_signatures_work_on_webhooks_only(config, keys) -> None:
    signature = {"X-Leadstream-Signature": sign(keys["new"], BODY)}
    assert org_of(config, signature) == "42"
    assert org_of(config, {"X-Setter-Signature": sign(keys["old"], BODY)}) == "42"
    assert org_of(config, signature, webhook=False) == 401
    assert org_of(config, signature, GET, webhook=False) == 401


def test_a_body_only_signature_tries_only_the_named_organizations_keys(config, keys) -> None:
    # The body names 42: a secret of 7 does not verify, whatever 7's own keys.
    assert org_of(config, {"X-Leadstream-Signature": sign(keys["other_signing"], BODY)}) == 401
    body7 = BODY.replace(b'"42"', b"7")
    assert org_of(
        config, {"X-Leadstream-Signature": sign(keys["other_signing"], body7)}, body=body7
    )
    # No organizationId and no key id: nothing to check it against.
    bare = b'{"campaignId": "c"}'
    assert org_of(config, {"X-Leadstream-Signature": sign(keys["new"], bare)}, body=bare) == 401
    # With a key id: that key only, whatever the body names.
    keyed = {"X-Leadstream-Signature": sign(keys["new"], bare), "X-Leadstream-Key-Id": "sk_new"}
    assert org_of(config, keyed, body=bare) == "42"
    wrong_key = {**keyed, "X-Leadstream-Key-Id": "sk_old"}
    assert org_of(config, wrong_key, body=bare) == 401
    assert org_of(config, {**keyed, "X-Leadstream-Key-Id": "sk_nope"}, body=bare) == 401


def test_body_only_timestamps_are_signed_and_fresh(config, keys) -> None:
    ts = str(int(NOW))
    fresh = {"X-Leadstream-Signature": sign(keys["new"], BODY, ts), "X-Leadstream-Timestamp": ts}
    assert org_of(config, fresh) == "42"
    stale = str(int(NOW) - 301)
    old = {
        "X-Leadstream-Signature": sign(keys["new"], BODY, stale),
        "X-Leadstream-Timestamp": stale,
    }
    assert org_of(config, old) == 401
    moved = {**fresh, "X-Leadstream-Timestamp": str(int(NOW) - 1)}
    assert org_of(config, moved) == 401


def test_an_organization_can_require_timestamps_or_turn_body_signatures_off(config, keys) -> None:
    strict = with_timestamp_required(config, "42", True)
    assert org_of(strict, {"X-Leadstream-Signature": sign(keys["new"], BODY)}) == 401
    ts = str(int(NOW))
    stamped = {"X-Leadstream-Signature": sign(keys["new"], BODY, ts), "X-Leadstream-Timestamp": ts}
    assert org_of(strict, stamped) == "42"
    off = with_body_signatures(config, "42", False)
    assert org_of(off, stamped) == 401
    keyed = {**stamped, "X-Leadstream-Key-Id": "sk_new"}
    with pytest.raises(AuthError):  # known from the headers: refused before the body
        credential(off, keyed)
    # v1 signatures and API keys of that organization still work, and body-only
    # signatures of the others.
    assert org_of(off, v1("sk_new", keys["new"])) == "42"
    assert org_of(off, {"Authorization": f"Bearer {keys['api']}"}) == "42"
    body7 = BODY.replace(b'"42"', b"7")
    assert org_of(off, {"X-Setter-Signature": sign(keys["other_signing"], body7)}, body=body7)
    assert org_of(with_body_signatures(off, "42", True), stamped) == "42"


def test_a_body_only_credential_is_known_by_its_key_id_when_sent(config, keys) -> None:
    keyed = {"X-Leadstream-Signature": sign(keys["new"], BODY), "X-Leadstream-Key-Id": "sk_new"}
    found = credential(config, keyed)
    assert isinstance(found, BodySigned) and found.org == "42"
    found = credential(config, {"X-Leadstream-Signature": sign(keys["new"], BODY)})
    assert isinstance(found, BodySigned) and found.org is None


def test_body_organization_reads_one_field_of_any_body() -> None:
    assert body_organization(BODY) == "42"
    assert body_organization(b'{"events": [1, 2], "organizationId": 7}') == 7
    for odd in (b"", b"[]", b"null", b"{", b'{"organizationId": [1]}', b"\xff"):
        assert body_organization(odd) is None


# -- the cluster's key ---------------------------------------------------------------------


def test_the_cluster_key_signs_only_where_the_web_layer_allows_it(config) -> None:
    line = RequestLine("POST", "/api/v1/sends/preview", "partitions=1&to=x")
    headers = signed_headers(CLUSTER_KEY_ID, CLUSTER_SECRET, line, BODY, now_s=NOW)
    assert org_of(config, headers, line, webhook=False, cluster=True) == "cluster"
    assert org_of(config, headers, line, webhook=False, cluster=False) == 401
    without = read_credential
    with pytest.raises(AuthError):
        without(AuthIndex.of(config), headers, line, now_s=NOW, body_signatures=False, cluster=True)
    # A tenant's signing key that claims the name is never the cluster's.
    named = with_key(config, "42", SigningKey(CLUSTER_KEY_ID, "t" * 64, "t"))
    forged = signed_headers(CLUSTER_KEY_ID, "t" * 64, line, BODY, now_s=NOW)
    assert org_of(named, forged, line, webhook=False, cluster=True) == 401


# -- the index -----------------------------------------------------------------------------


def test_the_index_names_each_active_credential_once(config, keys) -> None:
    index = AuthIndex.of(revoked(config, "42", "sk_old", "later"))
    assert index.api_keys == {hash_api_key(keys["api"]): "42", hash_api_key(keys["other_api"]): "7"}
    assert set(index.signers) == {"sk_new", "sk_7"}
    assert index.signers["sk_new"].org == "42"
    assert index.body_secrets["42"] == (keys["new"].encode(),)


def test_checking_a_request_does_not_grow_with_the_organizations(monkeypatch) -> None:
    """A v1 signature costs one HMAC, a body-only one an HMAC per key of the organization
    the body names: with 5,000 organizations of 3 keys each (the loop over every key of
    every organization this replaced took 15,000 HMACs of the body)."""
    big = AuthConfig({str(o): _org_with_keys(o) for o in range(5000)})
    index = AuthIndex.of(big)
    macs: list[bytes] = []
    real = hmac.new

    def counted(key: bytes, *args: Any, **kwargs: Any) -> Any:
        macs.append(key)
        return real(key, *args, **kwargs)

    monkeypatch.setattr("leadstream.domain.auth.hmac.new", counted)
    headers = signed_headers("sk_4999_2", "s4999_2", LINE, BODY, now_s=NOW)
    macs.clear()
    found = read_credential(index, headers, LINE, now_s=NOW, body_signatures=True, cluster=False)
    assert isinstance(found, SignedRequest)
    found.check_body(hashlib.sha256(BODY).hexdigest())
    assert found.org == "4999" and len(macs) == 1
    body = b'{"organizationId": 4999}'
    signature = {"X-Leadstream-Signature": sign("s4999_1", body)}
    macs.clear()
    pending = read_credential(
        index, signature, LINE, now_s=NOW, body_signatures=True, cluster=False
    )
    assert verify_body_signature(index, pending, body, "4999") == "4999"
    assert 1 <= len(macs) <= 3
    forged = {"X-Leadstream-Signature": "sha256=" + "0" * 64}
    pending = read_credential(index, forged, LINE, now_s=NOW, body_signatures=True, cluster=False)
    macs.clear()
    with pytest.raises(AuthError):
        verify_body_signature(index, pending, body, "4999")
    assert len(macs) == 3


def _org_with_keys(o: int) -> OrgAuth:
    return OrgAuth(
        [ApiKey(f"ak_{o}", hash_api_key(f"lsk_{o}"), "t")],
        [SigningKey(f"sk_{o}_{k}", f"s{o}_{k}", "t") for k in range(3)],
    )


def test_the_auth_file_index_is_rebuilt_when_the_file_changes(tmp_path, config, keys) -> None:
    path = tmp_path / "auth.json"
    auth = AuthFile(path, CLUSTER_SECRET)
    assert auth.index().api_keys == {}
    save_auth(path, config)
    first = auth.index()
    assert first is auth.index()  # not rebuilt per request
    assert first.signers["sk_new"].org == "42" and first.cluster_secret == CLUSTER_SECRET.encode()
    save_auth(path, revoked(config, "42", "sk_new", "later"))
    assert "sk_new" not in auth.index().signers
    path.unlink()
    assert auth.index().signers == {}


# -- headers that cannot be credentials ------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer caf\u00e9"},
        {"Authorization": "Bearer \udcff\udcfe"},  # undecodable bytes, as aiohttp passes them
        {"Authorization": "Bearer "},
        {"Authorization": ""},
        {"Authorization": "Bearer " + "x" * 10_000},
        {"Authorization": "Bearer a\x00b"},
        {"X-Leadstream-Signature": ""},
        {"X-Leadstream-Signature": "v1="},
        {"X-Leadstream-Signature": "sha256=\u00e9" * 3},
        {"X-Leadstream-Signature": "v1=" + "a" * 64, "X-Leadstream-Key-Id": "sk_\u00e9"},
        {"X-Leadstream-Signature": "v1=" + "a" * 64, "X-Leadstream-Key-Id": "x" * 5000},
        {"X-Leadstream-Signature": "v1=" + "a" * 64, "X-Leadstream-Timestamp": "\u0661" * 10},
        {"X-Setter-Signature": "md5=abc"},
    ],
)
def test_a_header_that_cannot_be_a_credential_is_401(config, headers) -> None:
    assert org_of(config, headers) == 401


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(
        [
            "Authorization",
            "X-Leadstream-Signature",
            "X-Setter-Signature",
            "X-Leadstream-Key-Id",
            "X-Leadstream-Timestamp",
        ]
    ),
    value=st.one_of(st.text(max_size=600), st.just("v1=" + "0" * 64), st.just("Bearer x")),
)
def test_any_header_value_is_401_or_a_credential_never_another_error(name, value) -> None:
    config = with_key(AuthConfig(), "42", SigningKey("sk_a", "s" * 64, "t"))
    base = {"X-Leadstream-Signature": "v1=" + "0" * 64, "X-Leadstream-Key-Id": "sk_a"}
    assert org_of(config, {**base, name: value}) in (401, "42")


# -- the file --------------------------------------------------------------------------------


def test_revoking_an_unknown_key_is_an_error(config) -> None:
    with pytest.raises(KeyError):
        revoked(config, "42", "nope", "t")
    with pytest.raises(KeyError):
        revoked(config, "nobody", "ak1", "t")


def test_auth_file_round_trip_is_private_and_old_files_read(tmp_path, config) -> None:
    path = tmp_path / "sub" / "auth.json"
    assert load_auth(path) == AuthConfig()
    save_auth(path, config)
    assert load_auth(path) == config
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A file written before body_signatures existed: they stay accepted.
    path.write_text('{"organizations": {"42": {"api_keys": [], "signing_keys": []}}}')
    assert load_auth(path).organizations["42"].body_signatures is True
