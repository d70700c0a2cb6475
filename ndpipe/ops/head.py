"""head: the first N records; stops reading as soon as it has them."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from ndpipe.io import Record, Records


def head(records: Iterable[Record], *, count: int = 10) -> Records:
    """Yield the first `count` records and stop pulling from upstream."""
    yield from islice(records, count)
