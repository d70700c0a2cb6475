from __future__ import annotations

from functools import partial

import click

from ndpipe.commands import verb
from ndpipe.ops.head import head
from ndpipe.pipeline import Stage


@verb("head")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many records (10 is Auth0's 'Export as Sample').",
)
def command(count: int, on_error: str) -> Stage:
    """Pass the first N records and stop reading.

    \b
    Example:
      ndpipe fetch fixtures/users.json.gz | ndpipe head -n 3
    """
    return Stage(
        "head", transform=partial(head, count=count), on_error=on_error, preserves=True, reads=[]
    )
