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
    help="formula: prefix ' to strings a spreadsheet could run as formulas (the rule above; "
    "OWASP). auth0: Auth0's export escaping, ' before every string except ISO 8601 "
    "date-times. none: change nothing.",
)
@click.option(
    "--unescape",
    is_flag=True,
    help="Remove exactly one leading ' from each string (data from Auth0's CSV export).",
)
def command(style: str, unescape: bool, on_error: str) -> Stage:
    """Escape string values against CSV formula injection, or undo Auth0's escaping.

    \b
    The formula rule (the default) puts a ' before a string when:
      - it starts with a tab, a CR or a NUL; or
      - its first visible character is = + - or @, looking past leading
        white space, control characters and invisible ones (BOM U+FEFF,
        zero-width space U+200B, joiners, direction marks), which
        spreadsheets may strip;
      - unless from that sign on it is entirely a number: optional sign,
        digits with an optional decimal point, optional exponent.
    So =1, -2+3, +1+cmd|..., +1-555-0100, @SUM(A1) and " =1" are escaped,
    while an E.164 phone number (+14155550100) and -12.5 are left as they
    are: no formula can hide in a number, and a CRM (Salesforce, Marketo)
    stores a ' as data. Never use --style auth0 for a CRM.

    Strings in nested objects are escaped too (csv flattens them into cells);
    arrays are left alone (csv writes them as JSON, which starts with [ and is
    safe). Keys are not changed: csv applies the formula rule to the header
    itself. csv quotes every cell that starts with ', so `escape-csv --style
    auth0 | csv` writes Auth0's exact cells: "'jane@example.com", while true,
    19 and 2017-11-02T23:34:03.803Z stay bare.

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
        "escape-csv",
        transform=partial(escape_csv, style=style, undo=unescape),
        on_error=on_error,
        # csv right after does the default style itself, column-wise (ndpipe.ops.csv).
        offers="formula-escape" if style == "formula" and not unescape else None,
    )
