from __future__ import annotations

from functools import partial

import click

from ndpipe.commands import verb
from ndpipe.ops.escape_csv import STYLES, escape_csv
from ndpipe.pipeline import Stage


@verb("escape-csv")
@click.option(
    "--style",
    type=click.Choice(STYLES),
    default="formula",
    show_default=True,
    help="formula: prefix ' to strings starting with = + - @ tab or CR (OWASP). "
    "auth0: Auth0's export escaping, ' before every string except ISO 8601 date-times. "
    "none: change nothing.",
)
@click.option(
    "--unescape",
    is_flag=True,
    help="Remove exactly one leading ' from each string (data from Auth0's CSV export).",
)
def command(style: str, unescape: bool, on_error: str) -> Stage:
    """Escape string values against CSV formula injection, or undo Auth0's escaping.

    Strings in nested objects are escaped too (csv flattens them into cells);
    arrays are left alone (csv writes them as JSON, which starts with [ and is
    safe). csv quotes every cell that starts with ', so `escape-csv --style
    auth0 | csv` writes Auth0's exact cells: "'jane@example.com", while true,
    19 and 2017-11-02T23:34:03.803Z stay bare. A CRM (Salesforce, Marketo) stores a
    ' as data: the default touches only strings a spreadsheet would run as
    formulas; never use --style auth0 for a CRM.

    \b
    Examples:
      ndpipe escape-csv < fixtures/users.ndjson | ndpipe csv
      ndpipe select email name created_at < fixtures/users.ndjson | ndpipe escape-csv --style auth0
      ndpipe fetch fixtures/csv/auth0-export.csv --csv-style plain | ndpipe escape-csv --unescape
    """
    if unescape:
        source = click.get_current_context().get_parameter_source("style")
        if source is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--unescape undoes escaping; it cannot be combined with --style")
    return Stage(
        "escape-csv", transform=partial(escape_csv, style=style, undo=unescape), on_error=on_error
    )
