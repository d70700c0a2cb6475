from __future__ import annotations

from functools import partial

import click

from ndpipe.commands import verb
from ndpipe.ops.sample import sample
from ndpipe.pipeline import Stage

NAME = "sample"


@verb(NAME)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many records to keep.",
)
@click.option(
    "--seed",
    type=int,
    help="Random seed: the same seed and input give the same sample (default: a fresh one).",
)
def command(count: int, seed: int | None, on_error: str) -> Stage:
    """A uniform random sample of N records, in constant memory (reservoir sampling).

    Reads all of its input; every set of N records is equally likely. The
    chosen records come out in their input order. Memory holds the N chosen
    records, whatever the input size. Fewer than N records in: all of them
    come out.

    \b
    Examples:
      ndpipe sample -n 5 --seed 42 < fixtures/users.ndjson
      ndpipe fetch fixtures/users.json.gz | ndpipe sample -n 3 | ndpipe select email
    """
    return Stage(
        NAME,
        transform=partial(sample, count=count, seed=seed),
        on_error=on_error,
        reads=[],
        # Given the reader's position, sample gives back each record with its input line.
        takes_position=True,
        preserves=True,
    )
