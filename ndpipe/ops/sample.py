"""sample: a uniform random sample of N records, in constant memory (reservoir sampling).

Algorithm L (Li, "Reservoir-sampling algorithms of time complexity O(n(1 + log(N/n)))", ACM
TOMS 1994): after the first N records it draws how many records to skip before the next
replacement, so it needs a few random numbers per replacement rather than one per record. Every
subset of N records is equally likely. The chosen records are written in their input order.

The reservoir holds the chosen records as JSON lines: their input lines when the records come
straight from the reader (every stage before passes them on untouched), given back as sort gives
them back (the writer copies each line, errors name it), else the records serialised (orjson).
So memory is N records as JSON plus a small constant. The same seed and the same input give the
same sample (random.Random, a Mersenne Twister, which is stable across versions).
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterable
from itertools import islice

from ndpipe import codec
from ndpipe.io import Position, Record, Records
from ndpipe.ops.sort import RETAINED_FIELDS, Entry, encoded, give_back, line_of, retained


def _open_unit(rng: random.Random) -> float:
    """A uniform number in (0, 1): random() can return 0.0, whose log is undefined."""
    while True:
        value = rng.random()
        if value > 0.0:
            return value


def sample(
    records: Iterable[Record],
    *,
    count: int,
    seed: int | None = None,
    position: Position | None = None,
) -> Records:
    """Yield `count` records chosen uniformly at random (all of them if fewer), in input order.

    `position` is the reader's, given only when every stage before passes records on untouched:
    the sample then keeps input lines and gives them back (see the module docstring).
    """
    if count <= 0:
        return
    # No input has more records than this, and islice takes no larger count.
    count = min(count, sys.maxsize)
    rng = random.Random(seed)
    stream = iter(records)

    def held(index: int, record: Record) -> Entry:
        """A chosen record as the reservoir holds it: (its index, its input position, its
        line, the record itself when it is small, see ndpipe.ops.sort.retained)."""
        if position is None:
            return index, 0, encoded(record), None
        line = line_of(record, position)
        kept = len(record) <= RETAINED_FIELDS and retained(record, line) >= 0
        return index, position.number, line, record if kept else None

    reservoir = [held(index, record) for index, record in enumerate(islice(stream, count))]
    if len(reservoir) == count:
        weight = math.exp(math.log(_open_unit(rng)) / count)
        # The index of the next record to take: the ones before it cost no random numbers.
        chosen = count + math.floor(math.log(_open_unit(rng)) / math.log1p(-weight))
        for index, record in enumerate(stream, count):
            if index != chosen:
                continue
            reservoir[rng.randrange(count)] = held(index, record)
            weight *= math.exp(math.log(_open_unit(rng)) / count)
            chosen += 1 + math.floor(math.log(_open_unit(rng)) / math.log1p(-weight))
    reservoir.sort(key=lambda entry: entry[0])
    if position is not None:
        yield from give_back(reservoir, position)
        return
    decode = codec.decode
    for entry in reservoir:
        yield decode(entry[2])
