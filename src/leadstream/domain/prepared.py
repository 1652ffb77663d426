"""A held send's share of one partition, evaluated before its materialize moment.

A trigger that arrives early leaves time to do materialization's work in advance. A
:class:`PreparedShare` evaluates every campaign member of one partition exactly as
:func:`~leadstream.domain.sends.materialize_partition` does (the same
:class:`~leadstream.domain.sends.SendRules`) and remembers each member's outcome. From the
moment it starts, every write to a lead of the organization in that partition names the
lead in :attr:`PreparedShare.changed` (filled by
:class:`~leadstream.state.watch.WatchedStore`). At the materialize moment only those leads
are evaluated again, so the share's result equals a fresh materialization at that moment.

Why a lead is evaluated again rather than patched: its outcome depends on its whole history
(counts in a window, the latest opt event), which a single write does not tell.

A member read by the initial pass before a write, or after it, is right either way: the
write marks it, and :meth:`PreparedShare.refresh` reads it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from leadstream.domain.lead_index import OrgScan, lead_history
from leadstream.domain.sends import Outcome, PartitionResult, SendRules, campaign_members
from leadstream.state import keys
from leadstream.state.port import PartitionStore

__all__ = ["PreparedShare"]

logger = logging.getLogger(__name__)

# Members evaluated between two steps of PreparedShare.steps (about 20 ms of work).
BUILD_STEP = 5_000


class PreparedShare:
    """Outcomes of one partition's campaign members for one send, kept current."""

    def __init__(self, rules: SendRules, partition: int, *, step: int = BUILD_STEP) -> None:
        self.rules = rules
        self.partition = partition
        self._step = step
        # phone -> (externalId, outcome), in phone order until a new member arrives.
        self.outcomes: dict[str, tuple[str | None, Outcome]] = {}
        # Phones written since the share was started: register this set with the store's
        # watch before the first step.
        self.changed: set[str] = set()
        self.complete = False
        self._in_order = True
        self._steps: Iterator[int] | None = None

    def steps(self, store: PartitionStore, *, reseek_after: int = 4) -> Iterator[int]:
        """The one pass over the members: evaluates every member, yielding the number done
        every ``step`` members so that the caller can let other work run. Every
        call returns the same iterator, so a caller that finishes it ends the others'."""
        if self._steps is None:
            self._steps = self._build(store, reseek_after)
        return self._steps

    def _build(self, store: PartitionStore, reseek_after: int) -> Iterator[int]:
        t = self.rules.trigger
        org = t.organization_id
        scan = OrgScan(store, self.partition, org, reseek_after=reseek_after)
        outcomes = self.outcomes
        outcome = self.rules.outcome
        n = 0
        for phone, external_id in campaign_members(store, self.partition, org, t.campaign_id):
            outcomes[phone] = (external_id, outcome(scan.history(phone), phone, external_id))
            n += 1
            if n % self._step == 0:
                yield n
        self.complete = True

    def finish(self, store: PartitionStore) -> None:
        """Run :meth:`steps` to its end (when the materialize moment comes first)."""
        for _ in self.steps(store):
            pass

    def refresh(self, store: PartitionStore) -> int:
        """Evaluate again every lead written since the share started; how many there were."""
        t = self.rules.trigger
        org, campaign = t.organization_id, t.campaign_id
        changed = list(self.changed)
        self.changed.clear()
        for phone in changed:
            value = store.get(self.partition, keys.member_key(org, campaign, phone))
            if value is None:
                self.outcomes.pop(phone, None)
                continue
            external_id = keys.decode_external_id(value)
            history = lead_history(store, self.partition, org, phone)
            if phone not in self.outcomes:
                self._in_order = False
            self.outcomes[phone] = (external_id, self.rules.outcome(history, phone, external_id))
        return len(changed)

    def result(self) -> PartitionResult:
        """Recipients in phone order and counts, as materialize_partition gives them."""
        if not self._in_order:
            self.outcomes = dict(sorted(self.outcomes.items()))
            self._in_order = True
        out = PartitionResult()
        recipients = out.recipients
        record = out.counts.record
        for phone, (external_id, outcome) in self.outcomes.items():
            record(outcome)
            if outcome is Outcome.RECIPIENT:
                recipients.append((phone, external_id))
        return out
