"""head: the first N records; stops reading as soon as it has them."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from itertools import islice

from ndpipe.io import Record, Records


def head(records: Iterable[Record], *, count: int = 10) -> Records:
    """The first `count` records, as received (so the writer copies their input lines); stops
    pulling from upstream, so nothing more is read or decoded."""
    # No input has more records than sys.maxsize, and islice takes no larger count. islice
    # itself, not a generator around it: one step less per record.
    return islice(records, min(count, sys.maxsize))
