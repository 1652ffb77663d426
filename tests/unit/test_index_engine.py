"""The index engine (:mod:`leadstream.index`) evaluates every send exactly as the contract says.

Three engines are compared on random histories:

* the index engine: ``materialize_partition`` / ``evaluate``, set algebra on each
  partition's in-memory index, kept current by the writers (``apply_events``,
  ``apply_members``, ``compact_partition``);
* the per-lead engine: ``SendRules.outcome`` on ``lead_history``, one lead at a time;
* :class:`Model`, a brute-force reference written here from the contract's text over the
  list of operations the test applied. It never reads the store or an index.

What :class:`Model` models beyond the plain contract, on purpose (it is what the product
documents, see ``leadstream.domain.lead_index``):

* windows see event keys only: a window that reaches before the latest compaction horizon
  does not see the folded events (sticky counts and opt-outs do). The model keeps the
  folded events apart and asserts that a window starting at or after that horizon is the
  contract's raw count;
* ``apply_events`` drops an event not newer than the newest folded event of its (lead,
  eventType) as a duplicate, even one never seen (it cannot be told apart from a replay),
  whatever horizon it is given. Generated: replays of folded events, old events around
  the folded maximum, and horizons that move back (retention raised, a clock behind);
* a ``where`` condition counts event keys only (folded events keep no metadata), each
  with the metadata first stored for it;
* an erase forgets the lead's events, memberships and place in committed sends; a lead
  opted out when erased leaves a suppression (an opt-out at the erase) that a later lead
  of the same phone inherits. An erase of a lead not opted out (it came back and opted
  in) takes an earlier suppression of the phone with it; an erase of an unknown phone
  changes nothing.

The compliance controls are generated too: frequency caps over random committed sends
(``record_send`` + ``deliver_send`` of earlier sends, the materializer's step 7), quiet
hours over phones of several countries and zones (the reference works out local times
with :mod:`zoneinfo` from the zones written out below), and event filters with ``where``
over events with small random metadata.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from pyroaring import BitMap

from leadstream.domain.audience import MemberOp
from leadstream.domain.controls import FrequencyCap, QuietHours, Where, parse_where, phone_zones
from leadstream.domain.erase import Erased, erase_lead
from leadstream.domain.evaluate import (
    Evaluation,
    _EventSource,
    evaluate,
    has_event,
    materialize_partition,
)
from leadstream.domain.explain import (
    Step,
    deliver_send,
    explain_lead,
    read_send_record,
    received_sends,
    record_send,
)
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import (
    LeadHistory,
    apply_events,
    compact_partition,
    lead_history,
)
from leadstream.domain.partitioning import group_by_partition, lead_partition
from leadstream.domain.send_state import apply_members
from leadstream.domain.sends import (
    AudienceFilterSpec,
    Counts,
    EventFilter,
    Outcome,
    SendRules,
    SendTrigger,
    campaign_members,
    filter_parts,
    keeps,
)
from leadstream.index import durable
from leadstream.index.partition import build
from leadstream.index.table import IndexedStore
from leadstream.index.timeline import HOUR_MS, TRACKED_COUNTS
from leadstream.state import keys
from leadstream.state.memory import MemoryStore
from leadstream.wire.records import decode_recipient
from tests.support.changelog import LoggedStore, Standby
from tests.support.stores import assert_indexes_rebuild_equal, indexed_memory

PARTITIONS = 4
MIN = 60_000
HOUR = HOUR_MS
BASE = 480_000 * HOUR  # an hour boundary (2024-10-04T00:00Z): buckets start here
SPAN_HOURS = 4  # sends fire in [BASE, BASE + 4 h); events fall in [BASE - 1 h, BASE + 4 h]
# Prefix-sharing identifiers on purpose.
ORGS = ["a", "ab"]
CAMPAIGNS = ["c1", "c10"]
PHONES = ["+1555", "+15550", "+155501", "+1556", "+2", "+21"]
# Numbers of several countries, and the IANA zones libphonenumber places them in (the
# prefix-sharing ones above are in none: quiet, unless the rule names a zone).
ZONES: dict[str, tuple[str, ...]] = {
    "+12125550123": ("America/New_York",),
    "+14155550123": ("America/Los_Angeles",),
    "+61412345678": (  # an Australian mobile: every Australian zone, and two islands
        "Australia/Adelaide",
        "Australia/Brisbane",
        "Australia/Eucla",
        "Australia/Lord_Howe",
        "Australia/Perth",
        "Australia/Sydney",
        "Indian/Christmas",
        "Indian/Cocos",
    ),
    "+34612345678": ("Atlantic/Canary", "Europe/Madrid"),  # a Spanish mobile
}
PHONES += list(ZONES)
NY, LA, AU, ES = ZONES
RULE_ZONES = [None, None, "America/New_York", "Australia/Perth", "Europe/Madrid", "Asia/Tokyo"]
# Small metadata, and the conditions asked of it (1 == 1.0, True is no number, null is
# not missing).
METADATA: list[bytes | None] = [
    None,
    *(
        msgspec.json.encode(doc)
        for doc in (
            {"plan": "a"},
            {"plan": "b"},
            {"plan": "a", "n": 1},
            {"plan": "b", "n": 1.0},
            {"n": True},
            {"n": None},
        )
    ),
]
REPLAYED_METADATA = msgspec.json.encode({"plan": "z"})  # never the first: never counts
WHERES: list[Where] = [
    parse_where(doc)
    for doc in (
        {"plan": "a"},
        {"plan": {"in": ["a", "b"]}},
        {"n": 1},
        {"n": True},
        {"n": None},
        {"plan": "a", "n": 1.0},
    )
]
EXTERNAL_IDS = ["x1", "x2", "X1"]
OPT_OUT, OPT_IN = "opted_out", "opted_in"
TYPES = ["buy", "buy_more", OPT_OUT, OPT_IN]
OPT_TYPES = (OPT_OUT, OPT_IN)
OPT = {"opt_out_type": OPT_OUT, "opt_in_type": OPT_IN}
MATERIALIZED_AT = BASE + 10 * HOUR
STEP_OF = {
    Outcome.RECIPIENT: Step.RECIPIENT,
    Outcome.OPTED_OUT: Step.OPTED_OUT,
    Outcome.DROPPED_BY_AUDIENCE_FILTER: Step.AUDIENCE_FILTER,
    Outcome.DROPPED_BY_EVENT_FILTER: Step.EVENT_FILTER,
    Outcome.DROPPED_BY_FREQUENCY_CAP: Step.FREQUENCY_CAP,
    Outcome.DROPPED_BY_QUIET_HOURS: Step.QUIET_HOURS,
}

EventKey = tuple[str, str, str, int]  # (org, phone, eventType, occurredAt)
LeadType = tuple[str, str, str]  # (org, phone, eventType)


def note(what: str) -> None:
    """Coverage statistics (``--hypothesis-show-statistics``); a no-op outside a property."""
    if currently_in_test_context():
        hypothesis_event(what)


# --- the reference ---------------------------------------------------------------------------


@dataclass
class Model:
    """The contract, by brute force over the operations applied (see the module docstring)."""

    horizon: int = 0  # the retention horizon: apply_events and compactions are given it
    compacted: int = 0  # the latest horizon any compaction had (0: none yet)
    events: set[EventKey] = field(default_factory=set)  # every distinct event, folded or not
    live: set[EventKey] = field(default_factory=set)  # those still event keys (not folded)
    folded_max: dict[LeadType, int] = field(default_factory=dict)
    members: dict[tuple[str, str, str], str | None] = field(default_factory=dict)
    # Each event's metadata: the first stored for its key.
    metadata: dict[EventKey, bytes | None] = field(default_factory=dict)
    # Leads (org, phone) that exist: given an id by an event or a membership, not erased.
    leads: set[tuple[str, str]] = field(default_factory=set)
    # Committed sends: (org, sendId) -> (scheduledFor, the phones they messaged).
    delivered: dict[tuple[str, str], tuple[int, set[str]]] = field(default_factory=dict)
    # Phones erased while opted out: (org, phone) -> erased at.
    suppressed: dict[tuple[str, str], int] = field(default_factory=dict)

    # -- writes -----------------------------------------------------------------------

    def apply(self, events: Iterable[LeadEvent]) -> tuple[int, int]:
        inserted = duplicates = 0
        for e in events:
            key = (e.organization_id, e.phone, e.event_type, e.occurred_at)
            newest_folded = self.folded_max.get(key[:3])
            if newest_folded is not None and key[3] <= newest_folded:
                duplicates += 1  # indistinguishable from a replay of a folded event
                continue
            self.leads.add(key[:2])
            if key in self.events:
                duplicates += 1
            else:
                self.events.add(key)
                self.live.add(key)
                self.metadata[key] = e.metadata
                inserted += 1
        return inserted, duplicates

    def member(self, op: MemberOp) -> None:
        lead = (op.organization_id, op.campaign_id, op.phone)
        if op.remove:
            self.members.pop(lead, None)
        else:
            self.members[lead] = op.external_id
            self.leads.add(lead[::2])

    def restore(self, folded: Iterable[EventKey]) -> None:
        """Keys of folded events are back (a changelog restore): windows see them again;
        sticky counts and opt-outs do not change."""
        self.live.update(folded)

    def compact(self) -> int:
        old = [k for k in self.live if k[3] < self.horizon]
        for key in old:
            self.live.discard(key)
            self.folded_max[key[:3]] = max(self.folded_max.get(key[:3], -1), key[3])
        self.compacted = max(self.compacted, self.horizon)
        return len(old)

    def deliver(self, send: Send) -> None:
        """A send's output is committed: its recipients count against frequency caps."""
        trigger = send.trigger
        recipients, _ = self.send(send)
        self.delivered[(trigger.organization_id, trigger.send_id)] = (
            trigger.scheduled_for,
            {phone for phone, _ in recipients},
        )

    def erase(self, org: str, phone: str, now: int) -> Erased:
        """What erase_lead answers, and everything the lead was forgotten."""
        mine = {k for k in self.events if k[:2] == (org, phone)}
        campaigns = [c for o, c, p in self.members if (o, p) == (org, phone)]
        known = (org, phone) in self.leads
        was_opted_out = known and self.opted_out(org, phone)
        self.events -= mine
        self.live -= mine
        for key in mine:
            del self.metadata[key]
        for lead_type in [lt for lt in self.folded_max if lt[:2] == (org, phone)]:
            del self.folded_max[lead_type]
        for campaign in campaigns:
            del self.members[(org, campaign, phone)]
        for (o, _), (_, phones) in self.delivered.items():
            if o == org:
                phones.discard(phone)
        self.leads.discard((org, phone))
        if was_opted_out:
            self.suppressed[(org, phone)] = now
        elif known:
            self.suppressed.pop((org, phone), None)
        return Erased(len(mine), len(campaigns), (org, phone) in self.suppressed)

    # -- the contract's questions -----------------------------------------------------

    def opted_out(self, org: str, phone: str) -> bool:
        """The latest opt event by occurredAt decides; on the same instant opted_out wins.
        A suppression is an opt-out at the erase."""
        opts = [(ts, t) for o, p, t, ts in self.events if (o, p) == (org, phone) and t in OPT_TYPES]
        suppressed = self.suppressed.get((org, phone))
        if suppressed is not None:
            opts.append((suppressed, OPT_OUT))
            note("a suppressed phone")
        if not opts:
            return False
        latest = max(ts for ts, _ in opts)
        return (latest, OPT_OUT) in opts

    def matching(self, org: str, phone: str, f: EventFilter, at: int) -> int:
        def counted(k: EventKey) -> bool:
            return k[:3] == (org, phone, f.event_type) and where_holds(f.where, self.metadata[k])

        if f.within_minutes is None and not f.where:
            # sticky: every event, folded ones and those after T
            return sum(1 for k in self.events if counted(k))
        if f.within_minutes is None:  # sticky with where: event keys only, any time
            return sum(1 for k in self.live if counted(k))
        lo = max(0, at - f.within_minutes * MIN)
        seen = sum(1 for k in self.live if counted(k) and lo <= k[3] <= at)
        if lo >= self.compacted:  # nothing folded is that late: the contract's raw count
            assert seen == sum(1 for k in self.events if counted(k) and lo <= k[3] <= at)
        return seen

    def keeps(self, org: str, phone: str, f: EventFilter, at: int) -> bool:
        has = self.matching(org, phone, f, at) >= f.min_count
        if has and f.min_count > TRACKED_COUNTS:
            note(f"minCount > {TRACKED_COUNTS} met ({'window' if f.within_minutes else 'sticky'})")
        elif has and f.min_count > 1 and f.within_minutes is not None:
            note("window minCount > 1 met")
        if f.where:
            note(f"a where filter {'met' if has else 'not met'}")
        return has if f.mode == "include" else not has

    def received(self, org: str, phone: str) -> list[int]:
        """scheduledFor of the committed sends that messaged the lead."""
        return [
            at for (o, _), (at, phones) in self.delivered.items() if o == org and phone in phones
        ]

    def outcome(
        self,
        trigger: SendTrigger,
        audience_filter: AudienceFilterSpec | None,
        phone: str,
        external_id: str | None,
    ) -> Outcome:
        org = trigger.organization_id
        if self.opted_out(org, phone):
            note("a member opted out")
            return Outcome.OPTED_OUT
        if audience_filter is not None:
            named = phone in audience_filter.phones or (
                external_id is not None and external_id in audience_filter.external_ids
            )
            if named != (audience_filter.mode == "include"):
                note(f"dropped by an {audience_filter.mode} audience filter")
                return Outcome.DROPPED_BY_AUDIENCE_FILTER
        at = trigger.scheduled_for
        if not all(self.keeps(org, phone, f, at) for f in trigger.event_filters):
            note("dropped by an event filter")
            return Outcome.DROPPED_BY_EVENT_FILTER
        if trigger.event_filters:
            note("kept by event filters")
        cap = trigger.frequency_cap
        if cap is not None:
            lo = at - cap.within_hours * HOUR
            counted = sum(1 for t in self.received(org, phone) if lo <= t < at)
            if counted >= cap.max_sends:
                note("dropped by a frequency cap")
                return Outcome.DROPPED_BY_FREQUENCY_CAP
            note(f"kept by a frequency cap ({'some' if counted else 'no'} sends counted)")
        rule = trigger.quiet_hours
        if rule is not None:
            if quiet_by_contract(rule, ZONES.get(phone, ()), at):
                note(f"dropped by quiet hours ({len(ZONES.get(phone, ()))} zones)")
                return Outcome.DROPPED_BY_QUIET_HOURS
            note(f"kept by quiet hours ({len(ZONES.get(phone, ()))} zones)")
        return Outcome.RECIPIENT

    def audience(self, org: str, campaign: str) -> dict[str, str | None]:
        return {p: x for (o, c, p), x in self.members.items() if (o, c) == (org, campaign)}

    def send(self, send: Send) -> tuple[set[tuple[str, str | None]], Counts]:
        trigger = send.trigger
        active = send.audience_filter if trigger.audience_filter_enabled else None
        recipients = set()
        counts = Counts()
        for phone, external_id in self.audience(
            trigger.organization_id, trigger.campaign_id
        ).items():
            outcome = self.outcome(trigger, active, phone, external_id)
            counts.record(outcome)
            if outcome is Outcome.RECIPIENT:
                recipients.add((phone, external_id))
        return recipients, counts


def same_value(a: Any, b: Any) -> bool:
    """The contract's equality of a metadata value and a condition's value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def where_holds(where: Where, metadata: bytes | None) -> bool:
    if not where:
        return True
    if metadata is None:
        return False
    doc = json.loads(metadata)
    if not isinstance(doc, dict):
        return False
    return all(key in doc and any(same_value(doc[key], v) for v in values) for key, values in where)


def local_minute(zone: str, at: int) -> int:
    local = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=at)).astimezone(
        ZoneInfo(zone)
    )
    return local.hour * 60 + local.minute


def quiet_by_contract(rule: QuietHours, zones: tuple[str, ...], at: int) -> bool:
    """One zone decides alone; among several, quiet in any, unless the rule names one;
    none: the rule's zone, or quiet."""

    def quiet_in(zone: str) -> bool:
        minute = local_minute(zone, at)
        if rule.start < rule.end:
            return rule.start <= minute < rule.end
        return minute >= rule.start or minute < rule.end

    if len(zones) == 1:
        return quiet_in(zones[0])
    if rule.time_zone is not None:
        return quiet_in(rule.time_zone)
    return any(quiet_in(z) for z in zones) if zones else True


# --- what is applied and asked ---------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    trigger: SendTrigger
    audience_filter: AudienceFilterSpec | None = None  # as received (used when enabled)
    split: bool = True  # by filter_parts, as routing does; else the whole filter everywhere

    def filter_for(self, partition: int) -> AudienceFilterSpec | None:
        spec = self.audience_filter
        if spec is None or not self.split:
            return spec
        parts = filter_parts(self.trigger.organization_id, spec, PARTITIONS, rows=2)[partition]
        return AudienceFilterSpec(
            spec.mode,
            frozenset(x for ext, _ in parts for x in ext),
            frozenset(p for _, phones in parts for p in phones),
        )

    def rules(self, partition: int) -> SendRules:
        return SendRules.of(self.trigger, self.filter_for(partition), **OPT)


# Operations (plain tuples, so that @example can spell them):
#   ("events", (LeadEvent, ...))       apply_events with the current horizon
#   ("replay", n, ms | None)           apply again the n oldest and n newest events known
#                                      (other metadata: the first stored stays), after
#                                      moving the horizon to ms (forward or back)
#   ("members", (MemberOp, ...))       apply_members (adds, re-adds, removals)
#   ("restore", n)                     a changelog restore brings back the keys of the n
#                                      oldest folded events, and up to n event keys of
#                                      erased leads (their logged batches); indexes rebuilt
#   ("horizon", ms)                    the retention horizon moves (forward or back)
#   ("compact", ms, budget | None)     horizon moves, then compaction; with a budget it
#                                      crashes after that many writes, the process
#                                      restarts (indexes dropped) and compaction runs again
#   ("deliver", Send)                  an earlier send is materialized and its output
#                                      committed (record_send, deliver_send): it counts
#                                      against frequency caps; again: a no-op
#   ("erase", org, phone, ms[, bool])  erase_lead at ms (never before an earlier erase);
#                                      with True, a restore (of 6) right after
#   ("restart",)                       the worker restarts on its data: every index is
#                                      read back from what it kept on disk
#   ("crash", (LeadEvent, ...), k, n)  apply_events crashes after k writes (a partition's
#                                      keys written, its index and journal not), the
#                                      worker restarts, the events are delivered again;
#                                      the changelog never got the last n records written
#
# After every step a standby follows the changelog (restoring it in batches of any size)
# and what it would read back at a takeover is checked against a build from its own keys,
# and, while the changelog lost nothing, against the owner's index.
Op = tuple[Any, ...]


class Crash(Exception):
    pass


class CrashingStore:
    """Delegates to an indexed store and raises after ``budget`` writes (a logged batch is
    one write, which is done before the crash: keys written, the index not told)."""

    def __init__(self, inner: IndexedStore, budget: int) -> None:
        self.inner = inner
        self.budget = budget

    def put_batch(self, partition: int, items: Any, *, created_ms: int) -> None:
        self.inner.put_batch(partition, items, created_ms=created_ms)
        self._spend()

    def put_memberships(self, partition: int, items: Any, *, group: int) -> None:
        self.inner.put_memberships(partition, items, group=group)
        self._spend()

    def __getattr__(self, name: str) -> Any:  # reads: get, get_many, iter_range, index
        return getattr(self.inner, name)

    def _spend(self) -> None:
        if self.budget <= 0:
            raise Crash
        self.budget -= 1

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._spend()
        self.inner.put(partition, key, value)

    def delete(self, partition: int, key: bytes) -> None:
        self._spend()
        self.inner.delete(partition, key)


def history_of(store: IndexedStore, p: int, org: str, phone: str) -> LeadHistory:
    """A lead's history as the per-lead engine reads it (with its suppression)."""
    return lead_history(store, p, org, phone, index=store.index(p))


def assert_counts_exact(store: IndexedStore, model: Model) -> None:
    """Sticky counts and opt-outs are exact at every moment, an interrupted compaction's
    included: in the index, in each lead's history, and in the model."""
    for org in ORGS:
        for phone in PHONES:
            p = lead_partition(org, phone, PARTITIONS)
            index = store.index(p)
            org_index = index.orgs.get(org)
            lead = index.lead_id(org, phone)
            assert (lead is not None) is ((org, phone) in model.leads), (org, phone)
            history = history_of(store, p, org, phone)
            for t in TYPES:
                want = model.matching(org, phone, EventFilter("include", t), 0)
                timeline = org_index.timelines.get(t) if org_index is not None else None
                got = 0 if timeline is None or lead is None else timeline.sticky_count(lead)
                assert got == history.count(t.encode()) == want, (org, phone, t)
            opted_out = org_index is not None and lead is not None and lead in org_index.opted_out
            # A phone erased while opted out, not back (yet): its history says opted out.
            want_out = model.opted_out(org, phone)
            assert history.opt_state(OPT_OUT, OPT_IN).opted_out is want_out, (org, phone)
            assert opted_out is (want_out and lead is not None), (org, phone)


def assert_filters_exact(store: IndexedStore, model: Model, send: Send) -> None:
    """Each event filter alone (no other step masking it), over every lead of the
    organization, members or not (with ``where``: members of any campaign, the leads the
    index has a phone for): the index's answer and the per-lead keeps are the model's."""
    trigger = send.trigger
    org, at = trigger.organization_id, trigger.scheduled_for
    for f in trigger.event_filters:
        include = EventFilter("include", f.event_type, f.within_minutes, f.min_count, f.where)
        for p in range(PARTITIONS):
            index = store.index(p)
            phones = [ph for ph in PHONES if lead_partition(org, ph, PARTITIONS) == p]
            want = {ph for ph in phones if model.keeps(org, ph, include, at)}
            org_index = index.orgs.get(org)
            asked = set(phones)
            if f.where:
                asked = {ph for o, _, ph in model.members if o == org and ph in asked}
            if org_index is None:
                assert not want
            else:
                everyone = BitMap(range(index.next_id))
                if f.where:
                    has = _EventSource(store, p, index, org).has(org_index, include, at, everyone)
                else:
                    has = has_event(org_index, f, at, everyone)
                ids = {ph: index.lead_id(org, ph) for ph in asked}
                got = {ph for ph, lead in ids.items() if lead is not None and lead in has}
                assert got == want & asked, (f, p)
            for ph in phones:
                history = history_of(store, p, org, ph)
                assert keeps(history, include, at) is (ph in want), (ph, f)
                assert keeps(history, f, at) is ((ph in want) == (f.mode == "include"))


def _data(store: MemoryStore, p: int) -> list[tuple[bytes, bytes]]:
    """A partition's keys, but the index's."""
    index = keys.index_prefix()
    return [(k, v) for k, v in store.iter_range(p, b"", b"\xff") if not k.startswith(index)]


def assert_rebuild_equal(store: IndexedStore) -> None:
    """The indexes kept current equal a rebuild from the store's keys."""
    assert_indexes_rebuild_equal(store, list(range(PARTITIONS)))


class World:
    """A store driven through the writers, and the model driven by the same operations."""

    def __init__(self, sends: Sequence[Send]) -> None:
        self.log = LoggedStore()
        self.store = indexed_memory(inner=self.log)
        # A standby of the store's partitions, and whether its changelog lost a record.
        self.standby = Standby(self.log)
        self.lost = False
        self.model = Model()
        self.sends = sends
        self.groups = itertools.count(1)
        # Event keys of erased leads (with their old ids), as logged batches still hold them.
        self.erased_keys: list[tuple[int, bytes, bytes]] = []
        self.last_erase = 0

    def run(self, ops: Iterable[Op]) -> None:
        for op in ops:
            self.do(op)
            assert_rebuild_equal(self.store)
            assert_counts_exact(self.store, self.model)
            self.check_standby()

    def check_standby(self) -> None:
        """What the standby would read back, were it to take its partitions over now, is
        what it would build from its keys; with nothing lost, the owner's index."""
        rng = random.Random(len(self.log.log))
        self.standby.follow(iter(lambda: rng.randint(1, 40), None))
        replica = self.standby.store
        opt, codec = self.store._opt, self.store._codec
        for p in range(PARTITIONS):
            loaded = durable.load(replica, p, opt, codec)
            built = build(replica, p, opt, codec)
            if loaded is not None:
                assert loaded[0].snapshot() == built.snapshot(), p
            if not self.lost:
                assert loaded is not None, p
                assert loaded[0].snapshot() == self.store.index(p).snapshot(), p
                assert _data(replica, p) == _data(self.log, p), p

    def do(self, op: Op) -> None:
        kind = op[0]
        if kind == "events":
            self.apply(op[1])
        elif kind == "replay":
            if op[2] is not None:
                self.model.horizon = op[2]
            known = sorted(self.model.events, key=lambda k: (k[3], k))
            self.apply([LeadEvent(*k, REPLAYED_METADATA) for k in known[: op[1]] + known[-op[1] :]])
        elif kind == "members":
            for p, group in group_by_partition(op[1], PARTITIONS).items():
                assert apply_members(self.store, p, group, group=next(self.groups)) == len(group)
            for member_op in op[1]:
                self.model.member(member_op)
        elif kind == "restore":
            self.restore(op[1])
        elif kind == "horizon":
            self.model.horizon = op[1]
        elif kind == "compact":
            self.compact(op[1], op[2])
        elif kind == "deliver":
            self.deliver(op[1])
        elif kind == "erase":
            self.erase(*op[1:4])
            if len(op) > 4 and op[4]:
                self.restore(6)
        elif kind == "restart":
            self.restart()
        elif kind == "crash":
            self.crash(op[1], op[2], op[3])
        else:  # pragma: no cover
            raise AssertionError(op)

    def restore(self, n: int) -> None:
        """A changelog restore brings back the keys of up to ``n`` folded events (their
        logged batch was not retired yet), and up to ``n`` event keys of erased leads that
        no later write replaced, written behind the port: the partitions' indexes are
        dropped and built again, which purges the erased leads' keys once more."""
        folded = sorted(self.model.events - self.model.live, key=lambda k: (k[3], k))[:n]
        touched = set()
        restored: list[tuple[int, bytes, bytes]] = []
        for key in folded:
            org, phone, event_type, ts = key
            p = lead_partition(org, phone, PARTITIONS)
            summary = self.store.get(p, keys.compacted_key(org, phone, event_type))
            assert summary is not None
            lead = keys.decode_compacted(summary)[2]
            restored.append(
                (
                    p,
                    keys.event_key(org, phone, event_type, ts),
                    keys.event_value(lead, ts, self.model.metadata[key]),
                )
            )
        back = [(p, k, v) for p, k, v in self.erased_keys if self.store.get(p, k) is None][:n]
        restored += back
        # Written behind the port, on the owner and (from the same changelog) the standby.
        self.check_standby()
        self.standby.restore(restored)
        with self.log.unlogged():
            for p, key, value in restored:
                self.log.put(p, key, value)
                touched.add(p)
            for p in touched:  # as a restore does in the write batch of the keys it changed
                self.log.put(p, keys.index_restored_key(), b"")
        self.model.restore(folded)
        self.store.drop(touched)
        for p, key, _ in back:
            self.store.index(p)  # built: the erased lead's key is deleted again
            assert self.store.get(p, key) is None
        if folded:
            note("restored folded event keys")
        if back:
            note("restored event keys of an erased lead")

    def restart(self) -> None:
        """A new process on the same data: nothing in memory, every index read back."""
        inner = self.log
        self.store = IndexedStore(
            inner, self.store._opt, self.store._codec, hash_key=self.store._hash_key
        )
        for p in range(PARTITIONS):
            self.store.index(p)

    def crash(self, events: Sequence[LeadEvent], budget: int, lost: int) -> None:
        self.check_standby()
        crashing = CrashingStore(self.store, budget)
        try:
            for p, group in group_by_partition(events, PARTITIONS).items():
                apply_events(
                    crashing,  # type: ignore[arg-type]
                    p,
                    group,
                    horizon_ms=self.model.horizon,
                    now_ms=MATERIALIZED_AT,
                )
        except Crash:
            note("apply interrupted after its keys were written")
            if lost:
                # The process died before the changelog had the last records it wrote.
                self.standby.follow(iter(lambda: 1_000, None), until=len(self.log.log) - lost)
                self.standby.skip(lost)
                self.lost = True
                note("the changelog lost records of the write")
        self.restart()
        for p, group in group_by_partition(events, PARTITIONS).items():  # delivered again
            apply_events(
                self.store, p, group, horizon_ms=self.model.horizon, now_ms=MATERIALIZED_AT
            )
        self.model.apply(events)

    def apply(self, events: Sequence[LeadEvent]) -> None:
        inserted = duplicates = 0
        for p, group in group_by_partition(events, PARTITIONS).items():
            result = apply_events(
                self.store, p, group, horizon_ms=self.model.horizon, now_ms=MATERIALIZED_AT
            )
            inserted += result.inserted
            duplicates += result.duplicates
        assert (inserted, duplicates) == self.model.apply(events)

    def compact(self, horizon: int, budget: int | None) -> None:
        self.model.horizon = horizon
        crashed = False
        removed = 0
        if budget is not None:
            crashing = CrashingStore(self.store, budget)
            try:
                for p in range(PARTITIONS):
                    removed += compact_partition(
                        crashing,  # type: ignore[arg-type]
                        p,
                        horizon_ms=horizon,
                        max_future_skew_ms=0,
                    )
            except Crash:
                crashed = True
                note("compaction interrupted")
                self.restart()  # the process died: what it kept says so, the index is built
                # Half-compacted keys (at or below a folded maximum) must change nothing.
                assert_counts_exact(self.store, self.model)
                for send in self.sends:
                    assert_engines_agree(self.store, send)
        removed += sum(
            compact_partition(self.store, p, horizon_ms=horizon, max_future_skew_ms=0)
            for p in range(PARTITIONS)
        )
        expected = self.model.compact()
        if not crashed:
            assert removed == expected

    def deliver(self, send: Send) -> None:
        """The materializer's steps for an earlier send: record, commit, deliver_send (the
        index engine's recipients are the reference's)."""
        trigger = send.trigger
        org, send_id = trigger.organization_id, trigger.send_id
        if (org, send_id) in self.model.delivered:  # again (a crash after the commit)
            history = [self.store.get(p, keys.history_key(org, send_id)) for p in range(PARTITIONS)]
            for p in range(PARTITIONS):
                deliver_send(self.store, p, org, send_id)
            assert history == [
                self.store.get(p, keys.history_key(org, send_id)) for p in range(PARTITIONS)
            ]
            return
        got: set[tuple[str, str | None]] = set()
        for p in range(PARTITIONS):
            rules = send.rules(p)
            evaluation = evaluate(self.store.index(p), rules, store=self.store, partition=p)
            record_send(self.store, p, rules, evaluation, materialized_at=MATERIALIZED_AT)
            deliver_send(self.store, p, org, send_id)
            got.update((phone, x) for phone, x, _ in evaluation.sample(len(evaluation.recipients)))
        assert got == self.model.send(send)[0]
        self.model.deliver(send)
        note(f"a committed send with {'some' if got else 'no'} recipients")

    def erase(self, org: str, phone: str, at: int) -> None:
        now = self.last_erase = max(at, self.last_erase)
        p = lead_partition(org, phone, PARTITIONS)
        lead = self.store.index(p).lead_id(org, phone)
        mine = list(self.store.iter_range(p, *prefix_range(keys.lead_events_prefix(org, phone))))
        got = erase_lead(self.store, p, org, phone, now_ms=now)
        want = self.model.erase(org, phone, now)
        assert got == want, (org, phone)
        self.erased_keys.extend((p, k, v) for k, v in mine)
        note(f"erased {'a lead' if lead is not None else 'nobody'} ({got.suppression_kept=})")
        # Nothing of the lead is left in its partition.
        index = self.store.index(p)
        assert index.lead_id(org, phone) is None
        assert self.store.get(p, keys.lead_key(org, phone)) is None
        for prefix in (keys.lead_events_prefix(org, phone), keys.compacted_key(org, phone, "")):
            assert not list(self.store.iter_range(p, *prefix_range(prefix)))
        for campaign in CAMPAIGNS:
            assert self.store.get(p, keys.member_key(org, campaign, phone)) is None
        if lead is None:
            return
        assert received_sends(self.store, p, org, lead) == []
        assert all(lead not in r for _, r in index.orgs[org].sends.values())
        for (o, send_id), _ in self.model.delivered.items():
            if o != org:
                continue
            record = read_send_record(self.store, p, org, send_id)
            assert record is not None and record.step_of(lead) == Step.NOT_IN_AUDIENCE
            got_explained = explain_lead(self.store, p, index, record, phone, **OPT)
            assert (got_explained.step, got_explained.consistent) == (Step.NOT_IN_AUDIENCE, True)


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    return prefix, keys.prefix_upper_bound(prefix)


# --- the three checks ------------------------------------------------------------------------


def assert_index_equals_reference(store: IndexedStore, model: Model, send: Send) -> None:
    """materialize_partition summed over the partitions is the reference's send."""
    trigger = send.trigger
    recipients: list[tuple[str, str | None]] = []
    total = Counts()
    for p in range(PARTITIONS):
        result = materialize_partition(store, p, trigger, send.filter_for(p), **OPT)
        for phone, _ in result.recipients:
            assert lead_partition(trigger.organization_id, phone, PARTITIONS) == p
        recipients.extend(result.recipients)
        total.add(result.counts)
    want_recipients, want_counts = model.send(send)
    assert len(recipients) == len(set(recipients))
    assert set(recipients) == want_recipients
    assert total == want_counts
    assert total.audience == (
        len(recipients)
        + total.opted_out
        + total.dropped_by_audience_filter
        + total.dropped_by_event_filter
        + total.dropped_by_frequency_cap
        + total.dropped_by_quiet_hours
    )
    note(f"recipients: {'some' if recipients else 'none'}")


def outcome_of(evaluation: Evaluation, lead: int | None) -> Outcome | None:
    """The step the index engine gave lead id ``lead`` (None: not in the audience)."""
    found = [
        outcome
        for outcome, leads in (
            (Outcome.RECIPIENT, evaluation.recipients),
            (Outcome.OPTED_OUT, evaluation.opted_out),
            (Outcome.DROPPED_BY_AUDIENCE_FILTER, evaluation.dropped_by_audience_filter),
            (Outcome.DROPPED_BY_EVENT_FILTER, evaluation.dropped_by_event_filter),
            (Outcome.DROPPED_BY_FREQUENCY_CAP, evaluation.dropped_by_frequency_cap),
            (Outcome.DROPPED_BY_QUIET_HOURS, evaluation.dropped_by_quiet_hours),
        )
        if lead is not None and lead in leads
    ]
    assert len(found) <= 1, found  # the steps partition the audience
    return found[0] if found else None


def assert_engines_agree(store: IndexedStore, send: Send) -> None:
    """For every member, SendRules.outcome on its history (and the committed sends it
    received) is the index engine's step."""
    trigger = send.trigger
    org = trigger.organization_id
    for p in range(PARTITIONS):
        rules = send.rules(p)
        index = store.index(p)
        evaluation = evaluate(index, rules, store=store, partition=p)
        members = list(campaign_members(store, p, org, trigger.campaign_id))
        assert len(evaluation.audience) == len(members)
        for phone, external_id in members:
            lead = index.lead_id(org, phone)
            assert lead is not None and lead in evaluation.audience
            received = [at for _, at in received_sends(store, p, org, lead)]
            history = history_of(store, p, org, phone)
            want = rules.outcome(history, phone, external_id, received=received)
            assert outcome_of(evaluation, lead) is want, (p, phone)
        # A chunk's entries and the sample are the same recipients, in lead-id order.
        entries = [decode_recipient(e) for e in evaluation.entries()]
        assert entries == [(p, x) for p, x, _ in evaluation.sample(len(evaluation.recipients))]


def assert_control_facts(trigger: SendTrigger, step: str, detail: dict[str, Any]) -> None:
    """The facts explain gives for the frequency cap and quiet hours."""
    at = trigger.scheduled_for
    cap = trigger.frequency_cap
    if step == Step.FREQUENCY_CAP or (step == Step.RECIPIENT and cap is not None):
        assert cap is not None
        facts = detail if step == Step.FREQUENCY_CAP else detail["frequencyCap"]
        assert (facts["maxSends"], facts["withinHours"]) == (cap.max_sends, cap.within_hours)
        assert (len(facts["sends"]) >= cap.max_sends) is (step == Step.FREQUENCY_CAP)
        for sent in facts["sends"]:
            assert cap.counts(at, parse_ms(sent["scheduledFor"])), sent
    rule = trigger.quiet_hours
    if step == Step.QUIET_HOURS or (step == Step.RECIPIENT and rule is not None):
        assert rule is not None
        facts = detail if step == Step.QUIET_HOURS else detail["quietHours"]
        assert (facts["start"], facts["end"]) == (rule.describe()["start"], rule.describe()["end"])
        assert facts.get("timeZone") is None or facts["localTime"] == hhmm(
            local_minute(facts["timeZone"], at)
        )
        if facts["timeZone"] is not None:
            minute = local_minute(facts["timeZone"], at)
            inside = (
                rule.start <= minute < rule.end
                if rule.start < rule.end
                else minute >= rule.start or minute < rule.end
            )
            assert inside is (step == Step.QUIET_HOURS), facts


def parse_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def assert_explain_matches_record(store: IndexedStore, send: Send) -> dict[str, str]:
    """After record_send, explain_lead of every phone of the organization gives the step
    the evaluation gave, consistent while nothing changed. Returns each phone's step."""
    trigger = send.trigger
    org = trigger.organization_id
    steps = {}
    for p in range(PARTITIONS):
        rules = send.rules(p)
        index = store.index(p)
        evaluation = evaluate(index, rules, store=store, partition=p)
        record_send(store, p, rules, evaluation, materialized_at=MATERIALIZED_AT)
        record = read_send_record(store, p, org, trigger.send_id)
        assert record is not None
        for phone in PHONES + ["+9"]:  # members, leads of other campaigns, unknown phones
            if lead_partition(org, phone, PARTITIONS) != p:
                continue
            outcome = outcome_of(evaluation, index.lead_id(org, phone))
            then = STEP_OF[outcome] if outcome is not None else Step.NOT_IN_AUDIENCE
            got = explain_lead(store, p, index, record, phone, **OPT)
            assert (got.step, got.sent, got.consistent, got.now_step) == (
                then,
                then == Step.RECIPIENT,
                True,
                None,
            ), (phone, got)
            assert_control_facts(trigger, then, got.detail)
            steps[phone] = then
    return steps


def satisfying(f: EventFilter) -> bytes | None:
    """Metadata that meets the filter's where (its first accepted values)."""
    if not f.where:
        return None
    return msgspec.json.encode({key: values[0] for key, values in f.where})


def flip_an_include_filter(world: World, send: Send, steps: dict[str, str]) -> None:
    """Give a lead the send dropped by its event filters the events its failing include
    filters lacked; explain then reports the recorded step, and today's when it differs."""
    trigger = send.trigger
    org, at = trigger.organization_id, trigger.scheduled_for
    audience = world.model.audience(org, trigger.campaign_id)
    dropped = sorted(p for p, s in steps.items() if s == Step.EVENT_FILTER)
    for phone in dropped:
        lacking = [
            f
            for f in trigger.event_filters
            if f.mode == "include" and not world.model.keeps(org, phone, f, at)
        ]
        if not lacking:
            continue
        # Inside every window (one is a minute at least), newest first; some may turn out
        # duplicates (already there, or folded, or with other metadata), which the model
        # knows.
        world.apply(
            [
                LeadEvent(org, phone, f.event_type, at - k, satisfying(f))
                for f in lacking
                for k in range(f.min_count)
            ]
        )
        p = lead_partition(org, phone, PARTITIONS)
        record = read_send_record(world.store, p, org, trigger.send_id)
        assert record is not None
        got = explain_lead(world.store, p, world.store.index(p), record, phone, **OPT)
        # Today's evaluation keeps the audience filter's recorded verdict (it passed).
        now = STEP_OF[world.model.outcome(trigger, None, phone, audience[phone])]
        assert (got.step, got.sent) == (Step.EVENT_FILTER, False)
        assert got.consistent is (now == Step.EVENT_FILTER)
        assert got.now_step == (None if got.consistent else now)
        if got.now_detail is not None:
            assert_control_facts(trigger, now, got.now_detail)
        note(f"explain after a flip: {now}")
        return


def check_world(world: World, *, flip: bool) -> None:
    for send in world.sends:
        assert_filters_exact(world.store, world.model, send)
        assert_index_equals_reference(world.store, world.model, send)
        assert_engines_agree(world.store, send)
    assert_rebuild_equal(world.store)
    for send in world.sends:
        steps = assert_explain_matches_record(world.store, send)
        if flip and any(s == Step.EVENT_FILTER for s in steps.values()):
            flip_an_include_filter(world, send, steps)
            # The new events are in the index too, and every answer follows them.
            assert_rebuild_equal(world.store)
            for other in world.sends:
                assert_index_equals_reference(world.store, world.model, other)
            break


def run_scenario(ops: Sequence[Op], sends: Sequence[Send], *, flip: bool = False) -> World:
    """Apply ``ops``, then check every send three ways and explain it; with ``flip``, then
    give a lead the event filters dropped the events it lacked and explain it again."""
    world = World(sends)
    world.run(ops)
    check_world(world, flip=flip)
    return world


# --- strategies ------------------------------------------------------------------------------

window_minutes = st.one_of(
    st.sampled_from([1, 2, 59, 60, 61, 119, 120, 121, 180]), st.integers(1, 300)
)
min_counts = st.one_of(
    st.sampled_from([1, 2, TRACKED_COUNTS, TRACKED_COUNTS + 1, TRACKED_COUNTS + 2]),
    st.integers(1, 12),
)
event_filters = st.builds(
    EventFilter,
    mode=st.sampled_from(["include", "exclude"]),
    event_type=st.sampled_from([*TYPES, "never"]),
    within_minutes=st.one_of(st.none(), window_minutes),
    min_count=min_counts,
    where=st.one_of(st.just(()), st.just(()), st.sampled_from(WHERES)),
)
audience_filters = st.builds(
    AudienceFilterSpec,
    mode=st.sampled_from(["include", "exclude"]),
    external_ids=st.frozensets(st.sampled_from([*EXTERNAL_IDS, "x9"]), max_size=3),
    phones=st.frozensets(st.sampled_from([*PHONES, "+9"]), max_size=4),
)


caps = st.builds(
    FrequencyCap, st.sampled_from([1, 1, 2, 3]), st.sampled_from([1, 2, 3, 24, 48, 720])
)
EVERY_ZONE = sorted({z for zones in ZONES.values() for z in zones} | {"Asia/Tokyo"})


@st.composite
def quiet_rules(draw: st.DrawFn, at: int) -> QuietHours:
    """Quiet hours whose edges are often the local minute of ``at`` in one of the zones,
    or one minute either side (start inclusive, end exclusive), else anywhere."""

    def clock() -> int:
        if draw(st.booleans()):
            zone = draw(st.sampled_from(EVERY_ZONE))
            return (local_minute(zone, at) + draw(st.sampled_from([-1, 0, 1]))) % 1440
        return draw(st.integers(0, 1439))

    start, end = clock(), clock()
    if start == end:
        end = (end + 1) % 1440
    return QuietHours(start, end, draw(st.sampled_from(RULE_ZONES)))


@st.composite
def send_strategy(draw: st.DrawFn, send_id: str) -> Send:
    offset = draw(st.one_of(st.sampled_from([0, 1, 30 * MIN, HOUR - 1]), st.integers(0, HOUR - 1)))
    audience_filter = draw(st.one_of(st.none(), audience_filters))
    scheduled_for = BASE + draw(st.integers(0, SPAN_HOURS - 1)) * HOUR + offset
    trigger = SendTrigger(
        organization_id=draw(st.sampled_from(ORGS)),
        campaign_id=draw(st.sampled_from(CAMPAIGNS)),
        send_id=send_id,
        scheduled_for=scheduled_for,
        event_filters=tuple(draw(st.lists(event_filters, max_size=3))),
        # Sometimes enabled without a filter received, or a filter received but disabled.
        audience_filter_enabled=draw(st.booleans()),
        frequency_cap=draw(st.one_of(st.none(), st.none(), caps)),
        quiet_hours=draw(st.one_of(st.none(), st.none(), quiet_rules(scheduled_for))),
    )
    return Send(trigger, audience_filter, split=draw(st.booleans()))


@st.composite
def earlier_sends(
    draw: st.DrawFn, sends: list[Send], audiences: list[tuple[str, str]]
) -> list[Send]:
    """Sends to commit before the checked ones are asked: scheduled on a cap window's
    edges (one ms either side), at a checked send's moment, or anywhere around."""
    edges = [s.trigger.scheduled_for for s in sends] + [
        s.trigger.scheduled_for - s.trigger.frequency_cap.within_hours * HOUR
        for s in sends
        if s.trigger.frequency_cap is not None
    ]
    at = st.one_of(
        st.tuples(st.sampled_from(edges), st.sampled_from([-1, 0, 0, 1])).map(sum),
        st.integers(BASE - 50 * HOUR, BASE + SPAN_HOURS * HOUR),
    )
    audience = st.one_of(
        st.sampled_from(audiences),
        st.sampled_from(audiences),
        st.tuples(st.sampled_from(ORGS), st.sampled_from(CAMPAIGNS)),
    )
    capped = any(s.trigger.frequency_cap is not None for s in sends)
    out = []
    for i in range(draw(st.integers(1 if capped else 0, 4))):
        org, campaign = draw(audience)
        filters = tuple(draw(st.one_of(st.just([]), st.just([]), st.lists(event_filters))))
        out.append(Send(SendTrigger(org, campaign, f"h{i}", draw(at), filters[:1])))
    return out


def instants(anchors: list[int]) -> st.SearchStrategy[int]:
    """Times on the anchors (window edges, send moments, hour boundaries) and one ms either
    side, or anywhere in the span."""
    near = st.tuples(st.sampled_from(anchors), st.sampled_from([-1, 0, 0, 1])).map(sum)
    return st.one_of(near, near, st.integers(BASE - HOUR, BASE + SPAN_HOURS * HOUR))


def member_ops(
    min_size: int = 0, audiences: list[tuple[str, str]] | None = None
) -> st.SearchStrategy[tuple[MemberOp, ...]]:
    """Adds (some with an externalId), re-adds and removals; often of a send's campaign."""
    audience = st.tuples(st.sampled_from(ORGS), st.sampled_from(CAMPAIGNS))
    if audiences:
        audience = st.one_of(audience, st.sampled_from(audiences))
    op = st.builds(
        lambda org_campaign, *rest: MemberOp(*org_campaign, *rest),
        audience,
        st.sampled_from(PHONES),
        st.one_of(st.none(), st.sampled_from(EXTERNAL_IDS)),
        st.sampled_from([False, False, False, True]),  # removals, later re-adds
    )
    return st.lists(op, min_size=min_size, max_size=8).map(tuple)


def event_ops(at: st.SearchStrategy[int], targets: list[tuple[str, str]]) -> st.SearchStrategy[Op]:
    """Events anywhere, or a burst of one lead's events of one type (often the organization
    and type of a send's filter)."""
    lead_type = st.tuples(st.sampled_from(ORGS), st.sampled_from(TYPES))
    if targets:
        lead_type = st.one_of(lead_type, st.sampled_from(targets))
    scattered = st.lists(
        st.builds(
            LeadEvent,
            st.sampled_from(ORGS),
            st.sampled_from(PHONES),
            st.sampled_from(TYPES),
            at,
            st.sampled_from(METADATA),
        ),
        min_size=1,
        max_size=12,
    )
    # Many events of one lead and type: minCount above TRACKED_COUNTS, windows over
    # several hours.
    burst = st.builds(
        lambda org_type, phone, start, step, n, meta: [
            LeadEvent(org_type[0], phone, org_type[1], start + i * step, meta[i % len(meta)])
            for i in range(n)
        ],
        lead_type,
        st.sampled_from(PHONES),
        at,  # from a window edge inwards or outwards
        st.sampled_from([1, MIN, 17 * MIN, HOUR // 2, HOUR]).flatmap(
            lambda step: st.sampled_from([step, -step])
        ),
        st.integers(1, 12),
        st.lists(st.sampled_from(METADATA), min_size=1, max_size=3),
    )
    return st.one_of(scattered, burst).map(lambda evs: ("events", tuple(evs)))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Op], list[Send]]:
    sends = [draw(send_strategy(f"s{i}")) for i in range(draw(st.integers(1, 3)))]
    anchors = {BASE + k * HOUR for k in range(-1, SPAN_HOURS + 1)}
    for send in sends:
        at = send.trigger.scheduled_for
        anchors.add(at)
        for f in send.trigger.event_filters:
            if f.within_minutes is not None:
                anchors.add(at - f.within_minutes * MIN)
    at = instants(sorted(anchors))
    audiences = sorted({(s.trigger.organization_id, s.trigger.campaign_id) for s in sends})
    targets = sorted(
        {
            (send.trigger.organization_id, f.event_type)
            for send in sends
            for f in send.trigger.event_filters
        }
    )
    # An event of a send's organization and filter type right on a window edge, or one ms
    # outside it (a lead whose only event is on the edge decides the edge's inclusion).
    edges = [
        (send.trigger.organization_id, f.event_type, edge)
        for send in sends
        for f in send.trigger.event_filters
        if f.within_minutes is not None
        for edge in (
            send.trigger.scheduled_for,
            send.trigger.scheduled_for - f.within_minutes * MIN,
        )
    ]
    on_edges = st.nothing()
    if edges:
        on_edges = st.builds(
            lambda edge, phone, delta, meta: (
                "events",
                (LeadEvent(edge[0], phone, edge[1], edge[2] + delta, meta),),
            ),
            st.sampled_from(edges),
            st.sampled_from(PHONES),
            st.sampled_from([-1, 0, 0, 1]),
            st.sampled_from(METADATA),
        )
    # An opt-out and an opt-in of one lead at the same instant, in either order.
    opt_tie = st.builds(
        lambda org, phone, ts, types: (
            "events",
            tuple(LeadEvent(org, phone, t, ts) for t in types),
        ),
        st.sampled_from(ORGS),
        st.sampled_from(PHONES),
        at,
        st.permutations(OPT_TYPES),
    )
    op = st.one_of(
        opt_tie,
        event_ops(at, targets),
        event_ops(at, targets),
        event_ops(at, targets),
        on_edges,
        on_edges,
        member_ops(audiences=audiences).map(lambda ops: ("members", ops)),
        st.tuples(st.just("replay"), st.integers(1, 4), st.one_of(st.none(), st.just(0), at)),
        st.tuples(st.just("restore"), st.integers(1, 6)),
        st.tuples(st.just("horizon"), at),
        st.tuples(st.just("compact"), at, st.none()),
        st.tuples(st.just("compact"), at, st.integers(0, 8)),
        st.tuples(st.just("compact"), at, st.integers(0, 8)),
        st.just(("restart",)),
        event_ops(at, targets)
        .map(lambda o: ("crash", o[1]))
        .flatmap(
            lambda o: st.tuples(
                st.just(o[0]), st.just(o[1]), st.integers(0, 2), st.sampled_from([0, 0, 1, 3])
            )
        ),
    )
    first = ("members", draw(member_ops(min_size=3, audiences=audiences)))
    # Erase anyone, or a member; sometimes a restore from the changelog right after.
    erase = st.tuples(
        st.just("erase"),
        st.one_of(
            st.tuples(st.sampled_from(ORGS), st.sampled_from(PHONES)),
            st.sampled_from([(m.organization_id, m.phone) for m in first[1]]),
        ),
        at,
        st.booleans(),
    ).map(lambda e: (e[0], *e[1], *e[2:]))
    op = st.one_of(op, erase, erase, erase)
    history = draw(earlier_sends(sends, audiences))
    if history:
        op = st.one_of(op, st.tuples(st.just("deliver"), st.sampled_from(history)))
    ops = [first]
    for drawn in draw(st.lists(op, max_size=14)):
        if drawn[0] == "erase" and draw(st.booleans()):
            # Often opted out when erased: the suppression.
            ops.append(("events", (LeadEvent(drawn[1], drawn[2], OPT_OUT, draw(at)),)))
        ops.append(drawn)
    # Every earlier send is committed once, at any point after the first members.
    for send in history:
        ops.insert(draw(st.integers(1, len(ops))), ("deliver", send))
    return ops, sends


# --- properties ------------------------------------------------------------------------------

T1 = BASE + 2 * HOUR  # on an hour boundary
EDGES = Send(
    SendTrigger(
        "a",
        "c1",
        "s0",
        T1,
        (EventFilter("include", "buy", 60), EventFilter("exclude", "buy_more", 61, 2)),
    )
)


H0 = Send(
    SendTrigger(
        "a", "c1", "h0", T1 - 3 * HOUR, (EventFilter("include", "buy", None, 1, WHERES[0]),)
    )
)


def lead_events(phone: str, event_type: str, *times: int, org: str = "a") -> Op:
    return ("events", tuple(LeadEvent(org, phone, event_type, ts) for ts in times))


def members(*phones: str, campaign: str = "c1", external_id: str | None = None) -> Op:
    return ("members", tuple(MemberOp("a", campaign, p, external_id) for p in phones))


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
@example(
    (
        [
            members(*PHONES),
            lead_events("+1555", "buy", T1 - HOUR),  # on the window's first ms
            lead_events("+15550", "buy", T1 - HOUR - 1, T1 + 1),  # one ms outside each edge
            lead_events("+155501", "buy", T1),  # on its last ms
            lead_events("+155501", "buy_more", T1 - 61 * MIN, T1),  # edge of the 61 min
            lead_events("+1556", "buy", T1),
            lead_events("+1556", "buy_more", T1 - 61 * MIN - 1, T1 + 1),
            ("compact", T1 - HOUR, None),  # a window starting at the horizon sees all
            lead_events("+2", "opted_out", T1 - 5),
            lead_events("+2", "opted_in", T1 - 5),  # same instant: opted out
        ],
        [EDGES],
    )
)
@example(
    (
        [
            members("+1555", "+15550"),
            lead_events("+1555", "buy", *(BASE + i * 20 * MIN for i in range(10))),
            ("compact", BASE + HOUR + 1, None),  # folds the event on the hour's first ms
            lead_events("+15550", "buy", *(BASE + i * 20 * MIN for i in range(9))),
            ("compact", BASE + 2 * HOUR + 1, 3),  # interrupted after three writes
            ("restore", 1),  # a restore rebuilds the index from the folded records
            ("replay", 4, 0),  # the horizon moved back before the folded events
        ],
        [
            Send(SendTrigger("a", "c1", "s0", T1, (EventFilter("include", "buy", None, 10),))),
            Send(SendTrigger("a", "c1", "s1", T1, (EventFilter("exclude", "buy", 120, 9),))),
        ],
    )
)
@example(
    (
        [
            members(*PHONES),
            ("events", (LeadEvent("a", NY, "buy", T1 - 10 * MIN, METADATA[1]),)),
            ("events", (LeadEvent("a", LA, "buy", T1 - 10 * MIN, METADATA[2]),)),
            ("events", (LeadEvent("a", AU, "buy", T1 - 5 * MIN, METADATA[3]),)),
            ("replay", 3, None),  # the same events again, other metadata: the first stays
            ("deliver", H0),  # on a cap's edge, to plan "a" only
            ("deliver", Send(SendTrigger("a", "c1", "h1", T1 - HOUR))),
            ("deliver", Send(SendTrigger("a", "c1", "h2", T1))),  # at T: never counts
            lead_events("+1555", OPT_OUT, T1 - HOUR),
            ("erase", "a", "+1555", T1 - 30 * MIN, True),  # opted out: suppressed
            members("+1555"),  # back, a new lead: opted out by the suppression
            ("erase", "a", ES, T1 - 20 * MIN),  # not opted out: no suppression
            ("events", (LeadEvent("a", ES, "buy", T1 - MIN, METADATA[1]),)),  # back
            lead_events("+1555", OPT_IN, T1 - 30 * MIN),  # the same instant: still out
            ("deliver", H0),  # again: a no-op
        ],
        [
            # 22:00 in New York (start inclusive), 19:00 in Los Angeles, midday in
            # Australia, 04:00 in Madrid.
            Send(
                SendTrigger(
                    "a",
                    "c1",
                    "s0",
                    T1,
                    (EventFilter("include", "buy", 60, 1, WHERES[1]),),
                    frequency_cap=FrequencyCap(2, 3),
                    quiet_hours=QuietHours(22 * 60, 7 * 60),
                )
            ),
            Send(
                SendTrigger(
                    "a",
                    "c1",
                    "s1",
                    T1,
                    frequency_cap=FrequencyCap(2, 2),
                    quiet_hours=QuietHours(10 * 60, 10 * 60 + 1, "Australia/Perth"),
                )
            ),
        ],
    )
)
def test_index_engine_equals_reference_per_lead_engine_and_explain(
    scenario: tuple[list[Op], list[Send]],
) -> None:
    """Random histories and sends: the index engine gives the reference's recipients and
    counts, the per-lead engine's step for every member, a rebuilt index equal to the one
    kept current after every operation, and explanations consistent with the record."""
    ops, sends = scenario
    run_scenario(ops, sends, flip=True)


# --- edge cases, spelled out -----------------------------------------------------------------


def test_the_zones_written_out_are_libphonenumbers() -> None:
    for phone in PHONES:
        assert set(phone_zones(phone)) == set(ZONES.get(phone, ())), phone


def recipients_of(world: World, send: Send) -> set[str]:
    return {
        phone
        for p in range(PARTITIONS)
        for phone, _ in materialize_partition(
            world.store, p, send.trigger, send.filter_for(p), **OPT
        ).recipients
    }


def one_filter(f: EventFilter, at: int = T1, **trigger: Any) -> Send:
    return Send(SendTrigger("a", "c1", "s0", at, (f,), **trigger))


def test_window_edges_are_inclusive_to_the_millisecond() -> None:
    send = one_filter(EventFilter("include", "buy", 90))  # from half past an hour
    world = run_scenario(
        [
            members(*PHONES),
            lead_events("+1555", "buy", T1 - 90 * MIN),
            lead_events("+15550", "buy", T1),
            lead_events("+155501", "buy", T1 - 90 * MIN - 1),
            lead_events("+1556", "buy", T1 + 1),
        ],
        [send, EDGES],
    )
    assert recipients_of(world, send) == {"+1555", "+15550"}
    assert world.model.send(send)[0] == {("+1555", None), ("+15550", None)}


@pytest.mark.parametrize("minutes", [59, 60, 61, 120, 121])
@pytest.mark.parametrize("at", [T1, T1 + 1, T1 - 1, T1 + 30 * MIN])
def test_windows_smaller_equal_and_crossing_hour_boundaries(minutes: int, at: int) -> None:
    # One event every 7 minutes over three hours, for four leads with different phases.
    ops = [members(*PHONES)]
    for phase, phone in enumerate(PHONES[:4]):
        times = range(T1 - 2 * HOUR + phase, T1 + HOUR, 7 * MIN)
        ops.append(lead_events(phone, "buy", *times))
    sends = [one_filter(EventFilter("include", "buy", minutes, n), at=at) for n in (1, 8, 9, 18)]
    world = run_scenario(ops, sends)
    for send in sends:
        assert_index_equals_reference(world.store, world.model, send)


def test_same_instant_opt_out_wins() -> None:
    world = run_scenario(
        [
            members("+1555", "+15550", "+155501"),
            lead_events("+1555", OPT_IN, T1 - 5),
            lead_events("+1555", OPT_OUT, T1 - 5),
            lead_events("+15550", OPT_OUT, T1 - 5),
            lead_events("+15550", OPT_IN, T1 - 5, T1 + 7),  # a later opt-in wins, after T too
            lead_events("+155501", OPT_OUT, T1 - 9),
            ("compact", T1, None),  # folded opt events keep deciding
            lead_events("+155501", OPT_IN, T1 - 9),  # same instant as the folded opt-out
        ],
        [one_filter(EventFilter("include", "buy", None)), EDGES],
    )
    counts = Counts()
    for p in range(PARTITIONS):
        counts.add(
            materialize_partition(
                world.store, p, SendTrigger("a", "c1", "s", T1), None, **OPT
            ).counts
        )
    assert (counts.audience, counts.opted_out) == (3, 2)


@pytest.mark.parametrize("folded", [0, 4, 9, 10])
def test_min_count_above_the_tracked_counts(folded: int) -> None:
    """Sticky minCount up to TRACKED_COUNTS is a bitmap, above it the counts: both, with
    part of the history folded."""
    times = [BASE + i * 13 * MIN for i in range(10)]
    ops = [members("+1555", "+15550"), lead_events("+1555", "buy", *times)]
    ops += [lead_events("+15550", "buy", *times[:9])]
    if folded:
        ops.append(("compact", times[folded - 1] + 1, None))
    sends = [one_filter(EventFilter("include", "buy", None, n)) for n in (8, 9, 10, 11)]
    world = run_scenario(ops, sends)
    assert [recipients_of(world, s) for s in sends] == [
        {"+1555", "+15550"},
        {"+1555", "+15550"},
        {"+1555"},
        set(),
    ]


def test_window_reaching_before_the_epoch_starts_at_zero() -> None:
    send = one_filter(EventFilter("include", "buy", 120), at=30 * MIN)
    world = run_scenario(
        [
            members("+1555", "+15550", "+155501"),
            lead_events("+1555", "buy", 0),
            lead_events("+15550", "buy", 30 * MIN),
            lead_events("+155501", "buy", 30 * MIN + 1),
        ],
        [send],
    )
    assert recipients_of(world, send) == {"+1555", "+15550"}


def test_removed_and_re_added_member_carries_its_new_external_id() -> None:
    send = one_filter(
        EventFilter("exclude", "buy", None),
        audience_filter_enabled=True,
    )
    send = Send(send.trigger, AudienceFilterSpec("include", frozenset({"x2"})))
    world = run_scenario(
        [
            members("+1555", "+15550", external_id="x1"),
            ("members", (MemberOp("a", "c1", "+1555", None, True),)),
            members("+1555", external_id="x2"),
        ],
        [send],
    )
    got = [
        r
        for p in range(PARTITIONS)
        for r in materialize_partition(
            world.store, p, send.trigger, send.filter_for(p), **OPT
        ).recipients
    ]
    assert got == [("+1555", "x2")]


def test_explain_reports_an_include_filter_flipped_after_the_send() -> None:
    send = one_filter(EventFilter("include", "buy", 30, 2))
    world = run_scenario([members("+1555"), lead_events("+1555", "buy", T1 - 10)], [])
    p = lead_partition("a", "+1555", PARTITIONS)
    rules = send.rules(p)
    evaluation = evaluate(world.store.index(p), rules)
    assert outcome_of(evaluation, world.store.index(p).lead_id("a", "+1555")) is (
        Outcome.DROPPED_BY_EVENT_FILTER
    )
    record_send(world.store, p, rules, evaluation, materialized_at=MATERIALIZED_AT)
    record = read_send_record(world.store, p, "a", "s0")
    assert record is not None
    before = explain_lead(world.store, p, world.store.index(p), record, "+1555", **OPT)
    assert (before.step, before.sent, before.consistent) == (Step.EVENT_FILTER, False, True)
    world.apply([LeadEvent("a", "+1555", "buy", T1)])
    after = explain_lead(world.store, p, world.store.index(p), record, "+1555", **OPT)
    assert (after.step, after.sent, after.consistent) == (Step.EVENT_FILTER, False, False)
    assert after.now_step == Step.RECIPIENT


def test_last_member_removed_leaves_no_empty_organization() -> None:
    store = indexed_memory()
    p = lead_partition("a", "+1555", PARTITIONS)
    apply_members(store, p, [MemberOp("a", "c1", "+1555", "x1")], group=2)
    apply_members(store, p, [MemberOp("a", "c1", "+1555", None, remove=True)], group=3)
    assert_indexes_rebuild_equal(store, [p])  # fails: kept {"a": <all empty>}, rebuilt {}


def test_explain_today_keeps_the_audience_filter_for_a_lead_opted_out_at_the_send() -> None:
    store = indexed_memory()
    p = lead_partition("a", "+1555", PARTITIONS)
    apply_members(store, p, [MemberOp("a", "c1", "+1555", None)], group=4)
    apply_events(store, p, [LeadEvent("a", "+1555", OPT_OUT, T1 - 9)], horizon_ms=0, now_ms=0)
    trigger = SendTrigger("a", "c1", "s0", T1, (), audience_filter_enabled=True)
    rules = SendRules.of(trigger, AudienceFilterSpec("include", phones=frozenset({"+2"})), **OPT)
    record_send(store, p, rules, evaluate(store.index(p), rules), materialized_at=MATERIALIZED_AT)
    record = read_send_record(store, p, "a", "s0")
    assert record is not None
    apply_events(store, p, [LeadEvent("a", "+1555", OPT_IN, T1 - 1)], horizon_ms=0, now_ms=0)
    got = explain_lead(store, p, store.index(p), record, "+1555", **OPT)
    assert (got.step, got.consistent) == (Step.OPTED_OUT, False)
    assert got.now_step == Step.AUDIENCE_FILTER  # fails: "recipient"


# --- regressions: the bugs this file found, all fixed ---------------------------------------


def test_removed_member_without_events_keeps_its_id_after_a_restart() -> None:
    """A member with no event, removed: no E, C or M key carries its id any more. The
    index kept current still knew it, a rebuild did not, and after a restart explain said
    notInAudience for a lead the send had messaged."""
    store = indexed_memory()
    p = lead_partition("a", "+1555", PARTITIONS)
    apply_members(store, p, [MemberOp("a", "c1", "+1555", None)], group=5)
    rules = SendRules.of(SendTrigger("a", "c1", "s0", T1), None, **OPT)
    evaluation = evaluate(store.index(p), rules)
    record_send(store, p, rules, evaluation, materialized_at=MATERIALIZED_AT)
    record = read_send_record(store, p, "a", "s0")
    assert record is not None
    apply_members(store, p, [MemberOp("a", "c1", "+1555", None, remove=True)], group=6)
    before = explain_lead(store, p, store.index(p), record, "+1555", **OPT)
    assert (before.step, before.sent) == (Step.RECIPIENT, True)
    store.drop([p])  # a restart: the index is rebuilt from the store
    after = explain_lead(store, p, store.index(p), record, "+1555", **OPT)
    assert (after.step, after.sent) == (before.step, before.sent)
    assert_indexes_rebuild_equal(store, [p])


def test_folded_event_replayed_after_the_horizon_moved_back_is_a_duplicate() -> None:
    """The horizon moves back (LEADSTREAM_EVENT_RETENTION_DAYS raised, a worker whose clock
    is behind): a replay of a folded event was a new key, counted twice by the index (not
    by the lead's history), so minCount 2 passed on one distinct event."""
    store = indexed_memory()
    apply_members(store, 0, [MemberOp("a", "c1", "+1555", None)], group=7)
    apply_events(store, 0, [LeadEvent("a", "+1555", "buy", 100)], horizon_ms=0, now_ms=0)
    compact_partition(store, 0, horizon_ms=200, max_future_skew_ms=0)
    apply_events(store, 0, [LeadEvent("a", "+1555", "buy", 100)], horizon_ms=50, now_ms=0)
    trigger = SendTrigger("a", "c1", "s0", 1_000, (EventFilter("include", "buy", None, 2),))
    history = lead_history(store, 0, "a", "+1555")
    assert history.count(b"buy") == 1  # the per-lead engine: one distinct event
    got = materialize_partition(store, 0, trigger, None, **OPT)
    assert got.counts.dropped_by_event_filter == 1
    assert_indexes_rebuild_equal(store, [0])
    store.drop([0])  # and after a restart, from the folded records alone
    result = apply_events(store, 0, [LeadEvent("a", "+1555", "buy", 99)], horizon_ms=0, now_ms=0)
    assert (result.inserted, result.duplicates) == (0, 1)
    assert materialize_partition(store, 0, trigger, None, **OPT) == got
