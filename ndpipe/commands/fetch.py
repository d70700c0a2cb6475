from __future__ import annotations

from functools import partial

import click

from ndpipe.commands import verb
from ndpipe.csvio import CSV_STYLES, read_csv
from ndpipe.io import ErrorPolicy, Position, Records, read_records
from ndpipe.pipeline import Stage


@verb("fetch")
@click.argument("source", default="-", metavar="[SOURCE]")
@click.option(
    "--csv-style",
    type=click.Choice(CSV_STYLES),
    default="auto",
    show_default=True,
    help="How to read CSV input. auth0 (Auth0's export escaping): 'x is the string x, bare "
    "true/false and numbers are typed, empty is null. plain: every cell a string (no type "
    "guessing), empty is null. auto: auth0 if the first 100 rows have '-prefixed cells and "
    "no other bare strings (dates aside), else plain.",
)
def command(source: str, csv_style: str, on_error: str) -> Stage:
    """Read users and write them as NDJSON.

    SOURCE is a file or - (stdin, the default). NDJSON and JSON arrays are
    recognised from their first byte and gzip from its magic bytes, never from
    the file name, so Auth0's export.json.gz can be read as it is. Anything else
    is read as CSV (RFC 4180, gzip or not), one record per row keyed by the header.

    \b
    Examples:
      ndpipe fetch fixtures/users.json.gz | ndpipe head -n 2
      ndpipe fetch import/users-0001.json > users.ndjson
      ndpipe fetch fixtures/csv/auth0-export.csv.gz | ndpipe head -n 2
    """

    def read(policy: ErrorPolicy, position: Position) -> Records:
        return read_records(source, policy, position, other=partial(read_csv, style=csv_style))

    return Stage("fetch", source=read, on_error=on_error)
