"""A held send's share of one partition, evaluated before its materialize moment.

A trigger that arrives early leaves time to do materialization's work in advance. A
:class:`PreparedShare` evaluates every campaign member of one partition exactly as
:func:`~leadstream.domain.sends.materialize_partition` does (the same
:class:`~leadstream.domain.sends.SendRules`) and remembers each member's outcome. From the
moment it starts, every write to a lead of the organization in that partition names the
lead in :attr:`PreparedShare.changed` (filled by
:class:`~leadstream.state.watch.WatchedStore`). At the materialize moment only those leads
are evaluated again, so the share holds the recipients and counts a fresh materialization
would give at that moment.

Why a lead is evaluated again rather than patched: its outcome depends on its whole history
(counts in a window, the latest opt event), which a single write does not tell.

A member read by the initial pass before a write, or after it, is right either way: the
write marks it, and :meth:`PreparedShare.refresh` reads it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from leadstream.domain.lead_index import OrgScan, lead_history
from leadstream.domain.sends import Counts, Outcome, SendRules, campaign_members
from leadstream.state import keys
from leadstream.state.port import PartitionStore

__all__ = ["PreparedShare"]

# Members evaluated between two steps of PreparedShare.steps (about 20 ms of work).
BUILD_STEP = 5_000


class PreparedShare:
    """Outcomes of one partition's campaign members for one send, kept current.

    Recipients are held as ``encode(phone, externalId)`` gives them (the output's own
    entries) and the counts are kept as outcomes change, so the moment only joins bytes.
    They are in phone order, except that leads evaluated again (written after the pass)
    come last."""

    def __init__(
        self,
        rules: SendRules,
        partition: int,
        *,
        encode: Callable[[str, str | None], bytes],
        step: int = BUILD_STEP,
    ) -> None:
        self.rules = rules
        self.partition = partition
        self._encode = encode
        self._step = step
        self.outcomes: dict[str, Outcome] = {}
        self.recipients: dict[str, bytes] = {}
        self._tally = [0] * len(Outcome)
        # Phones written since the share was started: register this set with the store's
        # watch before the first step.
        self.changed: set[str] = set()
        self.complete = False
        self._steps: Iterator[int] | None = None

    def steps(self, store: PartitionStore, *, reseek_after: int = 4) -> Iterator[int]:
        """The one pass over the members: evaluates every member, yielding the number done
        every ``step`` members so that the caller can let other work run. Every
        call returns the same iterator, so a caller that finishes it ends the others'."""
        if self._steps is None:
            self._steps = self._build(store, reseek_after)
        return self._steps

    def _build(self, store: PartitionStore, reseek_after: int) -> Iterator[int]:
        trigger = self.rules.trigger
        org = trigger.organization_id
        scan = OrgScan(store, self.partition, org, reseek_after=reseek_after)
        evaluate = self.rules.outcome
        n = 0
        for phone, external_id in campaign_members(store, self.partition, org, trigger.campaign_id):
            self._set(phone, external_id, evaluate(scan.history(phone), phone, external_id))
            n += 1
            if n % self._step == 0:
                yield n
        self.complete = True

    def _set(self, phone: str, external_id: str | None, outcome: Outcome) -> None:
        self._unset(phone)
        self.outcomes[phone] = outcome
        self._tally[outcome] += 1
        if outcome is Outcome.RECIPIENT:
            self.recipients[phone] = self._encode(phone, external_id)

    def _unset(self, phone: str) -> None:
        old = self.outcomes.pop(phone, None)
        if old is not None:
            self._tally[old] -= 1
            if old is Outcome.RECIPIENT:
                del self.recipients[phone]

    def finish(self, store: PartitionStore) -> None:
        """Run :meth:`steps` to its end (when the materialize moment comes first)."""
        for _ in self.steps(store):
            pass

    def worth_refreshing(self) -> bool:
        """Whether evaluating the changed leads again beats a full pass: past a quarter of
        the members (plus a margin for small audiences), per-lead reads cost more."""
        return len(self.changed) <= len(self.outcomes) // 4 + 1000

    def refresh(self, store: PartitionStore) -> int:
        """Evaluate again every lead written since the share started; how many there were."""
        trigger = self.rules.trigger
        org, campaign = trigger.organization_id, trigger.campaign_id
        changed = list(self.changed)
        self.changed.clear()
        for phone in changed:
            value = store.get(self.partition, keys.member_key(org, campaign, phone))
            if value is None:
                self._unset(phone)
                continue
            external_id = keys.decode_external_id(value)
            history = lead_history(store, self.partition, org, phone)
            self._set(phone, external_id, self.rules.outcome(history, phone, external_id))
        return len(changed)

    def counts(self) -> Counts:
        tally = self._tally
        return Counts(
            audience=len(self.outcomes),
            opted_out=tally[Outcome.OPTED_OUT],
            dropped_by_audience_filter=tally[Outcome.DROPPED_BY_AUDIENCE_FILTER],
            dropped_by_event_filter=tally[Outcome.DROPPED_BY_EVENT_FILTER],
        )
