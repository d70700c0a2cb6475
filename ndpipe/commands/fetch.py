from __future__ import annotations

import click

from ndpipe.commands import verb
from ndpipe.io import ErrorPolicy, Position, Records, read_records
from ndpipe.pipeline import Stage


@verb("fetch")
@click.argument("source", default="-", metavar="[SOURCE]")
def command(source: str, on_error: str) -> Stage:
    """Read users and write them as NDJSON.

    SOURCE is a file or - (stdin, the default). NDJSON and JSON arrays are
    recognised from their first byte and gzip from its magic bytes, never from
    the file name, so Auth0's export.json.gz can be read as it is.

    \b
    Examples:
      ndpipe fetch fixtures/users.json.gz | ndpipe head -n 2
      ndpipe fetch import/users-0001.json > users.ndjson
    """

    def read(policy: ErrorPolicy, position: Position) -> Records:
        return read_records(source, policy, position)

    return Stage("fetch", source=read, on_error=on_error)
