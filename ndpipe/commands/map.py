from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import click

from ndpipe.commands import OrderedOptions, usage, verb
from ndpipe.ops.map import Edit, map, parse_del, parse_rename, parse_set
from ndpipe.pipeline import Stage


def _each(parse: Callable[[str], Edit]) -> Callable[..., Any]:
    return usage(lambda texts: [parse(text) for text in texts])


@verb("map", cls=OrderedOptions)
@click.option(
    "--set",
    "sets",
    multiple=True,
    callback=_each(parse_set),
    metavar="PATH=EXPR",
    help="Set PATH (dotted; objects are created) to the JMESPath EXPR's value.",
)
@click.option(
    "--del",
    "deletes",
    multiple=True,
    callback=_each(parse_del),
    metavar="PATH",
    help="Delete PATH if present.",
)
@click.option(
    "--rename",
    "renames",
    multiple=True,
    callback=_each(parse_rename),
    metavar="OLD=NEW",
    help="Move OLD to NEW if OLD is present.",
)
def command(sets: list[Edit], deletes: list[Edit], renames: list[Edit], on_error: str) -> Stage:
    """Edit records in place, keeping all other fields; edits apply in the order given.

    \b
    Examples:
      ndpipe map --set 'user_metadata.source=`"auth0"`' --del identities < fixtures/users.ndjson
      ndpipe map --rename 'Email=email' --set 'name=user_metadata.name || name' \\
        < fixtures/users.ndjson
    """
    queues = {"sets": iter(sets), "deletes": iter(deletes), "renames": iter(renames)}
    order = click.get_current_context().meta.get("option_order", [])
    edits = [next(queues[name]) for name in order if name in queues]
    if not edits:
        raise click.UsageError("nothing to do: give --set, --del or --rename")
    return Stage("map", transform=partial(map, edits=edits), on_error=on_error, takes_policy=True)
