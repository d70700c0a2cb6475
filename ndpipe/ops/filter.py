"""filter: keep the records for which a JMESPath expression is truthy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

from ndpipe.expr import EvaluationError, Expression, truthy
from ndpipe.io import ErrorPolicy, Record, Records, skipping


def filter(
    records: Iterable[Record], *, expression: Expression, policy: ErrorPolicy | None = None
) -> Records:
    """Yield the records for which `expression` is truthy (JMESPath truthiness: 0 is true).

    A record on which the expression fails is a RecordError, which `policy` may skip.
    """
    return skipping(records, policy, partial(_filter, expression=expression))


def _filter(records: Iterator[Record], *, expression: Expression) -> Records:
    search = expression.search
    try:
        for record in records:
            value = search(record)
            if value is True or (value is not None and value is not False and truthy(value)):
                yield record
    except EvaluationError as error:
        raise expression.failed(error) from None
