from __future__ import annotations

import os
from typing import BinaryIO

import click

from ndpipe.commands import usage, verb
from ndpipe.errors import UsageError
from ndpipe.io import Encoder, Position, Records
from ndpipe.ops.to_json_array import (
    AUTH0_MAX_BYTES,
    FRAME,
    OutputPattern,
    WrittenFile,
    parse_size,
    write_json_array,
    write_json_array_files,
)
from ndpipe.output import Target
from ndpipe.pipeline import Stage, warn

NAME = "to-json-array"


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    size = parse_size(text)
    if size < FRAME + 2:
        raise UsageError(
            f"{size} bytes cannot hold even {{}} in an array; give at least {FRAME + 2}"
        )
    return size


@verb(NAME)
@click.option(
    "--out",
    "pattern",
    metavar="PATTERN",
    callback=usage(lambda text: OutputPattern(text) if text is not None else None),
    help="Write to files instead of stdout. {n} in PATTERN is the file number from 1, "
    "optionally formatted: 'import/users-{n:04d}.json'. Directories are created.",
)
@click.option(
    "--max-bytes",
    metavar="N",
    callback=usage(_size),
    help=f"Start a new file before one would exceed N bytes (brackets, commas and newlines "
    f"included). Auth0's import takes files up to 500 KB: use {AUTH0_MAX_BYTES}. "
    "Also 500KB (x1000) or 488KiB (x1024).",
)
@click.option(
    "--max-records",
    metavar="N",
    type=click.IntRange(min=1),
    help="Start a new file after N records.",
)
def command(
    pattern: OutputPattern | None, max_bytes: int | None, max_records: int | None, on_error: str
) -> Stage:
    """Write records as one JSON array (replaces jq -s), or as numbered files.

    Streams in constant memory: one record per line between the brackets, []
    for no input. With --out, writes a file instead of stdout; with
    --max-bytes or --max-records too, writes numbered files that each hold a
    valid JSON array within the limits, records in input order (no file at all
    for no records). A record too large for a file on its own is an error
    naming its input line (the files before it are complete). Written files and
    their record counts are reported on stderr.

    \b
    Examples:
      ndpipe to-json-array < fixtures/users.ndjson > users.json
      ndpipe import-clean < fixtures/users.ndjson \\
        | ndpipe to-json-array --max-bytes 500000 --out 'import/users-{n:04d}.json'
    """
    splitting = max_bytes is not None or max_records is not None
    if splitting and pattern is None:
        raise click.UsageError(
            "--max-bytes and --max-records split the output into files: give --out PATTERN"
        )
    if splitting and pattern is not None and not pattern.numbered:
        raise click.UsageError(
            "--out PATTERN needs {n} to number the files, e.g. 'import/users-{n:04d}.json'"
        )
    written = {"files": 0, "records": 0}

    def report(file: WrittenFile) -> None:
        written["records"] += file.records
        noun = "record" if file.records == 1 else "records"
        warn(NAME, f"wrote {file.path}: {file.records} {noun}, {file.size} bytes")

    def sink(records: Records, out: BinaryIO, encode: Encoder, position: Position) -> None:
        if pattern is None:
            write_json_array(records, out, encode)
            return
        written["files"] = write_json_array_files(
            records,
            encode=encode,
            pattern=pattern,
            on_file=report,
            max_bytes=max_bytes,
            max_records=max_records,
        )

    def finish() -> int | None:
        if pattern is None:
            return None
        files = written["files"]
        if files == 0:
            warn(NAME, "no records, so no files were written")
        elif files > 1:
            warn(NAME, f"wrote {written['records']} records in {files} files")
        following = pattern.path(files + 1)
        if pattern.numbered and os.path.exists(following):
            warn(NAME, f"{following} is left from an earlier run; this run did not write it")
        return None

    outputs: list[tuple[str, Target]] = []
    if pattern is not None:
        outputs.append(("--out", pattern.path if pattern.numbered else pattern.path(1)))
    return Stage(NAME, sink=sink, finish=finish, on_error=on_error, outputs=outputs)
