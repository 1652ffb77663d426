"""Holdouts and splits (docs/contract.md, section 3.7): every lead has a bucket 0..9999,
a keyed hash of (organizationId, phone, salt), so that a control group or a copy's share
stays the same lead after lead, send after send.

The secret is the organization's in the partition that holds the lead: derived from a
random key the partition makes once (``Q``, logged with its other keys, so a restore, a
standby or a rebuild has the same) and never leaves the worker's state. Nobody outside
can compute a lead's bucket, so nobody can choose phones into or out of a control group.
A lead lives in one partition for good (the partition count is fixed), so its bucket is
stable; the buckets of two salts are independent.

The hash: a SipHash-2-4 key from a keyed BLAKE2b of (organizationId, salt) under the
secret, then SipHash-2-4 of the phone's digits as one 64-bit word, modulo 10,000. SipHash
on one word is a few dozen additions, rotations and xors, done here with numpy for a
whole send's leads at once (a million in tens of milliseconds).

The holdout takes buckets ``[0, 100 * percent)``; the splits share the rest in
consecutive ranges, in list order, in proportion to their percents.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from leadstream.domain.rejects import Reason, RowError

__all__ = [
    "BUCKETS",
    "KEY_BYTES",
    "Allocation",
    "Holdout",
    "Split",
    "bucket_key",
    "bucket_of",
    "buckets_of",
    "new_partition_key",
    "organization_secret",
    "parse_holdout",
    "parse_splits",
    "siphash24",
]

BUCKETS = 10_000
KEY_BYTES = 32
MAX_HOLDOUT_PERCENT = 50
MAX_SPLITS = 10
MAX_NAME_CHARS = 64
MAX_SALT_CHARS = 128


@dataclass(frozen=True, slots=True)
class Holdout:
    percent: int
    salt: str = ""


@dataclass(frozen=True, slots=True)
class Split:
    name: str
    percent: int


def _invalid(path: str, message: str) -> RowError:
    return RowError(Reason.INVALID_CONDITIONS, f"{path}: {message}", field=path)


def _percent(value: Any, path: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise _invalid(path, f"must be an integer from 0 to {high}")
    return value


def _text(value: Any, path: str, low: int, high: int) -> str:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise _invalid(path, f"must be a string of {low} to {high} characters")
    if not value.isprintable():
        raise _invalid(path, "must not hold control characters")
    return value


def parse_holdout(doc: Any) -> Holdout:
    if not isinstance(doc, dict):
        raise _invalid("holdout", 'must be {"percent": 0..50, "salt"?: string}')
    for name in doc:
        if name not in ("percent", "salt"):
            raise _invalid(f"holdout.{name}"[:120], "not a field of holdout")
    if "percent" not in doc:
        raise _invalid("holdout.percent", "is missing")
    percent = _percent(doc["percent"], "holdout.percent", MAX_HOLDOUT_PERCENT)
    salt = _text(doc["salt"], "holdout.salt", 0, MAX_SALT_CHARS) if "salt" in doc else ""
    return Holdout(percent, salt)


def parse_splits(doc: Any) -> tuple[Split, ...]:
    if not isinstance(doc, list) or not 1 <= len(doc) <= MAX_SPLITS:
        raise _invalid("splits", f"must be an array of 1 to {MAX_SPLITS} splits")
    out: list[Split] = []
    for i, item in enumerate(doc):
        path = f"splits[{i}]"
        if not isinstance(item, dict):
            raise _invalid(path, 'must be {"name": string, "percent": int}')
        for name in item:
            if name not in ("name", "percent"):
                raise _invalid(f"{path}.{name}"[:120], "not a field of a split")
        name = _text(item.get("name"), f"{path}.name", 1, MAX_NAME_CHARS)
        if any(s.name == name for s in out):
            raise _invalid(f"{path}.name", f"{name!r} names two splits")
        out.append(Split(name, _percent(item.get("percent"), f"{path}.percent", 100)))
    total = sum(s.percent for s in out)
    if total != 100:
        raise _invalid("splits", f"the percents add up to {total}, not 100")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Allocation:
    """What a send does with buckets: ``held`` buckets ``[0, held)`` are held out, then
    each split's ``[start, end)``."""

    held: int
    ranges: tuple[tuple[str, int, int], ...]

    @classmethod
    def of(cls, holdout: Holdout | None, splits: Sequence[Split]) -> Allocation:
        held = 0 if holdout is None else 100 * holdout.percent
        rest = BUCKETS - held
        ranges = []
        done = 0
        for split in splits:
            start = held + rest * done // 100
            done += split.percent
            ranges.append((split.name, start, held + rest * done // 100))
        return cls(held, tuple(ranges))

    def variant(self, bucket: int) -> tuple[bool, str | None]:
        """``(held out, the split's name or None)`` of a bucket."""
        if bucket < self.held:
            return True, None
        for name, start, end in self.ranges:
            if start <= bucket < end:
                return False, name
        return False, None


def new_partition_key() -> bytes:
    return os.urandom(KEY_BYTES)


def organization_secret(partition_key: bytes, org: str) -> bytes:
    """The organization's secret in a partition: its buckets' key."""
    return hmac.digest(partition_key, b"leadstream bucket\x00" + org.encode(), "sha256")


def bucket_key(secret: bytes, org: str, salt: str) -> tuple[int, int]:
    """The SipHash key of an organization's buckets under ``salt`` (both parts
    length-prefixed, so that no two (org, salt) share a message)."""
    parts = [p.encode() for p in (org, salt)]
    message = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    digest = hashlib.blake2b(message, key=secret, digest_size=16, person=b"leadstream-bkt").digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")


_U64 = np.uint64


def _rotl(x: npt.NDArray[np.uint64], b: int) -> npt.NDArray[np.uint64]:
    return (x << _U64(b)) | (x >> _U64(64 - b))


def siphash24(key: tuple[int, int], words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SipHash-2-4 of each of ``words`` as an 8-byte message (the word little-endian)."""
    k0, k1 = _U64(key[0]), _U64(key[1])
    n = len(words)
    v0 = np.full(n, k0 ^ _U64(0x736F6D6570736575), np.uint64)
    v1 = np.full(n, k1 ^ _U64(0x646F72616E646F6D), np.uint64)
    v2 = np.full(n, k0 ^ _U64(0x6C7967656E657261), np.uint64)
    v3 = np.full(n, k1 ^ _U64(0x7465646279746573), np.uint64)

    def rounds(count: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(count):
            v0 = v0 + v1
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = v2 + v3
            v3 = _rotl(v3, 16) ^ v2
            v0 = v0 + v3
            v3 = _rotl(v3, 21) ^ v0
            v2 = v2 + v1
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    with np.errstate(over="ignore"):
        v3 = v3 ^ words
        rounds(2)
        v0 = v0 ^ words
        last = _U64(8 << 56)  # the message's length, in the last block
        v3 = v3 ^ last
        rounds(2)
        v0 = v0 ^ last
        v2 = v2 ^ _U64(0xFF)
        rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def buckets_of(key: tuple[int, int], numbers: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The buckets of phones given as their E.164 digits (``+12125550100`` is
    12125550100), at once."""
    hashed = siphash24(key, numbers.astype(np.uint64))
    return (hashed % _U64(BUCKETS)).astype(np.int64)


def bucket_of(secret: bytes, org: str, phone: str, salt: str) -> int:
    """One lead's bucket 0..9999 under ``salt`` (``phone`` in E.164)."""
    number = np.array([int(phone[1:])], np.int64)
    return int(buckets_of(bucket_key(secret, org, salt), number)[0])
