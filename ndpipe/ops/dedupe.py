"""dedupe: keep the first record for each key, drop (and report) the later ones.

The key is one or more JMESPath expressions. Only a 128-bit digest of each distinct key is kept
(blake2b of the key serialised as JSON, held as an int in a set), so memory grows with the
number of distinct keys, 80 to 105 bytes each (measured; the set's table grows in steps), never
with the records. Two different keys share a digest with probability about n^2 / 2^129: below
1 in 10^20 for a billion keys.

A record whose key is null or missing (every part of it, for a compound key) has no key: it is
never a duplicate, so it is always kept, and counted. (Treating null as a key would silently
drop every keyless record after the first.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import orjson

from ndpipe import codec
from ndpipe.errors import RecordError
from ndpipe.expr import EvaluationError, Expression
from ndpipe.io import ErrorPolicy, Record, Records, skipping

DIGEST_BYTES = 16


@dataclass
class DedupeStats:
    read: int = 0
    kept: int = 0
    duplicates: int = 0
    keyless: int = 0


def _lower(value: Any) -> Any:
    """Lower-case every string in a key (`str.lower`, as Auth0 lower-cases emails)."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list):
        return [_lower(item) for item in value]
    if isinstance(value, dict):
        return {key: _lower(item) for key, item in value.items()}
    return value


def dedupe(
    records: Iterable[Record],
    *,
    keys: Sequence[Expression],
    stats: DedupeStats,
    ignore_case: bool = False,
    on_duplicate: Callable[[Record], None] | None = None,
    policy: ErrorPolicy | None = None,
) -> Records:
    """Yield each record whose key has not been seen; pass the others to `on_duplicate`.

    A record whose key cannot be computed is a RecordError, which `policy` may skip.
    """
    seen: set[int] = set()

    def run(stream: Iterator[Record]) -> Records:
        return _dedupe(stream, seen, keys, stats, ignore_case, on_duplicate)

    return skipping(records, policy, run)


def _dedupe(
    records: Iterator[Record],
    seen: set[int],
    keys: Sequence[Expression],
    stats: DedupeStats,
    ignore_case: bool,
    on_duplicate: Callable[[Record], None] | None,
) -> Records:
    add = seen.add
    searches = [key.search for key in keys]
    single = searches[0] if len(searches) == 1 else None
    dumps = orjson.dumps  # codec.dumps (big integers, deep nesting) only when it refuses
    option = orjson.OPT_SORT_KEYS
    current = keys[0]
    try:
        for record in records:
            stats.read += 1
            if single is not None:
                key: Any = single(record)
                keyless = key is None
            else:
                key = []
                for index, search in enumerate(searches):
                    current = keys[index]
                    key.append(search(record))
                keyless = all(part is None for part in key)
            if keyless:
                stats.keyless += 1
                stats.kept += 1
                yield record
                continue
            if ignore_case:
                key = _lower(key)
            try:
                text = dumps(key, option=option)
            except TypeError:
                text = _key_text(key)
            digest = int.from_bytes(blake2b(text, digest_size=DIGEST_BYTES).digest(), "big")
            if digest in seen:
                stats.duplicates += 1
                if on_duplicate is not None:
                    on_duplicate(record)
                continue
            add(digest)
            stats.kept += 1
            yield record
    except EvaluationError as error:
        raise current.failed(error) from None


def _key_text(key: Any) -> bytes:
    """A key orjson refuses, as JSON with sorted keys by the exact path, or a RecordError."""
    try:
        return codec.dumps(key, option=orjson.OPT_SORT_KEYS)
    except TypeError as error:
        raise RecordError(f"cannot use the key as JSON: {error}") from None
