"""sample: a uniform random sample of N records, in constant memory (reservoir sampling).

Algorithm L (Li, "Reservoir-sampling algorithms of time complexity O(n(1 + log(N/n)))", ACM
TOMS 1994): after the first N records it draws how many records to skip before the next
replacement, so it needs a few random numbers per replacement rather than one per record. Every
subset of N records is equally likely. The chosen records are written in their input order.

The reservoir holds the chosen records serialised (orjson), so memory is N records as JSON plus
a small constant. The same seed and the same input give the same sample (random.Random, a Mersenne
Twister, which is stable across versions).
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterable
from itertools import islice

from ndpipe import codec
from ndpipe.io import Record, Records
from ndpipe.ops.sort import serialise


def _open_unit(rng: random.Random) -> float:
    """A uniform number in (0, 1): random() can return 0.0, whose log is undefined."""
    while True:
        value = rng.random()
        if value > 0.0:
            return value


def sample(records: Iterable[Record], *, count: int, seed: int | None = None) -> Records:
    """Yield `count` records chosen uniformly at random (all of them if fewer), in input order."""
    if count <= 0:
        return
    # No input has more records than this, and islice takes no larger count.
    count = min(count, sys.maxsize)
    rng = random.Random(seed)
    stream = iter(records)
    reservoir = [(index, serialise(record)) for index, record in enumerate(islice(stream, count))]
    if len(reservoir) == count:
        weight = math.exp(math.log(_open_unit(rng)) / count)
        # The index of the next record to take: the ones before it cost no random numbers.
        chosen = count + math.floor(math.log(_open_unit(rng)) / math.log1p(-weight))
        for index, record in enumerate(stream, count):
            if index != chosen:
                continue
            reservoir[rng.randrange(count)] = (index, serialise(record))
            weight *= math.exp(math.log(_open_unit(rng)) / count)
            chosen += 1 + math.floor(math.log(_open_unit(rng)) / math.log1p(-weight))
    reservoir.sort()
    loads = codec.loads
    for _, line in reservoir:
        yield loads(line)
