"""Cost of phone normalization per call: the plain phonenumbers path against normalize_phone.

Run from the repository root: ``python -m bench.phone_normalize [--distinct 100000] [--runs 3]``

Main scenario: ``2 * distinct`` calls over ``distinct`` canonical E.164 numbers from about 30
countries, each number seen twice, in shuffled order, default region US; this is what
ingest mostly sees. A second, smaller scenario times the same numbers written nationally
("(415) 555-0123" style, region-specific spellings), which cannot take the fast path and
show what the cache of repeats buys. Every run checks that both functions gave identical
answers. Prints JSON with per-run seconds, medians of µs/call and old/new ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import phonenumbers

from leadstream.domain.normalize import _normalize_phone_slow, _phone_outcome, normalize_phone
from leadstream.domain.phone_fast import canonical_e164
from leadstream.domain.rejects import RowError

# Countries of the generated leads; each contributes random numbers shaped like its
# example mobile number (same country code, prefix and length, random trailing digits).
COUNTRIES = (
    "US CA GB BR DE FR IT ES NL BE CH AT SE NO DK FI PL PT IE IN "
    "CN JP KR AU NZ MX AR CO CL ZA NG EG TR RU IL AE SG HK PH ID"
).split()
RANDOM_TAIL = 6

Normalize = Callable[[Any, str], str]


def make_numbers(distinct: int, seed: int) -> list[str]:
    """``distinct`` different canonical numbers, spread evenly over COUNTRIES."""
    rng = random.Random(seed)
    templates = []
    for region in COUNTRIES:
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        assert example is not None, region
        templates.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    numbers: set[str] = set()
    while len(numbers) < distinct:
        head = rng.choice(templates)[:-RANDOM_TAIL]
        numbers.add(head + "".join(rng.choice("0123456789") for _ in range(RANDOM_TAIL)))
    return sorted(numbers)


def national_spellings(numbers: list[str]) -> list[tuple[str, str]]:
    """The same numbers as (national spelling, its region) pairs."""
    out = []
    national = phonenumbers.PhoneNumberFormat.NATIONAL
    for e164 in numbers:
        parsed = phonenumbers.parse(e164, None)
        assert parsed.country_code is not None
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
        out.append((phonenumbers.format_number(parsed, national), region))
    return out


def outcomes(fn: Normalize, calls: list[tuple[str, str]]) -> list[object]:
    results: list[object] = []
    for value, region in calls:
        try:
            results.append(fn(value, region))
        except RowError as exc:
            results.append((exc.reason, exc.detail))
    return results


def time_once(fn: Normalize, calls: list[tuple[str, str]]) -> float:
    """Seconds for one pass over ``calls``, starting with an empty cache of repeats."""
    _phone_outcome.cache_clear()
    start = time.perf_counter()
    for value, region in calls:
        try:
            fn(value, region)
        except RowError:
            pass
    return time.perf_counter() - start


def scenario(calls: list[tuple[str, str]], runs: int) -> dict[str, Any]:
    """Old and new timed alternately ``runs`` times; answers compared first."""
    _phone_outcome.cache_clear()
    if outcomes(_normalize_phone_slow, calls) != outcomes(normalize_phone, calls):
        raise SystemExit("normalize_phone and the slow path disagree")
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(runs):
        seconds["old"].append(time_once(_normalize_phone_slow, calls))
        seconds["new"].append(time_once(normalize_phone, calls))
    us = {k: round(statistics.median(v) / len(calls) * 1e6, 3) for k, v in seconds.items()}
    fast = sum(canonical_e164(value) is not None for value, _ in calls)
    return {
        "calls": len(calls),
        "distinct": len(set(calls)),
        "fast_path_share": round(fast / len(calls), 4),
        "seconds": {k: [round(s, 4) for s in v] for k, v in seconds.items()},
        "median_us_per_call": us,
        "ratio_old_to_new": round(us["old"] / us["new"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--distinct", type=int, default=100_000)
    parser.add_argument("--national", type=int, default=20_000, help="distinct, 0 to skip")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    numbers = make_numbers(args.distinct, args.seed)
    canonical = [(n, "US") for n in numbers] * 2
    rng.shuffle(canonical)
    result: dict[str, Any] = {
        "scenario": "normalize_phone: canonical E.164 of mixed countries, each seen twice",
        "countries": len(COUNTRIES),
        "runs": args.runs,
        "canonical": scenario(canonical, args.runs),
    }
    if args.national:
        national = national_spellings(numbers[: args.national]) * 2
        rng.shuffle(national)
        result["national_repeats"] = scenario(national, args.runs)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "phonenumbers": phonenumbers.__version__,
    }
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
