from __future__ import annotations

from functools import partial

import click

from ndpipe.commands import usage, verb
from ndpipe.errors import EXIT_DATA, NdpipeError
from ndpipe.ops.select import (
    MISSING_MODES,
    Field,
    check_fields,
    parse_field,
    read_fields_file,
    select,
    unset_fields,
)
from ndpipe.pipeline import Stage, warn
from ndpipe.presets import HELP as PRESET_HELP
from ndpipe.presets import NAMES as PRESET_NAMES
from ndpipe.presets import with_preset


@verb("select")
@click.argument("fields", nargs=-1, callback=usage(lambda texts: [parse_field(t) for t in texts]))
@click.option(
    "--fields-file",
    type=click.Path(dir_okay=False),
    callback=usage(lambda path: read_fields_file(path) if path else []),
    help='Auth0 export-job field list: [{"name": "identities[0].connection", '
    '"export_as": "Connection"}, ...]',
)
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    help=PRESET_HELP,
)
@click.option(
    "--missing",
    type=click.Choice(MISSING_MODES),
    default="null",
    show_default=True,
    help="A missing or null value: write null, omit the key, or write an empty string.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="A field that is missing or null in every record is an error (exit 1) after the "
    "run, instead of a warning.",
)
def command(
    fields: list[Field],
    fields_file: list[Field],
    preset: str | None,
    missing: str,
    strict: bool,
    on_error: str,
) -> Stage:
    """Keep and rename fields: each FIELD is EXPR or NAME=EXPR (JMESPath).

    NAME=EXPR writes the flat key NAME. A bare path of plain names keeps its
    nesting (user_metadata.name gives {"user_metadata": {"name": ...}}); any other
    bare expression is keyed by its own text. Fields come in this order: --preset,
    --fields-file, then the arguments.

    As in the User Import/Export extension, a path that starts with user.
    (user.email) reads the record itself when it has no top-level "user" field.
    A field that is missing or null in every record is named on stderr at the
    end, with the likely intended path (--strict: exit 1).

    \b
    Examples:
      ndpipe select email 'Name=user_metadata.name || name' < fixtures/users.ndjson
      ndpipe select 'Name=user.user_metadata.name || user.name' < fixtures/users.ndjson
      ndpipe select --preset auth0-default < fixtures/users.ndjson | ndpipe csv
    """
    chosen = with_preset(preset, fields_file + fields)
    try:
        check_fields(chosen)
    except NdpipeError as error:
        raise click.UsageError(str(error)) from None
    unset = unset_fields(chosen)

    def finish() -> int | None:
        for message in unset.messages("field"):
            warn("select", message + (" (--strict)" if strict else ""))
        return EXIT_DATA if strict and unset.pending and unset.records else None

    return Stage(
        "select",
        transform=partial(select, fields=chosen, missing=missing, unset=unset),
        finish=finish,
        on_error=on_error,
        takes_policy=True,
        builds=True,
        reads=[*(field.expression for field in chosen), unset],
    )
