"""diff: the changes between two exports, keyed by JMESPath expressions, in bounded memory.

Each side is sorted by key with sort's external merge sort (runs spill to a private scratch
directory past the buffer size), then the two sorted streams are merged in one pass: a key only
in OLD is `removed`, only in NEW `added`, in both with different values `changed` (with the
changed paths). Keys compare as sort orders them (1 and 1.0 are one key). The output is in key
order, so it is the same for the same two exports whatever their record order.

Values compare as JSON: 1 and 1.0 are the same number, true is not 1, integers of any size are
exact, key order inside objects does not matter, arrays compare whole, element by element.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ndpipe import codec
from ndpipe.errors import DataError, RecordError
from ndpipe.expr import EvaluationError, Expression
from ndpipe.io import ErrorPolicy, Position, Record, Records, feed
from ndpipe.ops.sort import DEFAULT_BUFFER_SIZE, ExternalSorter, Key, KeyMaker

OPS = ("added", "removed", "changed")
# Runs merged at once per side: both sides stream their runs during the final merge.
FAN_IN = 32
_MISSING = object()
# A record of one side: its key (with its input number last) and its JSON line.
Entry = tuple[Key, bytes]


@dataclass
class DiffStats:
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0


class _SortedSide(ExternalSorter):
    """One input sorted by key: yields (key, line) entries, where the key's last part is the
    record's number in its input (line, or record of a JSON array), for error messages."""

    def __init__(
        self, keys: Sequence[Expression], position: Position, buffer_size: int, temp_dir: str | None
    ) -> None:
        super().__init__(keys, buffer_size=buffer_size, temp_dir=temp_dir, fan_in=FAN_IN)
        self.key = _NumberedKeys(keys, position)

    # The keys are lists (KeyMaker's, unique by their last part), taken apart by the merge.
    def key_size(self, key: Any) -> int:
        return sum(len(part) for part in key if type(part) is str)

    def pairs(self) -> Iterator[Entry]:
        for key, _, line, _ in self.entries():
            yield key, line


def json_equal(left: Any, right: Any) -> bool:
    """Equal as JSON values: numbers by value (1 == 1.0, big integers exact), true != 1."""
    left_kind, right_kind = type(left), type(right)
    if left_kind is dict:
        if right_kind is not dict or len(left) != len(right):
            return False
        return all(name in right and json_equal(value, right[name]) for name, value in left.items())
    if left_kind is list:
        if right_kind is not list or len(left) != len(right):
            return False
        return all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if left_kind is bool or right_kind is bool:
        return left_kind is right_kind and left == right
    if left_kind in (int, float):
        return right_kind in (int, float) and left == right
    return left_kind is right_kind and left == right


def _changed_paths(old: Any, new: Any, path: str, found: list[str]) -> None:
    """Append the dotted paths where `old` and `new` differ; objects are walked, others whole."""
    if type(old) is dict and type(new) is dict:
        for name in sorted(old.keys() | new.keys()):
            inner = f"{path}.{name}" if path else name
            _changed_paths(old.get(name, _MISSING), new.get(name, _MISSING), inner, found)
    elif old is _MISSING and new is _MISSING:
        return
    elif old is _MISSING or new is _MISSING or not json_equal(old, new):
        found.append(path)


def _at(record: Any, path: Sequence[str]) -> Any:
    for name in path:
        if type(record) is not dict or name not in record:
            return _MISSING
        record = record[name]
    return record


def changed_fields(
    old: Record, new: Record, fields: Sequence[Sequence[str]] | None = None
) -> list[str]:
    """The paths that differ between two records, sorted: top-level keys, and dotted paths into
    nested objects. With `fields` (each a path as a list of names), only paths at or under them."""
    found: list[str] = []
    if fields is None:
        _changed_paths(old, new, "", found)
        return found
    for field in fields:
        _changed_paths(_at(old, field), _at(new, field), ".".join(field), found)
    return sorted(set(found))


def parse_fields(text: str) -> list[list[str]]:
    """`email,user_metadata.plan` as paths: [['email'], ['user_metadata', 'plan']]."""
    paths = []
    for item in text.split(","):
        parts = item.strip().split(".")
        if not all(parts):
            raise ValueError(f"{item.strip()!r} is not a field or dotted path")
        paths.append(parts)
    return paths


class _NumberedKeys(KeyMaker):
    """The sort key of a record, with its number in the input as the last part; a key that is
    null or missing (any part of it) is a RecordError."""

    def __init__(self, keys: Sequence[Expression], position: Position) -> None:
        super().__init__(keys, descending=False)
        self.position = position

    def __call__(self, record: Record) -> Key:
        key = super().__call__(record)
        if self.null_rank in key[::2]:
            raise RecordError("the key is null or missing")
        key.append(self.position.number)
        return key


def _sorted(
    records: Iterable[Record],
    side: _SortedSide,
    position: Position,
    policy: ErrorPolicy | None,
) -> Callable[[int], str]:
    """Add every record to `side`; returns a function naming the input position of number N."""
    feed(records, side.add, policy)
    name, unit = position.name, position.unit
    if unit == "line":
        return lambda number: f"{name}:{number}"
    return lambda number: f"{name}: {unit} {number}"


def _unique(
    entries: Iterator[Entry], where: Callable[[int], str], keys: Sequence[Expression]
) -> Iterator[Entry]:
    """The entries, refusing a key that appears twice (naming both positions)."""
    previous: Key | None = None
    for key, line in entries:
        if previous is not None and previous[:-1] == key[:-1]:
            shown = codec.dumps(_key_values(keys, codec.loads(line))).decode()
            first, second = where(previous[-1]), where(key[-1])
            raise DataError(f"the key {shown} appears twice: {first} and {second}")
        previous = key
        yield key, line


def diff(
    old: Callable[[Position], Iterable[Record]],
    new: Callable[[Position], Iterable[Record]],
    *,
    keys: Sequence[Expression],
    stats: DiffStats,
    only: Iterable[str] = OPS,
    fields: Sequence[Sequence[str]] | None = None,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    temp_dir: str | None = None,
    policy: ErrorPolicy | None = None,
    position: Position | None = None,
) -> Records:
    """Yield one record per difference between OLD and NEW, in key order (see the module doc).

    `old` and `new` open their input when called with the position to keep up to date, in turn
    (OLD is read to the end first). A record whose key is null or missing (any part of it) is a
    RecordError, which `policy` may skip; a key twice on one side is a DataError.
    """
    wanted = set(only)
    position = position if position is not None else Position("input")
    # The two sides share the buffer: OLD's last run stays in memory while NEW is read.
    half = max(1, buffer_size // 2)
    old_side = _SortedSide(keys, position, half, temp_dir)
    new_side = _SortedSide(keys, position, half, temp_dir)
    try:
        old_where = _sorted(old(position), old_side, position, policy)
        new_where = _sorted(new(position), new_side, position, policy)
        position.number = 0  # errors from here on name their own positions
        yield from _merge(
            _unique(old_side.pairs(), old_where, keys),
            _unique(new_side.pairs(), new_where, keys),
            keys=keys,
            stats=stats,
            wanted=wanted,
            fields=fields,
        )
    finally:
        old_side.close()
        new_side.close()


def _key_values(keys: Sequence[Expression], record: Record) -> list[Any]:
    try:
        return [expression.search(record) for expression in keys]
    except EvaluationError as error:  # it evaluated once already, when the side was sorted
        raise RecordError(str(error)) from None


def _merge(
    old: Iterator[Entry],
    new: Iterator[Entry],
    *,
    keys: Sequence[Expression],
    stats: DiffStats,
    wanted: set[str],
    fields: Sequence[Sequence[str]] | None,
) -> Records:
    loads = codec.loads
    old_entry = next(old, None)
    new_entry = next(new, None)
    while old_entry is not None or new_entry is not None:
        if new_entry is None or (old_entry is not None and old_entry[0][:-1] < new_entry[0][:-1]):
            assert old_entry is not None
            stats.removed += 1
            if "removed" in wanted:
                record = loads(old_entry[1])
                yield {"op": "removed", "key": _key_values(keys, record), "record": record}
            old_entry = next(old, None)
        elif old_entry is None or new_entry[0][:-1] < old_entry[0][:-1]:
            stats.added += 1
            if "added" in wanted:
                record = loads(new_entry[1])
                yield {"op": "added", "key": _key_values(keys, record), "record": record}
            new_entry = next(new, None)
        else:
            if old_entry[1] == new_entry[1]:  # the same line: nothing moved (the fast path)
                stats.unchanged += 1
            else:
                before, after = loads(old_entry[1]), loads(new_entry[1])
                moved = changed_fields(before, after, fields)
                if not moved:
                    stats.unchanged += 1
                else:
                    stats.changed += 1
                    if "changed" in wanted:
                        yield {
                            "op": "changed",
                            "key": _key_values(keys, after),
                            "record": after,
                            "old": before,
                            "fields": moved,
                        }
            old_entry = next(old, None)
            new_entry = next(new, None)


def _identity(record: Any) -> bytes:
    """A record's JSON text with sorted keys: equal for records equal as read."""
    return codec.dumps(record, option=orjson.OPT_SORT_KEYS)


def apply_diff(old_records: Iterable[Record], diff_lines: Iterable[Record]) -> list[Record]:
    """OLD with a diff applied: NEW (as a multiset), when the diff was made without --fields
    or --only. Removed and changed records are found by their OLD value, so no key is needed;
    changed records are replaced in place, added ones appended in diff order."""
    result: list[Record | None] = list(old_records)
    places: dict[bytes, list[int]] = {}
    for index, record in enumerate(result):
        places.setdefault(_identity(record), []).append(index)
    added: list[Record] = []

    def take(record: Record) -> int:
        indexes = places.get(_identity(record))
        if not indexes:
            raise ValueError(f"the diff names a record that OLD does not hold: {record!r}")
        return indexes.pop()

    for line in diff_lines:
        op = line["op"]
        if op == "added":
            added.append(line["record"])
        elif op == "removed":
            result[take(line["record"])] = None
        elif op == "changed":
            result[take(line["old"])] = line["record"]
        else:
            raise ValueError(f"unknown op {op!r}")
    return [record for record in result if record is not None] + added
