"""The Python API: every stage of the CLI as a function over any iterable of dicts.

Each function runs the same op the command runs (ndpipe/ops/), and parses its expressions and
field specs with the same parsers, when it is called: a mistake raises UsageError before any
record is read. Transforms return lazy iterators, so stages chain in constant memory as they do
in a pipe:

    import ndpipe

    users = ndpipe.read("export.json.gz")
    rows = ndpipe.select(ndpipe.filter(users, "email_verified"), ["email", "Name=name"])
    with open("out.csv", "wb") as out:
        ndpipe.write_csv(ndpipe.escape_csv(rows), out)

`errors="skip"` is the CLI's `--on-error skip`: a record the stage cannot process (or, for
`read`, a line it cannot read) is passed over and counted in the `Skipped` given as `skipped`.
Errors raised by an earlier stage pass through a later one untouched, as in a CLI chain.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypedDict

from ndpipe.errors import DataError, NdpipeError, RecordError, UsageError
from ndpipe.io import ErrorPolicy, Position, Record, Records, open_input, read_stream
from ndpipe.ops.dedupe import DedupeStats
from ndpipe.ops.import_clean import CleanStats, Rejected
from ndpipe.ops.upsert_patch import UpsertStats

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ndpipe.ops.csv import Dropped

__all__ = [
    "CleanStats",
    "DataError",
    "DedupeStats",
    "NdpipeError",
    "RecordError",
    "Rejected",
    "Skipped",
    "UpsertStats",
    "UsageError",
    "dedupe",
    "escape_csv",
    "filter",
    "head",
    "import_clean",
    "map",
    "read",
    "sample",
    "select",
    "sort",
    "upsert_patch",
    "write_csv",
    "write_json_array",
    "write_ndjson",
]

Source = str | os.PathLike[str] | IO[bytes]
Target = str | os.PathLike[str] | IO[bytes]
ERRORS = ("fail", "skip")
# sort and upsert-patch: the CLI's --buffer-size default, and sort's smallest useful buffer.
DEFAULT_BUFFER_SIZE = "64M"
MINIMUM_SORT_BUFFER = 64 * 1000


class Skipped:
    """What `errors="skip"` passed over. Give one to several stages to add their counts up.

    `lines`: input lines (or CSV rows) that could not be read; `records`: records a stage could
    not process; `where`: the first positions (`users.ndjson:12`, `select: record 7`).
    """

    def __init__(self) -> None:
        self._policies: list[ErrorPolicy] = []

    def _watch(self, policy: ErrorPolicy) -> None:
        self._policies.append(policy)

    @property
    def lines(self) -> int:
        return sum(policy.skipped for policy in self._policies)

    @property
    def records(self) -> int:
        return sum(policy.failed for policy in self._policies)

    @property
    def total(self) -> int:
        return self.lines + self.records

    @property
    def where(self) -> list[str]:
        return [where for policy in self._policies for where in policy.skipped_at]

    def __repr__(self) -> str:
        return f"Skipped(lines={self.lines}, records={self.records}, where={self.where!r})"


# --- shared plumbing --------------------------------------------------------------------------


def _texts(value: Sequence[str] | str, what: str) -> list[str]:
    """A list of strings; one string is a list of one (never its characters)."""
    if isinstance(value, str):
        return [value]
    texts = list(value)
    for text in texts:
        if not isinstance(text, str):
            raise UsageError(f"{what}: expected strings, got {type(text).__name__}")
    return texts


def _choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise UsageError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _policy(name: str, errors: str, skipped: Skipped | None) -> tuple[ErrorPolicy, Position]:
    """The error policy of one stage, with a position that counts the records it receives."""
    _choice(errors, ERRORS, "errors")
    position = Position(name)
    position.unit = "record"
    policy = ErrorPolicy(errors, position)
    if skipped is not None:
        skipped._watch(policy)
    return policy, position


def _counted(records: Iterable[Record], position: Position) -> Records:
    """The stage's input, numbered; errors from upstream are marked so this stage never skips
    them (see ndpipe.io.skipping)."""
    number = 0
    try:
        for record in records:
            number += 1
            position.number = number
            yield record
    except NdpipeError as error:
        if getattr(error, "command", None) is None:
            error.command = "input"  # type: ignore[attr-defined]
        raise


def _label(error: NdpipeError, position: Position) -> None:
    """Name a stage's own error with the stage and the record it was processing."""
    if getattr(error, "command", None) is None:
        error.command = position.name  # type: ignore[attr-defined]
        if isinstance(error, DataError) and error.where is None and position.number:
            error.where = str(position)


def _named(records: Records, position: Position) -> Records:
    """The stage's output; its own errors get its name and the number of the record."""
    try:
        yield from records
    except NdpipeError as error:
        _label(error, position)
        raise
    except RecursionError:
        raise DataError("the record is nested too deeply to process", str(position)) from None


def _stage(
    name: str,
    records: Iterable[Record],
    run: Callable[[Records, ErrorPolicy], Records],
    errors: str = "fail",
    skipped: Skipped | None = None,
) -> Records:
    policy, position = _policy(name, errors, skipped)
    return _named(run(_counted(records, position), policy), position)


# --- reading ----------------------------------------------------------------------------------


def read(
    source: Source,
    *,
    csv_style: str = "auto",
    errors: str = "fail",
    skipped: Skipped | None = None,
) -> Iterator[Record]:
    """Records from a path (`-` is stdin) or a binary stream, as `ndpipe fetch SOURCE` reads.

    NDJSON, JSON arrays (streamed item by item) and CSV, gzip or not, told apart by their
    bytes, never by the name. Numbers are exact (integers of any size stay integers).
    `csv_style` is fetch's --csv-style (auto, auth0, plain). The source is opened and its first
    bytes read now, so a missing file or an unreadable format raises here; a path is closed
    when the records are exhausted.
    """
    from ndpipe.csvio import CSV_STYLES, read_csv

    _choice(csv_style, CSV_STYLES, "csv_style")
    policy, _ = _policy("read", errors, skipped)
    owned = isinstance(source, str | os.PathLike)
    if isinstance(source, str | os.PathLike):
        stream, name = open_input(os.fspath(source))
    else:
        stream = _binary(source, "read")
        label = getattr(source, "name", None)
        name = label if isinstance(label, str) else "input"
    position = Position(name)
    policy.position = position
    try:
        records = read_stream(
            stream, name, policy, position, other=partial(read_csv, style=csv_style)
        )
    except BaseException:
        if owned and stream is not _stdin():
            stream.close()
        raise
    return _closing(records, stream if owned and stream is not _stdin() else None)


def _stdin() -> BinaryIO | None:
    import sys

    return sys.stdin.buffer if sys.stdin is not None else None


def _closing(records: Records, stream: BinaryIO | None) -> Records:
    try:
        yield from records
    finally:
        if stream is not None:
            stream.close()


def _binary(stream: Any, what: str) -> BinaryIO:
    """A binary stream: a text stream with a binary buffer (sys.stdout) gives its buffer."""
    if isinstance(stream, io.TextIOBase):
        buffer = getattr(stream, "buffer", None)
        if buffer is None:
            raise TypeError(f"{what} needs a binary stream (open the file with 'rb' or 'wb')")
        stream.flush()
        return buffer  # type: ignore[no-any-return]
    return stream  # type: ignore[no-any-return]


# --- transforms -------------------------------------------------------------------------------


def select(
    records: Iterable[Record],
    fields: Sequence[str] | str = (),
    *,
    missing: str = "null",
    fields_file: str | os.PathLike[str] | None = None,
    preset: str | None = None,
    errors: str = "fail",
    skipped: Skipped | None = None,
) -> Iterator[Record]:
    """New records holding only the given fields, as `ndpipe select`.

    Each field is `EXPR` or `NAME=EXPR` (JMESPath): `["email", "Name=user_metadata.name ||
    name"]`. Fields come in the CLI's order: `preset` (auth0-default, marketo,
    salesforce-contact, salesforce-lead, salesforce-wizard), `fields_file` (Auth0's export-job
    field list), then `fields`; a field named like a preset field replaces it. `missing` is
    null, omit or empty.
    """
    from ndpipe.ops.select import (
        MISSING_MODES,
        check_fields,
        parse_field,
        read_fields_file,
    )
    from ndpipe.ops.select import select as select_op
    from ndpipe.presets import NAMES, with_preset

    _choice(missing, MISSING_MODES, "missing")
    given = []
    if preset is not None:
        _choice(preset, NAMES, "preset")
    if fields_file is not None:
        given += read_fields_file(os.fspath(fields_file))
    given += [parse_field(text) for text in _texts(fields, "fields")]
    chosen = with_preset(preset, given)
    check_fields(chosen)
    run = partial(select_op, fields=chosen, missing=missing)
    return _stage("select", records, lambda r, p: run(r, policy=p), errors, skipped)


def filter(
    records: Iterable[Record],
    expression: str,
    *,
    errors: str = "fail",
    skipped: Skipped | None = None,
) -> Iterator[Record]:
    """The records for which the JMESPath `expression` is truthy, as `ndpipe filter`.

    false, null, "", [] and {} are false; 0 is true.
    """
    from ndpipe.expr import compile_expression
    from ndpipe.ops.filter import filter as filter_op

    compiled = compile_expression(expression)
    return _stage(
        "filter",
        records,
        lambda r, p: filter_op(r, expression=compiled, policy=p),
        errors,
        skipped,
    )


class MapEdits(TypedDict, total=False):
    """The edits of `map`: each a list of texts (or one text), applied in keyword order."""

    set: Sequence[str] | str
    delete: Sequence[str] | str
    rename: Sequence[str] | str


def map(
    records: Iterable[Record],
    *,
    errors: str = "fail",
    skipped: Skipped | None = None,
    **edits: Unpack[MapEdits],
) -> Iterator[Record]:
    """Edit records in place and yield them, as `ndpipe map`.

    `set=["PATH=EXPR", ...]` sets a dotted path to a JMESPath value, `delete=["PATH", ...]`
    deletes, `rename=["OLD=NEW", ...]` moves. The edits run in the order the keywords are
    given (as the CLI runs its options in order), so `map(r, rename=["email=Email"],
    set=["name=Email"])` renames first. For interleaved kinds (`--set a --del b --set c`),
    chain two calls: each record goes through both in turn. The records are changed in place,
    as in the CLI; pass copies to keep the originals.
    """
    from ndpipe.ops.map import Edit, parse_del, parse_rename, parse_set
    from ndpipe.ops.map import map as map_op

    parsers: dict[str, Callable[[str], Edit]] = {
        "set": parse_set,
        "delete": parse_del,
        "rename": parse_rename,
    }
    chosen: list[Edit] = []
    for kind, texts in edits.items():
        if kind not in parsers:
            raise TypeError(f"map() got an unexpected keyword argument {kind!r}")
        chosen += [parsers[kind](text) for text in _texts(texts, kind)]  # type: ignore[arg-type]
    if not chosen:
        raise UsageError("nothing to do: give set, delete or rename")
    return _stage("map", records, lambda r, p: map_op(r, edits=chosen, policy=p), errors, skipped)


def head(records: Iterable[Record], count: int = 10) -> Iterator[Record]:
    """The first `count` records, as `ndpipe head`; stops pulling from `records` after them."""
    from ndpipe.ops.head import head as head_op

    if count < 0:
        raise UsageError(f"count must be 0 or more; got {count}")
    return head_op(records, count=count)


def sample(
    records: Iterable[Record], count: int = 10, *, seed: int | None = None
) -> Iterator[Record]:
    """A uniform random sample of `count` records in input order, as `ndpipe sample`.

    Reads all of `records` and holds only the chosen ones; the same seed gives the same sample.
    """
    from ndpipe.ops.sample import sample as sample_op

    if count < 0:
        raise UsageError(f"count must be 0 or more; got {count}")
    return sample_op(records, count=count, seed=seed)


def _keys(keys: Sequence[str] | str) -> list[Any]:
    from ndpipe.expr import compile_expression

    texts = _texts(keys, "keys")
    if not texts:
        raise UsageError("give at least one key")
    return [compile_expression(text, "key") for text in texts]


def _size(value: int | str, what: str) -> int:
    from ndpipe.ops.to_json_array import parse_size

    size = parse_size(value) if isinstance(value, str) else value
    if size < 0:
        raise UsageError(f"{what} must be 0 or more; got {value!r}")
    return size


def sort(
    records: Iterable[Record],
    keys: Sequence[str] | str,
    *,
    descending: bool = False,
    buffer_size: int | str = DEFAULT_BUFFER_SIZE,
    temp_dir: str | os.PathLike[str] | None = None,
    errors: str = "fail",
    skipped: Skipped | None = None,
) -> Iterator[Record]:
    """The records ordered by JMESPath `keys`, as `ndpipe sort` (stable, null and missing last).

    Beyond `buffer_size` (bytes, or "64M", "1GiB") sorted runs go to temporary files in
    `temp_dir`, merged at the end and removed.
    """
    from ndpipe.ops.sort import sort as sort_op

    compiled = _keys(keys)
    size = _size(buffer_size, "buffer_size")
    if size < MINIMUM_SORT_BUFFER:  # as the CLI's --buffer-size
        raise UsageError(f"buffer size {buffer_size!r} is too small: at least 64K")
    directory = os.fspath(temp_dir) if temp_dir is not None else None
    run = partial(
        sort_op, keys=compiled, descending=descending, buffer_size=size, temp_dir=directory
    )
    return _stage("sort", records, lambda r, p: run(r, policy=p), errors, skipped)


def dedupe(
    records: Iterable[Record],
    keys: Sequence[str] | str,
    *,
    ignore_case: bool = False,
    stats: DedupeStats | None = None,
    on_duplicate: Callable[[Record], None] | None = None,
    errors: str = "fail",
    skipped: Skipped | None = None,
) -> Iterator[Record]:
    """The first record for each key, as `ndpipe dedupe`; later ones go to `on_duplicate`.

    A record whose key is null or missing is always kept. `stats` (a DedupeStats) counts
    read, kept, duplicates and keyless records as the records go by.
    """
    from ndpipe.ops.dedupe import dedupe as dedupe_op

    compiled = _keys(keys)
    counts = stats if stats is not None else DedupeStats()
    run = partial(
        dedupe_op, keys=compiled, stats=counts, ignore_case=ignore_case, on_duplicate=on_duplicate
    )
    return _stage("dedupe", records, lambda r, p: run(r, policy=p), errors, skipped)


def escape_csv(
    records: Iterable[Record], *, style: str | None = None, unescape: bool = False
) -> Iterator[Record]:
    """Escape string values against CSV formula injection, as `ndpipe escape-csv`.

    `style` is formula (the default), auth0 or none; `unescape=True` removes one leading `'`
    instead. Records are changed in place, as in the CLI.
    """
    from ndpipe.ops.escape_csv import STYLES
    from ndpipe.ops.escape_csv import escape_csv as escape_op

    if unescape and style is not None:
        raise UsageError("unescape undoes escaping; it cannot be combined with style")
    chosen = _choice(style or "formula", STYLES, "style")
    return escape_op(records, style=chosen, undo=unescape)


def import_clean(
    records: Iterable[Record],
    *,
    email_verified: str = "keep",
    drop_user_id: bool = False,
    check: bool = False,
    stats: CleanStats | None = None,
    on_reject: Callable[[Rejected], None] | None = None,
) -> Iterator[Record]:
    """Records Auth0's bulk import accepts, as `ndpipe import-clean`.

    A record that still fails the import schema is not yielded: it goes to `on_reject` (a
    Rejected: its number, the record as read and the problems) and is counted in `stats`.
    `check=True` only checks: every record passes through unchanged.
    """
    from ndpipe.ops.import_clean import EMAIL_VERIFIED_MODES
    from ndpipe.ops.import_clean import import_clean as clean_op

    _choice(email_verified, EMAIL_VERIFIED_MODES, "email_verified")
    return clean_op(
        records,
        stats=stats if stats is not None else CleanStats(),
        on_reject=on_reject if on_reject is not None else _ignore,
        email_verified=email_verified,
        drop_user_id=drop_user_id,
        check_only=check,
    )


def _ignore(rejected: Rejected) -> None:
    """Rejected records are counted in the stats, and not kept."""


class PatchEdits(TypedDict, total=False):
    """The edits of `upsert_patch`: each a list of texts (or one text), in keyword order."""

    set: Sequence[str] | str
    unset: Sequence[str] | str


def upsert_patch(
    records: Iterable[Record],
    *,
    patch: str | os.PathLike[str] | None = None,
    where: str | None = None,
    merge: str = "deep",
    keep_all: bool = False,
    buffer_size: int | str = DEFAULT_BUFFER_SIZE,
    stats: UpsertStats | None = None,
    on_unmatched: Callable[[Record], None] | None = None,
    errors: str = "fail",
    skipped: Skipped | None = None,
    **edits: Unpack[PatchEdits],
) -> Iterator[Record]:
    """Import-ready records for the users the edits change, as `ndpipe upsert-patch`.

    `patch` is a patch file by email (NDJSON or a JSON array, gzip or not), read and checked
    before the first user is; `set=["PATH=JSON", ...]` and `unset=["PATH", ...]` edit every
    user `where` (JMESPath) selects, applied in keyword order after the patches. `stats` (an
    UpsertStats) holds the counts and the users left out once the records are exhausted.
    """
    from ndpipe.expr import compile_expression
    from ndpipe.ops.upsert_patch import (
        MERGE_MODES,
        PathEdit,
        parse_set,
        parse_unset,
        upsert_patch_file,
    )

    _choice(merge, MERGE_MODES, "merge")
    parsers: dict[str, Callable[[str], PathEdit]] = {"set": parse_set, "unset": parse_unset}
    chosen: list[PathEdit] = []
    for kind, texts in edits.items():
        if kind not in parsers:
            raise TypeError(f"upsert_patch() got an unexpected keyword argument {kind!r}")
        chosen += [parsers[kind](text) for text in _texts(texts, kind)]  # type: ignore[arg-type]
    if patch is None and not chosen:
        raise UsageError("nothing to do: give patch, set or unset")
    if where is not None and not chosen:
        raise UsageError("where limits set and unset; to limit the patch, filter the records")
    condition = compile_expression(where, "where") if where is not None else None
    budget = _size(buffer_size, "buffer_size")
    path = os.fspath(patch) if patch is not None else None
    if path is not None and not os.path.isfile(path):
        raise UsageError(f"cannot open {path}: not a file")
    counts = stats if stats is not None else UpsertStats()

    def run(users: Records, policy: ErrorPolicy) -> Records:
        return upsert_patch_file(
            users,
            patch_file=path,
            memory_budget=budget,
            stats=counts,
            edits=chosen,
            where=condition,
            merge=merge,
            keep_all=keep_all,
            on_unmatched=on_unmatched,
            policy=policy,
        )

    return _stage("upsert-patch", records, run, errors, skipped)


# --- writing ----------------------------------------------------------------------------------


class _AtomicOut:
    """A path written as the CLI writes its files: under a temporary name, renamed when done."""

    def __init__(self, path: str) -> None:
        from ndpipe.output import AtomicFile

        self.file = AtomicFile(path, path)

    def write(self, data: bytes | bytearray) -> int:
        self.file.write(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: `commit` flushes and syncs."""


def _write(
    name: str, target: Target, records: Iterable[Record], write: Callable[[Records, Any], Any]
) -> int:
    """Run a writer over `records` to a path (complete or absent) or a binary stream; returns
    the number of records written."""
    position = Position(name)
    position.unit = "record"
    stream = _counted(records, position)
    out = _AtomicOut(os.fspath(target)) if isinstance(target, str | os.PathLike) else None
    try:
        write(stream, out if out is not None else _binary(target, name))
    except NdpipeError as error:
        # The writer's own errors (a csv row that does not fit) come from here, not the stream.
        _label(error, position)
        if out is not None:
            out.file.abort()
        raise
    except BaseException:
        if out is not None:
            out.file.abort()
        raise
    if out is not None:
        out.file.commit()
    return position.number


def write_ndjson(records: Iterable[Record], file: Target) -> int:
    """Write records as NDJSON (compact JSON, numbers exact) to a path or a binary stream.

    A path is written under a temporary name and renamed when complete. Returns the count.
    """
    from ndpipe.io import write_ndjson as write_op

    return _write("write_ndjson", file, records, lambda stream, out: write_op(stream, out))


def write_json_array(records: Iterable[Record], file: Target) -> int:
    """Write records as one JSON array, one record per line, as `ndpipe to-json-array`.

    Streams in constant memory; no records give `[]`. Returns the count.
    """
    from ndpipe.ops.to_json_array import write_json_array as write_op

    return _write("write_json_array", file, records, lambda stream, out: write_op(stream, out))


def write_csv(
    records: Iterable[Record],
    file: Target,
    *,
    columns: Sequence[str] | str | None = None,
    delimiter: str = ",",
    header: bool = True,
    crlf: bool = False,
    bom: bool = False,
    strict: bool = False,
    dropped: Dropped | None = None,
) -> int:
    """Write records as RFC 4180 CSV, as `ndpipe csv`; returns the number of records.

    `columns` (a list, or "a,b,c") sets the header and its order; without it the first
    record's flattened keys do. `delimiter` is one character ("tab" for a tab). Fields that
    have no column are counted in `dropped` (an ndpipe.ops.csv.Dropped), or with `strict` are
    an error. Escape data cells first with `escape_csv`.
    """
    from ndpipe.ops.csv import csv, parse_columns, parse_delimiter, write_lines

    try:
        chosen = parse_columns(_texts(columns, "columns")) if columns is not None else None
        separator = parse_delimiter(delimiter)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if columns is not None and not chosen:
        raise UsageError("columns is empty")

    def write(stream: Records, out: Any) -> int:
        lines = csv(
            stream,
            columns=chosen,
            delimiter=separator,
            header=header,
            strict=strict,
            dropped=dropped,
        )
        return write_lines(lines, out, line_end="\r\n" if crlf else "\n", bom=bom)

    return _write("write_csv", file, records, write)
