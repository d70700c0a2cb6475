"""head: the first N records; stops reading as soon as it has them."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from itertools import islice

from ndpipe.io import Record, Records


def head(records: Iterable[Record], *, count: int = 10) -> Records:
    """Yield the first `count` records and stop pulling from upstream."""
    # No input has more records than sys.maxsize, and islice takes no larger count.
    yield from islice(records, min(count, sys.maxsize))
