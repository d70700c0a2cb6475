from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, BinaryIO

import click

from ndpipe.commands import usage, verb
from ndpipe.errors import EXIT_DATA, EXIT_OK, UsageError
from ndpipe.io import Encoder, Position, Records
from ndpipe.ops.csv import Dropped, csv_batches, parse_columns, parse_delimiter, write_batches
from ndpipe.pipeline import Stage, warn


def _usage_error(parse: Callable[[Any], Any]) -> Callable[..., Any]:
    """A click callback: the parser's ValueError becomes a usage error (exit 2)."""

    def checked(value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as error:
            raise UsageError(str(error)) from None

    return usage(checked)


@verb("csv")
@click.option(
    "--columns",
    multiple=True,
    callback=_usage_error(parse_columns),
    metavar="A,B,...",
    help="The columns, in order (comma-separated, repeatable). Default: the first record's "
    "keys. Dotted names reach into objects (user_metadata.name).",
)
@click.option(
    "-d",
    "--delimiter",
    default=",",
    show_default=True,
    callback=_usage_error(parse_delimiter),
    help="Any single character; \\t or tab for a tab (Marketo: , tab ;).",
)
@click.option("--tsv", is_flag=True, help="Tab-separated: the same as --delimiter tab.")
@click.option("--no-header", is_flag=True, help="Do not write the header line.")
@click.option("--crlf", is_flag=True, help="End lines with CRLF (default LF).")
@click.option("--bom", is_flag=True, help="Start with a UTF-8 byte order mark (for Excel).")
@click.option(
    "--strict",
    is_flag=True,
    help="A record with fields that are not in the header is an error (exit 1), and so, "
    "after the run, is a --columns column that is missing or null in every record; "
    "both are otherwise warnings at the end.",
)
def command(
    columns: list[str] | None,
    delimiter: str,
    tsv: bool,
    no_header: bool,
    crlf: bool,
    bom: bool,
    strict: bool,
    on_error: str,
) -> Stage:
    """Write records as CSV (RFC 4180); this ends a pipeline.

    The header is --columns, or else the first record's keys. Nested objects
    become dotted columns (user_metadata.name); arrays, and objects whose own
    name is a column, are written as JSON; booleans are true/false; null and
    missing fields are empty cells. Numbers are written exactly, whatever
    their size. A cell is quoted when it holds the delimiter, a double quote,
    CR or LF, or starts with ' (escape-csv's mark).

    The header is protected by csv itself, with escape-csv's default formula
    rule: a title a spreadsheet could run (=HYPERLINK(...), @x, " +1+1")
    is written with a leading ' (and so is one that already starts with '
    before such text, so `fetch --csv-style auth0` can undo it exactly).
    Data cells are written as they come: escape them with escape-csv.

    Fields that are not in a first-record header are not written: a warning at
    the end counts the records and names the fields (--strict stops instead).
    With --columns, other fields are left out on purpose, without a warning;
    a named column that is missing or null in every record is reported, with
    the likely intended one (--strict: exit 1 after the run).

    \b
    Examples:
      ndpipe select email 'First Name=given_name' < fixtures/users.ndjson | ndpipe csv
      ndpipe select email firstName=given_name lastName=family_name < fixtures/users.ndjson \\
        | ndpipe escape-csv | ndpipe csv --columns email,firstName,lastName --delimiter ';'
      ndpipe csv --columns email,user_metadata.country --bom --crlf < fixtures/users.ndjson
    """
    if tsv:
        if click.get_current_context().get_parameter_source("delimiter") is not (
            click.core.ParameterSource.DEFAULT
        ):
            raise click.UsageError("--tsv sets the delimiter; give --tsv or --delimiter, not both")
        delimiter = "\t"
    dropped = Dropped()
    lines = partial(
        csv_batches, columns=columns, delimiter=delimiter, header=not no_header, strict=strict,
        dropped=dropped,
    )  # fmt: skip

    # In a chain `escape-csv then csv`, csv escapes the cells itself, column-wise.
    escape = False

    def absorbs(work: str) -> bool:
        nonlocal escape
        escape = work == "formula-escape"
        return escape

    def sink(records: Records, out: BinaryIO, encode: Encoder, position: Position) -> None:
        batches = lines(records, position=position, escape=escape)
        write_batches(batches, out, line_end="\r\n" if crlf else "\n", bom=bom)

    def finish() -> int:
        if dropped.records and columns is None:
            noun = "record has" if dropped.records == 1 else "records have"
            warn(
                "csv",
                f"{dropped.records} {noun} fields that are not in the header (taken from the "
                f"first record), not written: {dropped.listed()}; "
                "name all the columns with --columns",
            )
        unseen = dropped.unseen_message()
        if unseen is not None:
            warn("csv", unseen + (" (--strict)" if strict else ""))
            if strict:
                return EXIT_DATA
        return EXIT_OK

    return Stage("csv", sink=sink, finish=finish, on_error=on_error, absorbs=absorbs)
