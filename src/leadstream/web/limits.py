"""How many requests the HTTP API takes on at once, and how fast, per worker and per
organization: a request is admitted with a :class:`Ticket` and refused with a
:class:`Refusal` (503 or 429, with the seconds after which to retry), never queued.

* requests in flight per worker (``LEADSTREAM_HTTP_MAX_IN_FLIGHT``): 503;
* requests in flight per organization (``..._PER_ORG``): 429, so that one organization's
  flood leaves the others their share;
* requests per second per organization: a token bucket (``LEADSTREAM_HTTP_ORG_RATE``,
  ``..._ORG_BURST``): 429;
* bodies read before their organization is known (a body-only webhook signature without
  a key id, ``LEADSTREAM_HTTP_MAX_UNVERIFIED_BODIES``): 503.

An organization is counted only once a credential names it (a valid API key or a known
signing key id), so that a stranger's requests never spend an organization's budget of
requests, and the tables here hold only organizations of the auth file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Limits", "Refusal", "RequestLimits", "Ticket", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers (settings.py, ``LEADSTREAM_HTTP_*``)."""

    max_in_flight: int
    max_in_flight_per_org: int
    org_rate: float
    org_burst: int
    max_unverified: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request not taken on now: its status, error code, message and Retry-After."""

    status: int
    code: str
    message: str
    retry_after: int


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a request takes one."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._at = float(burst), now

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class RequestLimits:
    """The counters of one worker's HTTP API (used on its event loop only)."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._in_flight = 0
        self._by_org: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._unverified = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def admit(self) -> Ticket | Refusal:
        """A place among the worker's requests in flight, or 503."""
        if self._in_flight >= self.limits.max_in_flight:
            return Refusal(
                503, "overloaded", "this worker serves as many requests as it takes; retry", 1
            )
        self._in_flight += 1
        return Ticket(self)

    def take_org(self, org: str) -> Refusal | None:
        held = self._by_org.get(org, 0)
        if held >= self.limits.max_in_flight_per_org:
            return Refusal(
                429,
                "too_many_requests",
                f"at most {self.limits.max_in_flight_per_org} requests of an organization at"
                " once per worker; retry",
                1,
            )
        now = self._clock()
        bucket = self._buckets.get(org)
        if bucket is None:
            bucket = self._buckets[org] = TokenBucket(
                self.limits.org_rate, self.limits.org_burst, now
            )
        wait = bucket.take(now)
        if wait > 0:
            return Refusal(
                429,
                "rate_limited",
                f"at most {self.limits.org_rate:g} requests a second per organization and"
                " worker; retry",
                max(1, math.ceil(wait)),
            )
        self._by_org[org] = held + 1
        return None

    def give_org(self, org: str) -> None:
        held = self._by_org.get(org, 0) - 1
        if held > 0:
            self._by_org[org] = held
        else:
            self._by_org.pop(org, None)

    def take_unverified(self) -> Refusal | None:
        if self._unverified >= self.limits.max_unverified:
            return Refusal(
                503,
                "overloaded",
                "too many bodies signed without X-Leadstream-Key-Id are being read; retry,"
                " or send the key id",
                1,
            )
        self._unverified += 1
        return None

    def give_unverified(self) -> None:
        self._unverified -= 1

    def give_back(self) -> None:
        self._in_flight -= 1


class Ticket:
    """One admitted request's places in the counters, each given back once (:meth:`close`
    at the answer gives back whatever is still held)."""

    __slots__ = ("_closed", "_limits", "_org", "_unverified")

    def __init__(self, limits: RequestLimits) -> None:
        self._limits = limits
        self._org: str | None = None
        self._unverified = False
        self._closed = False

    @property
    def org(self) -> str | None:
        """The organization this request is counted for, once it is."""
        return self._org

    def join_org(self, org: str) -> Refusal | None:
        """Count the request for ``org`` (once; a second call is a no-op), or 429."""
        if self._org is not None:
            return None
        refused = self._limits.take_org(org)
        if refused is None:
            self._org = org
        return refused

    def start_unverified(self) -> Refusal | None:
        """Take a place among the bodies read before their organization is known, or 503."""
        refused = self._limits.take_unverified()
        self._unverified = refused is None
        return refused

    def end_unverified(self) -> None:
        if self._unverified:
            self._unverified = False
            self._limits.give_unverified()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.end_unverified()
        if self._org is not None:
            self._limits.give_org(self._org)
        self._limits.give_back()
