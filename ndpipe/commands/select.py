from __future__ import annotations

from functools import partial

import click

from ndpipe.commands import usage, verb
from ndpipe.errors import NdpipeError
from ndpipe.ops.select import (
    MISSING_MODES,
    PRESETS,
    Field,
    auth0_fields,
    check_fields,
    parse_field,
    read_fields_file,
    select,
)
from ndpipe.pipeline import Stage


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
    type=click.Choice(sorted(PRESETS)),
    help="auth0-default: the User Import/Export extension's 11 default fields and column names.",
)
@click.option(
    "--missing",
    type=click.Choice(MISSING_MODES),
    default="null",
    show_default=True,
    help="A missing or null value: write null, omit the key, or write an empty string.",
)
def command(
    fields: list[Field], fields_file: list[Field], preset: str | None, missing: str, on_error: str
) -> Stage:
    """Keep and rename fields: each FIELD is EXPR or NAME=EXPR (JMESPath).

    NAME=EXPR writes the flat key NAME. A bare path of plain names keeps its
    nesting (user_metadata.name gives {"user_metadata": {"name": ...}}); any other
    bare expression is keyed by its own text. Fields come in this order: --preset,
    --fields-file, then the arguments.

    \b
    Examples:
      ndpipe select email 'Name=user_metadata.name || name' < fixtures/users.ndjson
      ndpipe select --preset auth0-default < fixtures/users.ndjson | ndpipe csv
    """
    chosen = (auth0_fields(PRESETS[preset], preset) if preset else []) + fields_file + fields
    try:
        check_fields(chosen)
    except NdpipeError as error:
        raise click.UsageError(str(error)) from None
    return Stage(
        "select",
        transform=partial(select, fields=chosen, missing=missing),
        on_error=on_error,
        takes_policy=True,
    )
