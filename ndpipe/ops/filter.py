"""filter: keep the records for which a JMESPath expression is truthy."""

from __future__ import annotations

from collections.abc import Iterable

from ndpipe.expr import EvaluationError, Expression, truthy
from ndpipe.io import Record, Records


def filter(records: Iterable[Record], *, expression: Expression) -> Records:
    """Yield the records for which `expression` is truthy (JMESPath truthiness: 0 is true)."""
    search = expression.search
    try:
        for record in records:
            value = search(record)
            if value is True or (value is not None and value is not False and truthy(value)):
                yield record
    except EvaluationError as error:
        raise expression.failed(error) from None
