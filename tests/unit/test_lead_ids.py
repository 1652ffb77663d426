"""LeadIds against a dict of names (what it replaced), through random adds, erases, merges
and round trips through its kept form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadstream.index import ids as ids_module
from leadstream.index.ids import MAX_ORGS, LeadIds

ORGS = ["acme", "globex", "o\0dd"]
PHONES = st.one_of(
    st.integers(1, 10**15 - 1).map(lambda n: f"+{n}"),  # E.164: kept as integers
    st.sampled_from(["+4915123456789", "+15550000001", "+1", "+999999999999999"]),
    # Of other forms (kept in the dict beside): an erased lead's placeholder, leading
    # zero, too long, not ASCII digits, empty, a NUL (numpy's strings drop a trailing one).
    st.sampled_from(
        ["\x0012", "+0123", "+1234567890123456", "+١٢٣", "", "+", "12345", "+1\x00", "+1\x002"]
    ),
)


def _assign_many(
    ids: LeadIds, reference: dict[tuple[str, str], int], names: list[tuple[str, str]], next_id: int
) -> int:
    """assign_many of ``names``, checked: the known keep their ids, the new get the next
    ones in the order first met. Returns the next id."""
    leads, fresh = ids.assign_many([o for o, _ in names], [p for _, p in names], next_id)
    expected = []
    for name in names:
        if name not in reference:
            reference[name] = next_id
            expected.append(names.index(name))
            next_id += 1
    assert leads == [reference[name] for name in names]
    assert fresh == expected
    return next_id


def _round_trip(ids: LeadIds, size: int, chunk: int) -> LeadIds:
    parts = [ids.chunk(start, min(start + chunk, size)) for start in range(0, size, chunk)]
    return LeadIds.from_chunks(
        ids.organizations, [keys for keys, _ in parts], [odd for _, held in parts for odd in held]
    )


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["add", "assign_many", "erase", "lookup_many", "reload"]),
            st.sampled_from(ORGS),
            PHONES,
        ),
        max_size=300,
    ),
    merge_at=st.sampled_from([1, 3, 4_096]),
)
def test_lead_ids_equal_a_dict_of_names(steps: list[tuple[str, str, str]], merge_at: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ids_module, "_MERGE_AT", merge_at)
        _check_against_a_dict(steps)


def _check_against_a_dict(steps: list[tuple[str, str, str]]) -> None:
    ids = LeadIds()
    reference: dict[tuple[str, str], int] = {}
    next_id = 0
    for kind, org, phone in steps:
        if kind == "add" and (org, phone) not in reference:
            ids.add(org, phone, next_id)
            reference[(org, phone)] = next_id
            next_id += 1
        elif kind == "assign_many":  # 70 names at once (the arrays' way), some of other
            # forms, some known, some twice
            names = [(ORGS[k % 2], f"{phone}{k % 60:02d}") for k in range(70)]
            next_id = _assign_many(ids, reference, [*names, *list(reference)[:5]], next_id)
        elif kind == "erase" and (org, phone) in reference:
            ids.remove(org, phone, reference.pop((org, phone)))
        elif kind == "lookup_many":  # every name known, and this one five times
            names = [*reference, *[(org, phone)] * 5]
            next_id = _assign_many(ids, reference, names, next_id)
        elif kind == "reload":
            ids = _round_trip(ids, next_id, chunk=7)
        assert ids.get(org, phone) == reference.get((org, phone))
    by_id = {lead: name for name, lead in reference.items()}
    assert dict(ids.items()) == reference
    for lead in range(next_id + 2):
        assert ids.name_of(lead) == by_id.get(lead)
    for org in ORGS:
        assert sorted(ids.of_organization(org)) == sorted(
            (p, lead) for (o, p), lead in reference.items() if o == org
        )


def test_ids_given_out_of_order_and_with_gaps() -> None:
    """A build gives the ids the keys carry, in the order it meets them."""
    ids = LeadIds()
    ids.setdefault("acme", "+15550000003", 7)
    ids.setdefault("acme", "+15550000001", 2)
    ids.setdefault("acme", "+15550000003", 7)  # met again under another key
    assert ids.size == 8
    assert ids.get("acme", "+15550000003") == 7
    assert ids.get("acme", "+15550000001") == 2
    assert [ids.name_of(lead) for lead in (0, 2, 7)] == [
        None,
        ("acme", "+15550000001"),
        ("acme", "+15550000003"),
    ]
    reread = _round_trip(ids, 10, chunk=4)
    assert dict(reread.items()) == dict(ids.items())
    assert reread.size == 10


def test_organizations_beyond_the_codes_are_kept_too() -> None:
    ids = LeadIds()
    for n in range(MAX_ORGS + 3):
        ids.add(f"org{n}", "+15550000001", n)
    assert len(ids.organizations) == MAX_ORGS
    assert all(ids.get(f"org{n}", "+15550000001") == n for n in range(MAX_ORGS + 3))
    reread = _round_trip(ids, MAX_ORGS + 3, chunk=1_000)
    assert reread.name_of(MAX_ORGS + 2) == (f"org{MAX_ORGS + 2}", "+15550000001")


def test_a_damaged_kept_form_is_refused() -> None:
    ids = LeadIds()
    ids.add("acme", "+15550000001", 0)
    ids.add("acme", "\x0099", 1)
    keys, odd = ids.chunk(0, 2)
    with pytest.raises(ValueError):
        LeadIds.from_chunks([], [keys], odd)  # its organization is unknown
    with pytest.raises(ValueError):
        LeadIds.from_chunks(["acme"], [keys], [])  # a name of another form is missing
    with pytest.raises(ValueError):
        LeadIds.from_chunks(["acme"], [keys], [*odd, (0, "acme", "x")])
