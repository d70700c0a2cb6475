from __future__ import annotations

from collections.abc import Iterable

import click

from ndpipe.commands import key_option, verb
from ndpipe.expr import Expression
from ndpipe.io import ErrorPolicy, Record, Records, SideFile
from ndpipe.ops.dedupe import DedupeStats, dedupe
from ndpipe.ops.select import key_names, watching
from ndpipe.pipeline import Stage, warn

NAME = "dedupe"


@verb(NAME)
@key_option("JMESPath key; repeat for a compound key (-k email -k connection).")
@click.option(
    "-i",
    "--ignore-case",
    is_flag=True,
    help="Compare the key's strings lower-cased (as Auth0 stores emails).",
)
@click.option(
    "--dups",
    type=click.Path(dir_okay=False),
    help="Write the dropped duplicates to this file as NDJSON.",
)
def command(keys: list[Expression], ignore_case: bool, dups: str | None, on_error: str) -> Stage:
    """Keep the first record for each key; drop later ones and count them.

    Memory grows only with the number of distinct keys: a 16-byte digest of
    each, 80 to 105 bytes per key in all. A record whose key is null or missing
    is never a duplicate: it is kept, and counted on stderr with the
    duplicates. A key that is missing or null in every record is named, with
    the likely intended path.

    \b
    Examples:
      ndpipe dedupe -k email --ignore-case --dups dups.ndjson < fixtures/users.ndjson
      ndpipe dedupe -k given_name -k family_name < fixtures/users.ndjson
    """
    stats = DedupeStats()
    named, unset = key_names(keys)

    def transform(records: Iterable[Record], policy: ErrorPolicy) -> Records:
        handle = SideFile(dups, "--dups") if dups is not None else None
        yield from dedupe(
            watching(records, named, unset),
            keys=keys,
            stats=stats,
            ignore_case=ignore_case,
            on_duplicate=handle.write if handle is not None else None,
            policy=policy,
        )

    def finish() -> int | None:
        noun = "duplicate" if stats.duplicates == 1 else "duplicates"
        where = f" (written to {dups})" if dups and stats.duplicates else ""
        keyless = f"; {stats.keyless} without a key, kept" if stats.keyless else ""
        warn(
            NAME,
            f"{stats.read} read, {stats.kept} kept, {stats.duplicates} {noun} dropped"
            f"{where}{keyless}",
        )
        for message in unset.messages("key"):
            warn(NAME, message)
        return None

    return Stage(
        NAME,
        transform=transform,
        finish=finish,
        on_error=on_error,
        preserves=True,
        reads=None if dups else [*keys, unset],  # --dups writes whole records
        takes_policy=True,
        outputs=[("--dups", dups)] if dups else [],
    )
