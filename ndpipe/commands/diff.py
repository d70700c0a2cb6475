from __future__ import annotations

from collections.abc import Callable

import click

from ndpipe.commands import key_option, spill_options, usage, verb
from ndpipe.errors import UsageError
from ndpipe.expr import Expression
from ndpipe.io import ErrorPolicy, Position, Records, read_records
from ndpipe.ops.diff import OPS, DiffStats, diff, parse_fields
from ndpipe.pipeline import Stage, warn

NAME = "diff"


def parse_only(text: str | None) -> list[str]:
    if text is None:
        return list(OPS)
    chosen = [item.strip() for item in text.split(",")]
    for item in chosen:
        if item not in OPS:
            raise UsageError(f"{item!r} is not one of {', '.join(OPS)}")
    return chosen


def parse_field_list(text: str | None) -> list[list[str]] | None:
    if text is None:
        return None
    try:
        return parse_fields(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


@verb(NAME)
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@key_option("JMESPath key; repeat for a compound key (-k connection -k email).")
@click.option(
    "--only",
    metavar="OPS",
    callback=usage(parse_only),
    help="Write only these kinds of difference, comma-separated: added, removed, changed.",
)
@click.option(
    "--fields",
    metavar="PATHS",
    callback=usage(parse_field_list),
    help="Compare only these top-level fields or dotted paths, comma-separated "
    "(email,user_metadata.plan): a record whose chosen fields are equal is unchanged.",
)
@spill_options("records of both inputs")
def command(
    old: str,
    new: str,
    keys: list[Expression],
    only: list[str],
    fields: list[list[str]] | None,
    buffer_size: int,
    temp_dir: str | None,
    on_error: str,
) -> Stage:
    """Compare two exports by key: one line per added, removed or changed record.

    OLD and NEW are files (NDJSON or JSON arrays, gzip or not; - is stdin).
    Both are sorted by key in bounded memory, as sort does, then merged; the
    output is in key order: {"op": "added"|"removed", "key": [...], "record":
    ...}, or for "changed" also "old" and "fields" (the changed paths). A key
    that is null or missing, or appears twice in one input, is an error. A
    summary goes to stderr.

    \b
    Examples:
      ndpipe diff fixtures/users.ndjson fixtures/users.json.gz -k user_id
      ndpipe diff old.ndjson new.ndjson -k user_id --only added,changed --fields email
      ndpipe diff old.json.gz new.json.gz -k connection -k email then select record.email
    """
    if old == "-" and new == "-":
        raise click.BadParameter("OLD and NEW cannot both be stdin", param_hint="NEW")
    stats = DiffStats()

    def source(policy: ErrorPolicy, position: Position) -> Records:
        def opener(path: str) -> Callable[[Position], Records]:
            return lambda at: read_records(path, policy, at)

        yield from diff(
            opener(old),
            opener(new),
            keys=keys,
            stats=stats,
            only=only,
            fields=fields,
            buffer_size=buffer_size,
            temp_dir=temp_dir,
            policy=policy,
            position=position,
        )

    def finish() -> int | None:
        warn(
            NAME,
            f"{stats.added} added, {stats.removed} removed, {stats.changed} changed, "
            f"{stats.unchanged} unchanged",
        )
        return None

    return Stage(NAME, source=source, finish=finish, on_error=on_error, inputs=[old, new])
