from __future__ import annotations

from functools import partial

import click

from ndpipe.commands import usage, verb
from ndpipe.expr import Expression, compile_expression
from ndpipe.ops.filter import filter
from ndpipe.pipeline import Stage


@verb("filter")
@click.argument("expression", callback=usage(compile_expression))
def command(expression: Expression, on_error: str) -> Stage:
    """Keep records for which the JMESPath EXPRESSION is truthy.

    false, null, "", [] and {} are false; 0 is true. Numbers in comparisons are
    literals in backticks.

    \b
    Examples:
      ndpipe filter 'email_verified' < fixtures/users.ndjson
      ndpipe filter 'logins_count > `10` && app_metadata.plan == `"premium"`' \\
        < fixtures/users.ndjson
    """
    return Stage(
        "filter",
        transform=partial(filter, expression=expression),
        on_error=on_error,
        takes_policy=True,
        preserves=True,
        reads=[expression],
    )
