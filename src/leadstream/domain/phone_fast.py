"""Fast path of ``normalize_phone`` for input that is already canonical E.164.

Why this exists: ``phonenumbers.parse`` + ``is_possible_number_with_reason`` +
``format_number`` cost about 12 µs per call, and ingest sees millions of phones that are
almost all written as ``+<country code><national number>`` already. For such a string the
slow path can only ever answer the string itself or an error, so all that has to be decided
is *whether* it answers the string itself.

Why the answer is exactly the slow path's: :func:`canonical_e164` replays the steps
``phonenumbers.parse`` takes for ``"+"`` followed by 3 to 20 ASCII digits, with
phonenumbers' own metadata, functions and compiled patterns, and returns ``None`` (fall
back to the slow path) whenever any step would do more than pass the digits through:

* extraction, viability and extension stripping leave ``+<3 or more ASCII digits>``
  untouched, and a leading ``+`` makes the default region irrelevant (it is only consulted
  for an international dialling prefix or a number without a country code);
* the country code is the shortest 1-3 digit prefix (not starting with ``0``) in
  ``COUNTRY_CODE_TO_REGION_CODE``, as in ``_extract_country_code``;
* the national-prefix/carrier-code stripping of ``_maybe_strip_national_prefix_carrier_code``
  is provably a no-op: its ``national_prefix_for_parsing`` pattern does not match, or only
  matches the empty string on the branch that keeps ``number[0:]``. Otherwise fall back;
* the national significant number (NSN) has a length that phonenumbers' own
  ``_test_number_length`` (the function ``is_possible_number_with_reason`` ends in) calls
  ``IS_POSSIBLE`` for the country's main-region metadata, and 2 to 17 digits (the parse
  limits). Leading zeros survive the int round trip through ``italian_leading_zero``;
* E.164 formatting is then ``"+" + str(country_code) + nsn``, the input itself.

Anything else (``00`` prefixes, spaces, non-ASCII digits, unknown country codes, impossible
lengths, errors) is left to the slow path, which stays the single source of error details.
"""

from __future__ import annotations

import re
from typing import Final

from phonenumbers import phonenumberutil as _pnu
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.re_util import re_compile

__all__ = ["canonical_e164"]

# Parse limits of phonenumbers (_MIN_LENGTH_FOR_NSN, _MAX_LENGTH_FOR_NSN,
# _MAX_LENGTH_COUNTRY_CODE); a number outside them is never answered here.
_MIN_NSN: Final = 2
_MAX_NSN: Final = 17
_MAX_CC: Final = 3
# "+" and at least 3 digits: fewer digits after "+" raise TOO_SHORT_AFTER_IDD in parse.
_MIN_CHARS: Final = 1 + 3
_MAX_CHARS: Final = 1 + _MAX_CC + _MAX_NSN

# Country codes by their decimal spelling. A prefix never starts with "0" when it is looked
# up, so string equality here is the slow path's int(prefix) membership test.
_CC_BY_PREFIX: Final[dict[str, int]] = {str(cc): cc for cc in _pnu.COUNTRY_CODE_TO_REGION_CODE}


class _Plan:
    """What the slow path does with ``+<cc><nsn>`` for one country code, from its metadata."""

    __slots__ = ("lengths", "prefix", "transform")

    def __init__(
        self, lengths: frozenset[int], prefix: re.Pattern[str] | None, transform: bool
    ) -> None:
        self.lengths = lengths
        self.prefix = prefix
        self.transform = transform


# Filled lazily: building a plan loads that region's metadata, which phonenumbers also does
# lazily. A race only builds the same plan twice.
_PLANS: dict[int, _Plan | None] = {}
_UNBUILT: Final = _Plan(frozenset(), None, False)


def _build_plan(cc: int) -> _Plan | None:
    """The plan for ``cc`` from the metadata ``parse`` and ``is_possible`` use; None: never fast."""
    region = _pnu.region_code_for_country_code(cc)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(cc, region)
    if metadata is None:
        return None
    # Ask phonenumbers' own length test (it looks only at len(), so any digits do): this is
    # exactly what is_possible_number_with_reason answers for the NSN, local-only included.
    lengths = frozenset(
        n
        for n in range(_MIN_NSN, _MAX_NSN + 1)
        if _pnu._test_number_length("5" * n, metadata)  # noqa: SLF001
        == _pnu.ValidationResult.IS_POSSIBLE
    )
    pattern = metadata.national_prefix_for_parsing
    prefix = re_compile(pattern) if pattern else None
    return _Plan(lengths, prefix, bool(metadata.national_prefix_transform_rule))


def _stripping_is_noop(plan: _Plan, nsn: str) -> bool:
    """True when national-prefix stripping provably returns ``nsn`` unchanged."""
    if plan.prefix is None:
        return True
    match = plan.prefix.match(nsn)
    if match is None:
        return True
    if match.end() != 0:
        return False
    # An empty match strips nothing on the branch without a transform, which is taken when
    # there is no rule or the last group did not participate. With a rule and no groups the
    # slow path fails on groups()[-1]; leave that (and every transform) to the slow path.
    if not plan.transform:
        return True
    groups = match.groups()
    return bool(groups) and groups[-1] is None


def canonical_e164(value: str) -> str | None:
    """``value`` if ``normalize_phone`` would return it unchanged, else None (ask the slow path).

    ``value`` must be an exact ``str``; the caller checks that.
    """
    if not _MIN_CHARS <= len(value) <= _MAX_CHARS or value[0] != "+" or not value.isascii():
        return None
    digits = value[1:]
    # isdigit() on an ASCII string accepts only 0-9.
    if not digits.isdigit() or digits[0] == "0":
        return None
    # The shortest known prefix wins; no country code is 0, so ``or`` tries the next width.
    cc = _CC_BY_PREFIX.get(digits[:1]) or _CC_BY_PREFIX.get(digits[:2])
    cc = cc or _CC_BY_PREFIX.get(digits[:3])
    if cc is None:
        return None
    nsn = digits[len(str(cc)) :]
    plan = _PLANS.get(cc, _UNBUILT)
    if plan is _UNBUILT:
        plan = _PLANS[cc] = _build_plan(cc)
    if plan is None or len(nsn) not in plan.lengths:
        return None
    if plan.prefix is not None and not _stripping_is_noop(plan, nsn):
        return None
    return value
