"""Every byte key of the lead-keyed table, defined in one place.

Layout: ``kind SEP field SEP field ...`` with ``SEP = b"\\x00"``. Identifiers cannot contain
NUL (organization ids are ``[A-Za-z0-9_-]``, phones are E.164, event types reject control
characters), so a prefix ending in ``SEP`` never matches a longer identifier. Timestamps are
unsigned 64-bit big-endian so that byte order is time order, which makes a time window one
bounded range scan.

=========  ==============================================  =============================
kind       key                                              value
=========  ==============================================  =============================
``E``      E org phone eventType occurredAt(u64)            lead id (u32), its group (refs,
                                                            see below), metadata (compact
                                                            JSON, absent when none)
``C``      C org phone eventType                            compacted: count u64, max u64,
                                                            lead id (u32), then the groups
                                                            (u64 each) still logging
                                                            folded events of it
``M``      M org campaignId phone                           lead id (u32), groups (refs),
                                                            externalId (tagged, see below)
``L``      L org phone                                      lead id (u32) of a removed
                                                            member, groups (refs); never
                                                            deleted
``X``      X org sendId                                     what a send did in this
                                                            partition (for explain)
``H``      H org sendId                                     a committed send: scheduledFor
                                                            u64, its recipients (bitmap
                                                            of lead ids), for caps
``Z``      Z org leadId(u32)                                an erased lead: its keys are
                                                            deleted wherever they appear
``U``      U org hmac(org, phone)                           an erased lead that was opted
                                                            out: erased at u64
``K``      K                                                this partition's random key
                                                            of those hashes
``Q``      Q                                                this partition's random key
                                                            of holdout and split buckets
                                                            (made with its first member)
``S``      S org sendId                                     the first trigger (claim)
``P``      P org sendId                                     pending trigger of a partition
``D``      D org sendId                                     materialized in this partition
``F``      F org sendId receivedAt(u64) seq(u64) part(u32)  one part of an audience filter
``A``      A org sendId                                     digest of the last HTTP filter
``I``      I o | I r | I j entry(u64) SEP piece(u16) |      the partition's index, kept
           I s part SEP piece(u16)                          beside its keys and logged
                                                            with them (the marks ``I o``,
                                                            ``I r`` are local); see
                                                            :mod:`leadstream.index.durable`
``B``      B createdAt(u64) random(u64)                     locally its marker (below); on
                                                            the changelog: a logged batch
``G``      G group(u64) random(u64)                         locally its marker; on the
                                                            changelog: a logged batch of
                                                            memberships (``M``, ``L``)
=========  ==============================================  =============================

A logged batch (:func:`encode_logged_batch`) is how event keys reach the changelog: one
record carries many ``(key, value)`` puts, restored by expanding it
(:func:`expand_changelog_record`). Locally its key is kept with a :class:`BatchMarker`
(how many items, which keys, the keys it deletes), so that
compaction can retire the record once every event in it is folded (``createdAt`` orders
them by age) and an erase can find the records holding a lead and log them again without
it. Memberships travel the same way under ``G`` (a removal as a deletion inside the
batch), but a membership is never folded: their batches are retired by
:func:`leadstream.domain.send_state.relog_memberships`, which logs the live memberships
again once the batches hold more superseded items than live ones.

Groups. The records one write logs form a group: every record whose key starts with
``B createdAt`` (or ``G group``) for the same number, which is the time of the command
that wrote them (the broker's timestamp of it, the same when it is applied again). Each
``E``, ``M`` and ``L`` value names the groups its key was logged in (its refs: one for an
event, which never changes; a membership's grow when it is updated or removed, and its
removal hands them to the lead's ``L`` key), and a ``C`` record names the groups still
logging events it folded. So the groups holding a lead are read from the lead's own
values, and a group's live items are the keys its markers name (event keys) or the keys
of the leads its markers name (memberships) whose values name the group. Values
written before groups existed have no refs (their batches have a marker of the old form,
see :func:`decode_batch_marker`); :mod:`leadstream.domain.relog` logs them again once.

Every key of a lead carries its lead id: a number dense per partition, given when the
lead is first written (:mod:`leadstream.index`), so that the indexes rebuilt from these
keys give each lead the same id again, and a send's recorded bitmaps keep meaning the
same leads. Events are only ever folded (``C`` keeps the id), but a membership can be
removed: ``L`` then keeps the id, which may have been on the lead's last key, so an id is
never given twice.

The ``S`` claim lives only in the send's home partition; ``P``, ``D`` and ``F`` exist in
every partition (triggers and filters are broadcast).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import msgspec
from pyroaring import BitMap

__all__ = [
    "SEP",
    "BatchMarker",
    "adding_ref",
    "lead_id_bytes",
    "with_refs",
    "event_batch_marker",
    "member_batch_marker",
    "batch_marker_leads",
    "compacted_refs",
    "decode_batch_marker",
    "is_old_marker",
    "decode_member_key",
    "lead_value",
    "logged_batch_group",
    "member_batch_group",
    "value_payload",
    "value_refs",
    "accepted_filter_key",
    "claim_key",
    "decode_external_id",
    "decode_filter_key",
    "done_key",
    "encode_external_id",
    "filter_key",
    "filter_prefix",
    "member_key",
    "member_prefix",
    "members_kind_prefix",
    "pending_key",
    "pending_prefix",
    "compacted_key",
    "compacted_value",
    "decode_compacted",
    "decode_compacted_key",
    "decode_event_key",
    "event_key",
    "event_type_prefix",
    "events_kind_prefix",
    "decode_lead_id",
    "decode_logged_batch",
    "event_value",
    "event_metadata",
    "member_value",
    "lead_key",
    "lead_prefix",
    "send_record_key",
    "history_key",
    "history_prefix",
    "history_value",
    "decode_history",
    "erased_key",
    "erased_prefix",
    "decode_erased_key",
    "suppression_key",
    "suppression_prefix",
    "hash_key_key",
    "bucket_key_key",
    "index_journal_key",
    "index_journal_prefix",
    "index_marks",
    "is_index_commit",
    "index_open_key",
    "index_piece_key",
    "index_piece_of",
    "index_prefix",
    "index_restored_key",
    "index_view",
    "is_indexed",
    "index_snapshot_key",
    "index_snapshot_prefix",
    "decode_index_journal_key",
    "send_record_prefix",
    "decode_logged_batch_key",
    "encode_logged_batch",
    "expand_changelog_record",
    "logged_batch_key",
    "logged_batch_prefix",
    "member_batch_key",
    "member_batch_prefix",
    "decode_member_batch_items",
    "lead_events_prefix",
    "refs_head",
    "prefix_upper_bound",
    "ts_bytes",
]

SEP = b"\x00"
_EVENT = b"E"
_COMPACTED = b"C"
_MEMBER = b"M"
_CLAIM = b"S"
_PENDING = b"P"
_DONE = b"D"
_FILTER = b"F"
_ACCEPTED_FILTER = b"A"
_LOGGED_BATCH = b"B"
_MEMBER_BATCH = b"G"
_LEAD = b"L"
_SEND_RECORD = b"X"
_HISTORY = b"H"
_ERASED = b"Z"
_SUPPRESSED = b"U"
_HASH_KEY = b"K"
_BUCKET_KEY = b"Q"
_INDEX = b"I"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_COMPACTED_VALUE = struct.Struct(">QQI")
_LEAD_ID = _U32
# After the lead id, a byte no older value has there (metadata is a JSON object, an
# externalId tag is 0 or 1, an L value ends) says which groups follow.
_ONE_REF = 2  # one u64
_REFS = 3  # a u16 count, then that many u64
_LEAD_ONE_REF = struct.Struct(">IBQ")
_NO_REFS: tuple[int, ...] = ()


def refs_head(refs: Sequence[int]) -> bytes:
    """The refs part of a value: the groups ``refs`` (at least one)."""
    if len(refs) == 1:
        return bytes((_ONE_REF,)) + _U64.pack(refs[0])
    return bytes((_REFS,)) + _U16.pack(len(refs)) + struct.pack(f">{len(refs)}Q", *refs)


def value_refs(value: bytes) -> tuple[int, ...]:
    """The groups an ``E``, ``M`` or ``L`` value says its key was logged in (none for a
    value written before groups existed)."""
    if len(value) > _LEAD_ID.size:
        tag = value[4]
        if tag == _ONE_REF:
            return (int(_U64.unpack_from(value, 5)[0]),)
        if tag == _REFS:
            n = _U16.unpack_from(value, 5)[0]
            return struct.unpack_from(f">{n}Q", value, 7)
    return _NO_REFS


def _payload_at(value: bytes) -> int:
    if len(value) > _LEAD_ID.size:
        tag = value[4]
        if tag == _ONE_REF:
            return 13
        if tag == _REFS:
            return 7 + 8 * int(_U16.unpack_from(value, 5)[0])
    return _LEAD_ID.size


def value_payload(value: bytes) -> bytes:
    """What an ``E``, ``M`` or ``L`` value holds after its lead id and refs."""
    return value[_payload_at(value) :]


def with_refs(value: bytes, refs: Sequence[int]) -> bytes:
    """``value`` (of an ``E``, ``M`` or ``L`` key) naming the groups ``refs`` instead."""
    return value[: _LEAD_ID.size] + refs_head(refs) + value_payload(value)


def lead_id_bytes(lead_id: int) -> bytes:
    """How a value begins: its lead id."""
    return _LEAD_ID.pack(lead_id)


def adding_ref(value: bytes, ref: int) -> bytes:
    """``value`` with the group ``ref`` among its refs."""
    refs = value_refs(value)
    if ref in refs:
        return value
    return with_refs(value, sorted({*refs, ref}))


def event_value(lead_id: int, ref: int, metadata: bytes | None = None) -> bytes:
    """An ``E`` value: the lead id, the group its key is logged in, then the event's
    metadata (compact JSON), if any."""
    head = _LEAD_ONE_REF.pack(lead_id, _ONE_REF, ref)
    return head + metadata if metadata else head


def event_metadata(value: bytes) -> bytes | None:
    """The metadata an ``E`` value carries after its lead id and group (None: the event
    had none)."""
    return value_payload(value) or None


def lead_value(lead_id: int, refs: Sequence[int]) -> bytes:
    """An ``L`` value: the lead id and the groups that logged its removed memberships."""
    return _LEAD_ID.pack(lead_id) + refs_head(refs)


def decode_lead_id(value: bytes) -> int:
    """The lead id at the head of an ``E``, ``M`` or ``L`` value (and inside a ``C`` one,
    see :func:`decode_compacted`)."""
    return int(_LEAD_ID.unpack_from(value)[0])


def lead_key(org: str, phone: str) -> bytes:
    return b"".join((_LEAD, SEP, org.encode(), SEP, phone.encode()))


def lead_prefix() -> bytes:
    return _LEAD + SEP


def send_record_key(org: str, send: str) -> bytes:
    return _send_key(_SEND_RECORD, org, send)


def history_key(org: str, send: str) -> bytes:
    return _send_key(_HISTORY, org, send)


def history_prefix() -> bytes:
    return _HISTORY + SEP


def history_value(scheduled_for: int, recipients: bytes) -> bytes:
    return _U64.pack(scheduled_for) + recipients


def decode_history(value: bytes) -> tuple[int, bytes]:
    """``(scheduledFor, serialized recipients bitmap)`` of an ``H`` value."""
    return int(_U64.unpack_from(value)[0]), value[_U64.size :]


def erased_key(org: str, lead_id: int) -> bytes:
    return _ERASED + SEP + org.encode() + SEP + _U32.pack(lead_id)


def erased_prefix() -> bytes:
    return _ERASED + SEP


def decode_erased_key(key: bytes) -> tuple[str, int]:
    # The id is the last four bytes (they may hold a NUL, so no split on SEP).
    return key[2:-5].decode(), int(_U32.unpack(key[-4:])[0])


def suppression_key(org: str, digest: bytes) -> bytes:
    return _SUPPRESSED + SEP + org.encode() + SEP + digest


def suppression_prefix(org: str) -> bytes:
    return _SUPPRESSED + SEP + org.encode() + SEP


def bucket_key_key() -> bytes:
    return _BUCKET_KEY


def hash_key_key() -> bytes:
    return _HASH_KEY


def index_prefix() -> bytes:
    """Every key of the partition's kept index."""
    return _INDEX + SEP


def index_open_key() -> bytes:
    """Present while an update of the index may be half written (see
    :mod:`leadstream.index.durable`)."""
    return _INDEX + SEP + b"o"


def index_restored_key() -> bytes:
    """Written (locally only) by a changelog restore that wrote keys the index derives from
    after the last record of the index it restored: the index may be behind them (see
    :class:`leadstream.state.rocksdb.LeadStore`)."""
    return _INDEX + SEP + b"r"


def index_marks() -> tuple[bytes, bytes]:
    """The marks of the kept index: this worker's own, never logged."""
    return index_open_key(), index_restored_key()


def index_snapshot_prefix() -> bytes:
    return _INDEX + SEP + b"s" + SEP


def index_snapshot_key(part: str) -> bytes:
    return index_snapshot_prefix() + part.encode()


def index_journal_prefix() -> bytes:
    return _INDEX + SEP + b"j" + SEP


def index_journal_key(entry: int) -> bytes:
    return index_journal_prefix() + _U64.pack(entry)


def index_piece_key(key: bytes, piece: int) -> bytes:
    """One piece of the value of the kept index's ``key`` (a snapshot part or a journal
    entry): values are logged in pieces small enough for one changelog record."""
    return key + SEP + _U16.pack(piece)


def is_index_commit(key: bytes, value: bytes | None) -> bool:
    """Whether writing ``key`` commits an update of the kept index: a journal entry (a
    piece of one) or the snapshot's meta part, the last one a snapshot writes."""
    if value is None:
        return False
    return key.startswith(index_journal_prefix()) or key.startswith(_INDEX_META)


def index_piece_of(key: bytes) -> tuple[bytes, int]:
    """The (key, piece) an :func:`index_piece_key` was made of."""
    return key[:-3], int(_U16.unpack(key[-2:])[0])


_INDEX_META = _INDEX + SEP + b"s" + SEP + b"meta" + SEP


# The kinds of keys the index is derived from (leadstream.index.partition.build), and how
# much of each value it reads: a value that changes only in the rest (a membership or an
# event logged again in another group) changes nothing of the index.
_INDEX_VIEW = {
    _EVENT: _LEAD_ID.size,
    _LEAD: _LEAD_ID.size,
    _MEMBER: _LEAD_ID.size,
    _COMPACTED: _COMPACTED_VALUE.size,
}
_INDEX_WHOLE = (_HISTORY, _ERASED, _SUPPRESSED, _HASH_KEY)


def index_view(key: bytes, value: bytes | None) -> bytes | None:
    """What of ``key``'s ``value`` the index derives from (None: nothing, the index does
    not read such keys, or the key is absent): the lead id and payload of an ``E``, ``M``,
    ``L`` value, not the groups it names; a ``C`` value without its groups; the whole of
    ``H``, ``Z``, ``U``, ``K``."""
    kind = key[:1]
    if value is None:
        return None
    if kind in _INDEX_WHOLE:
        return value
    head = _INDEX_VIEW.get(kind)
    if head is None:
        return None
    if kind == _COMPACTED:
        return value[:head]
    return value[:head] + value_payload(value)


def is_indexed(key: bytes) -> bool:
    """Whether the index is derived from ``key`` (its kind is one :func:`index_view`
    reads)."""
    kind = key[:1]
    return kind in _INDEX_WHOLE or kind in _INDEX_VIEW


def decode_index_journal_key(key: bytes) -> int:
    return int(_U64.unpack(key[len(index_journal_prefix()) :])[0])


def send_record_prefix() -> bytes:
    return _SEND_RECORD + SEP


def ts_bytes(ms: int) -> bytes:
    return _U64.pack(ms)


def lead_events_prefix(org: str, phone: str) -> bytes:
    return b"".join((_EVENT, SEP, org.encode(), SEP, phone.encode(), SEP))


def event_type_prefix(org: str, phone: str, event_type: str) -> bytes:
    return lead_events_prefix(org, phone) + event_type.encode() + SEP


def event_key(org: str, phone: str, event_type: str, occurred_at: int) -> bytes:
    return event_type_prefix(org, phone, event_type) + _U64.pack(occurred_at)


def members_kind_prefix() -> bytes:
    """Prefix of every membership key of a partition."""
    return _MEMBER + SEP


def events_kind_prefix() -> bytes:
    """Prefix of every event key of a partition (used by compaction)."""
    return _EVENT + SEP


def decode_event_key(key: bytes) -> tuple[str, str, str, int]:
    """(org, phone, eventType, occurredAt) of an event key."""
    body, ts = key[2:-8], key[-8:]
    org, phone, event_type, _ = body.split(SEP, 3)
    return org.decode(), phone.decode(), event_type.decode(), _U64.unpack(ts)[0]


def compacted_key(org: str, phone: str, event_type: str) -> bytes:
    return b"".join((_COMPACTED, SEP, org.encode(), SEP, phone.encode(), SEP, event_type.encode()))


def decode_compacted_key(key: bytes) -> tuple[str, str, str]:
    """``(org, phone, eventType)`` of a ``C`` key."""
    org, phone, event_type = key[2:].split(SEP, 2)
    return org.decode(), phone.decode(), event_type.decode()


def compacted_value(count: int, max_ts: int, lead_id: int, refs: Sequence[int] = ()) -> bytes:
    """A ``C`` value; ``refs``: the groups that still log some of the folded events."""
    head = _COMPACTED_VALUE.pack(count, max_ts, lead_id)
    return head + struct.pack(f">{len(refs)}Q", *refs) if refs else head


def decode_compacted(value: bytes) -> tuple[int, int, int]:
    """(count, max occurredAt, lead id) of the events folded away by compaction."""
    count, max_ts, lead_id = _COMPACTED_VALUE.unpack_from(value)
    return int(count), int(max_ts), int(lead_id)


def compacted_refs(value: bytes) -> tuple[int, ...]:
    """The groups a ``C`` value names (see :func:`compacted_value`)."""
    n = (len(value) - _COMPACTED_VALUE.size) // 8
    return struct.unpack_from(f">{n}Q", value, _COMPACTED_VALUE.size) if n > 0 else _NO_REFS


def prefix_upper_bound(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("a prefix of only 0xff bytes has no upper bound")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def member_prefix(org: str, campaign: str) -> bytes:
    return b"".join((_MEMBER, SEP, org.encode(), SEP, campaign.encode(), SEP))


def member_key(org: str, campaign: str, phone: str) -> bytes:
    return member_prefix(org, campaign) + phone.encode()


def decode_member_key(key: bytes) -> tuple[str, str, str]:
    """(org, campaignId, phone) of an ``M`` key."""
    org, campaign, phone = key[2:].split(SEP, 2)
    return org.decode(), campaign.decode(), phone.decode()


def member_value(lead_id: int, refs: Sequence[int], external_id: str | None) -> bytes:
    """An ``M`` value: the lead id, the groups its key was logged in, the externalId."""
    return _LEAD_ID.pack(lead_id) + refs_head(refs) + encode_external_id(external_id)


def encode_external_id(external_id: str | None) -> bytes:
    # A leading tag byte tells "no externalId" from any string.
    return b"\x00" if external_id is None else b"\x01" + external_id.encode()


def decode_external_id(value: bytes) -> str | None:
    """The externalId of a member value (:func:`member_value`)."""
    tagged = value_payload(value)
    return None if tagged[:1] == b"\x00" else tagged[1:].decode()


def _send_key(kind: bytes, org: str, send: str) -> bytes:
    return b"".join((kind, SEP, org.encode(), SEP, send.encode()))


def claim_key(org: str, send: str) -> bytes:
    return _send_key(_CLAIM, org, send)


def pending_key(org: str, send: str) -> bytes:
    return _send_key(_PENDING, org, send)


def pending_prefix() -> bytes:
    return _PENDING + SEP


def done_key(org: str, send: str) -> bytes:
    return _send_key(_DONE, org, send)


def accepted_filter_key(org: str, send: str) -> bytes:
    return _send_key(_ACCEPTED_FILTER, org, send)


def filter_prefix(org: str, send: str) -> bytes:
    return _send_key(_FILTER, org, send) + SEP


def filter_key(org: str, send: str, received_at: int, seq: int, part: int) -> bytes:
    return filter_prefix(org, send) + _U64.pack(received_at) + _U64.pack(seq) + _U32.pack(part)


def decode_filter_key(key: bytes) -> tuple[int, int, int]:
    """(receivedAt, seq, part) of a filter key."""
    tail = key[-20:]
    return _U64.unpack(tail[:8])[0], _U64.unpack(tail[8:16])[0], _U32.unpack(tail[16:])[0]


def logged_batch_prefix() -> bytes:
    return _LOGGED_BATCH + SEP


def logged_batch_key(created_ms: int) -> bytes:
    """A new, unique key for a logged batch of the group ``created_ms``."""
    return logged_batch_group(created_ms) + os.urandom(8)


def logged_batch_group(created_ms: int) -> bytes:
    """Prefix of the event batches of one group."""
    return logged_batch_prefix() + _U64.pack(created_ms)


def member_batch_prefix() -> bytes:
    return _MEMBER_BATCH + SEP


def member_batch_key(group: int) -> bytes:
    """A new, unique key for a logged batch of memberships of the group ``group``."""
    return member_batch_group(group) + os.urandom(8)


def member_batch_group(group: int) -> bytes:
    """Prefix of the membership batches of one group (batches logged before groups
    existed have 8 random bytes after the prefix, and belong to none)."""
    return member_batch_prefix() + _U64.pack(group)


class BatchMarker(msgspec.Struct, array_like=True, frozen=True):
    """What is kept locally of a logged batch, under its key: how many items it logged;
    for an events batch, their keys (``event_keys``); for a memberships batch, the ids of
    the leads whose keys it puts (``leads``, see :func:`batch_marker_leads`) and the keys
    it deletes (a removed membership)."""

    items: int
    leads: bytes = b""
    deleted: list[bytes] = msgspec.field(default_factory=list)
    event_keys: list[bytes] = msgspec.field(default_factory=list)


_marker_encoder = msgspec.msgpack.Encoder()
_marker_decoder = msgspec.msgpack.Decoder(BatchMarker)
# A few leads are packed (4 bytes each, after a 0 byte); more, a roaring bitmap (whose
# serialization never starts with 0).
_PACKED_LEADS = 8


def event_batch_marker(items: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    """The marker of a batch of event keys (``B``): their keys, as they are (building it
    is on the ingest path: no parsing)."""
    return _marker_encoder.encode(BatchMarker(len(items), event_keys=[k for k, _ in items]))


def member_batch_marker(items: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    """The marker of a batch of memberships (``G``): the leads of its puts (a put's value
    starts with its lead's id) and the keys it deletes."""
    unpack = _LEAD_ID.unpack_from
    leads = sorted({unpack(v)[0] for _, v in items if v is not None and len(v) >= 4})
    deleted = [k for k, v in items if v is None]
    if len(leads) <= _PACKED_LEADS:
        packed = b"\x00" + struct.pack(f">{len(leads)}I", *leads)
    else:
        packed = BitMap(leads).serialize()
    return _marker_encoder.encode(BatchMarker(len(items), packed, deleted))


def is_old_marker(value: bytes) -> bool:
    """Whether a batch key's value is of a batch logged before markers (and groups)
    existed: an events batch kept ``b""``, a memberships batch its item count (u32)."""
    return len(value) <= _U32.size


def decode_batch_marker(value: bytes) -> BatchMarker | None:
    """The marker kept under a batch key; None for a batch logged before markers existed
    (:func:`is_old_marker`)."""
    if is_old_marker(value):
        return None
    return _marker_decoder.decode(value)


def batch_marker_leads(marker: BatchMarker) -> BitMap:
    """The ids of the leads whose keys, other than event keys, the batch holds."""
    if marker.leads[:1] == b"\x00":
        n = (len(marker.leads) - 1) // 4
        return BitMap(struct.unpack_from(f">{n}I", marker.leads, 1))
    return BitMap.deserialize(marker.leads)


def decode_member_batch_items(value: bytes) -> int:
    """How many items the batch under a ``G`` key logged."""
    if len(value) == _U32.size:  # the marker of a batch logged before markers existed
        return int(_U32.unpack(value)[0])
    marker = decode_batch_marker(value)
    return 0 if marker is None else marker.items


def decode_logged_batch_key(key: bytes) -> int:
    """createdAt of a logged batch key."""
    return int(_U64.unpack(key[2:10])[0])


_batch_encoder = msgspec.msgpack.Encoder()
# A value of None (msgpack nil) deletes its key.
_batch_decoder = msgspec.msgpack.Decoder(list[tuple[bytes, bytes | None]])


def encode_logged_batch(items: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    return _batch_encoder.encode(items)


def decode_logged_batch(value: bytes) -> list[tuple[bytes, bytes | None]]:
    return _batch_decoder.decode(value)


def expand_changelog_record(key: bytes, value: bytes | None) -> list[tuple[bytes, bytes | None]]:
    """What one changelog record writes to the local DB: itself, or for a logged batch its
    puts (and deletions) plus its own key with its marker (a tombstone deletes only that
    key)."""
    if value is None or key[:2] not in _BATCH_PREFIXES:
        return [(key, value)]
    expanded = decode_logged_batch(value)
    marker = event_batch_marker if key[:1] == _LOGGED_BATCH else member_batch_marker
    # An ingest's journal entry rides in its last record, after its keys: not in the marker.
    index = _INDEX + SEP
    expanded.append((key, marker([item for item in expanded if not item[0].startswith(index)])))
    return expanded


_BATCH_PREFIXES = (_LOGGED_BATCH + SEP, _MEMBER_BATCH + SEP)
