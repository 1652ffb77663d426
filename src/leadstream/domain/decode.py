"""The one way leadstream decodes a JSON value it did not write: bounded in size and depth.

Every path that decodes a whole JSON document (each input topic, each webhook body, each
NDJSON line of an upload) comes through :func:`decode_json`, so one size bound and one
depth bound hold everywhere. A streamed upload checks the same depth bound as it reads
(``web/audience.py``). Whatever the bytes, the answer is a value or a
:class:`~leadstream.domain.rejects.RowError` with reason ``invalid_json``; nothing else
escapes, and nothing is allocated in proportion to the nesting.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from leadstream.domain.rejects import Reason, RowError

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "decode_json", "nesting_exceeds"]

# Also the largest message leadstream lets on its topics (kafka/config.py, LARGE_MESSAGE_BYTES):
# a 50,000-event batch is ~5 MB, and a document this size decodes to a few hundred MB of
# Python objects at worst (``[{},{},...]``), which a worker survives.
MAX_JSON_BYTES = 16 * 1024 * 1024
# The contract's values nest 4 levels (batch, events, row, metadata); metadata objects get
# the rest. Deeper is a mistake or an attack: msgspec itself gives up near 1,000.
MAX_JSON_DEPTH = 64

# What is left of a JSON text for the depth check: its brackets (all as "[" and "]") and
# its quotes; every other byte is dropped.
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


def _within(depth: int) -> re.Pattern[bytes]:
    """A pattern matching exactly the skeletons that nest at most ``depth`` levels.

    A level is ``[`` then strings or containers of the level below, then ``]``; strings
    are ``"..."`` (their escapes are gone by then). Possessive and atomic throughout, so
    the match is one linear pass whatever the input (no backtracking).
    """
    string = rb'"[^"]*+"'
    level = rb"\[(?:" + string + rb")*+\]"
    for _ in range(depth - 1):
        level = rb"\[(?:" + string + rb"|" + level + rb")*+\]"
    return re.compile(rb"(?:" + string + rb"|" + level + rb")*+")


_WITHIN_BOUND = _within(MAX_JSON_DEPTH)


def nesting_exceeds(data: bytes) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects deeper than
    :data:`MAX_JSON_DEPTH`, or is so malformed that its brackets or quotes do not pair.

    C-speed byte operations and one linear regex pass, no Python loop over the bytes:
    escaped backslashes and quotes are removed, the rest is cut down to brackets and
    quotes, and the pattern of :func:`_within` must match it whole.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return False  # cannot nest deeper than it has brackets (most single events)
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    return _WITHIN_BOUND.fullmatch(data.translate(_AS_SQUARE, _NOT_STRUCTURE)) is None


def decode_json(raw: bytes | bytearray | memoryview | str) -> Any:
    """Decode a UTF-8 JSON document within the bounds, or raise ``RowError(invalid_json)``."""
    data = raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_JSON_BYTES:
        raise RowError(
            Reason.INVALID_JSON,
            f"the value is {len(data)} bytes; at most {MAX_JSON_BYTES} are decoded",
        )
    if nesting_exceeds(data):
        raise RowError(
            Reason.INVALID_JSON,
            f"the value nests deeper than {MAX_JSON_DEPTH} levels, or its brackets do not pair",
        )
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise RowError(Reason.INVALID_JSON, f"not valid UTF-8 JSON: {exc}") from None
    except RecursionError:  # not reached within MAX_JSON_DEPTH; kept as a last guard
        raise RowError(Reason.INVALID_JSON, "the value nests too deeply") from None
