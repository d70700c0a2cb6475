from __future__ import annotations

from collections.abc import Iterable

import click

from ndpipe.commands import key_option, spill_options, verb
from ndpipe.expr import Expression
from ndpipe.io import ErrorPolicy, Position, Record, Records
from ndpipe.ops.select import key_names, watching
from ndpipe.ops.sort import SortProgress, sort
from ndpipe.pipeline import Stage, plural, warn
from ndpipe.progress import size

NAME = "sort"


@verb(NAME)
@key_option("JMESPath sort key; repeat for secondary keys (-k app_metadata.plan -k created_at).")
@click.option(
    "-r",
    "--desc",
    "descending",
    is_flag=True,
    help="Descending order (for every key); null and missing still sort last.",
)
@spill_options("input")
@click.option(
    "--quiet",
    is_flag=True,
    help="Do not say on stderr when the sort spills to disk and merges.",
)
def command(
    keys: list[Expression],
    descending: bool,
    buffer_size: int,
    temp_dir: str | None,
    quiet: bool,
    on_error: str,
) -> Stage:
    """Sort records by JMESPath keys, in bounded memory (an external merge sort).

    Stable: records with equal keys keep their input order. Ascending order
    of values: false, true, numbers, strings (by code point), arrays, objects,
    then null and missing last. --desc reverses everything except null and
    missing, which stay last (SQL's NULLS LAST). Input that fits in
    --buffer-size is sorted in memory; beyond it, sorted runs go to
    temporary files and are merged. A key that is missing or null in every
    record is named on stderr at the end, with the likely intended path.
    When it spills to disk, and when it merges, stderr says so in one line
    each (--quiet: not).

    \b
    Examples:
      ndpipe sort -k created_at < fixtures/users.ndjson
      ndpipe sort -k logins_count --desc < fixtures/users.ndjson | ndpipe head -n 3
      ndpipe sort -k app_metadata.plan -k email < fixtures/users.ndjson
    """
    named, unset = key_names(keys)

    def tell(progress: SortProgress) -> None:
        if progress.event == "spill":
            warn(NAME, f"the input outgrew the {size(progress.buffer_size)} buffer "
                       f"(--buffer-size); writing sorted runs to {progress.directory}")  # fmt: skip
        else:
            warn(NAME, f"merging {plural(progress.runs, 'sorted run')}")

    def transform(
        records: Iterable[Record], policy: ErrorPolicy, position: Position | None = None
    ) -> Records:
        return sort(
            watching(records, named, unset),
            keys=keys,
            descending=descending,
            buffer_size=buffer_size,
            temp_dir=temp_dir,
            policy=policy,
            progress=None if quiet else tell,
            position=position,
        )

    def finish() -> None:
        for message in unset.messages("key"):
            warn(NAME, message)

    return Stage(
        NAME,
        transform=transform,
        finish=finish,
        on_error=on_error,
        takes_policy=True,
        # Given the reader's position, sort gives back each record with its input line.
        takes_position=True,
        preserves=True,
        reads=[*keys, unset],
    )
