"""Holdouts and splits (docs/contract.md, section 3.7): every lead has a bucket 0..9999,
a keyed hash of (organizationId, phone, salt), so that a control group or a copy's share
stays the same lead after lead, send after send.

The key is the organization's secret in the partition that holds the lead: derived from
a random key the partition makes once (``Q``, logged with its other keys, so a restore, a
standby or a rebuild has the same) and never leaves the worker's state. Nobody outside
can compute a lead's bucket, so nobody can choose phones into or out of a control group.
A lead lives in one partition for good (the partition count is fixed), so its bucket is
stable; the buckets of two salts are independent.

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

from leadstream.domain.rejects import Reason, RowError

__all__ = [
    "BUCKETS",
    "KEY_BYTES",
    "Allocation",
    "Holdout",
    "Split",
    "bucket_of",
    "new_partition_key",
    "organization_secret",
    "parse_holdout",
    "parse_splits",
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


def bucket_of(secret: bytes, org: str, phone: str, salt: str) -> int:
    """The lead's bucket 0..9999 under ``salt`` (a keyed BLAKE2b of its parts, each
    length-prefixed so that no two (org, phone, salt) share a message)."""
    parts = [p.encode() for p in (org, phone, salt)]
    message = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    digest = hashlib.blake2b(message, key=secret, digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS
