"""sample: uniform, reproducible with a seed, in input order, in constant memory."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest

from ndpipe.ops.sample import sample
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe
from tests.test_sort import generated_user, run_measured


def numbered(count: int) -> list[dict]:
    return [{"n": number} for number in range(count)]


def chosen(count: int, size: int, seed: int) -> list[int]:
    return [record["n"] for record in sample(numbered(count), count=size, seed=seed)]


def test_fewer_records_than_asked_gives_all_in_order():
    assert chosen(3, 5, seed=1) == [0, 1, 2]
    assert chosen(5, 5, seed=1) == [0, 1, 2, 3, 4]


def test_zero_gives_nothing():
    assert chosen(10, 0, seed=1) == []


def test_same_seed_same_sample_and_input_order():
    first = chosen(10_000, 25, seed=7)
    assert first == chosen(10_000, 25, seed=7)
    assert first == sorted(first)
    assert len(set(first)) == 25
    assert first != chosen(10_000, 25, seed=8)


def test_every_record_is_equally_likely():
    """Inclusion frequency of each of 40 records, sampling 8, over 4000 seeds: 1/5 each."""
    trials, population, size = 4000, 40, 8
    counts: Counter[int] = Counter()
    for seed in range(trials):
        counts.update(chosen(population, size, seed))
    expected = trials * size / population
    spread = math.sqrt(trials * (size / population) * (1 - size / population))
    # 4.5 standard deviations: a correct sampler fails this with probability below 1 in 10^4.
    for number in range(population):
        assert abs(counts[number] - expected) < 4.5 * spread, (number, counts[number])


def test_every_subset_is_equally_likely():
    """All 10 subsets of 2 out of 5 over 6000 seeds: chi-square with 9 degrees of freedom."""
    trials = 6000
    counts = Counter(tuple(chosen(5, 2, seed)) for seed in range(trials))
    subsets = list(itertools.combinations(range(5), 2))
    assert set(counts) == set(subsets)
    expected = trials / len(subsets)
    chi_square = sum((counts[s] - expected) ** 2 / expected for s in subsets)
    assert chi_square < 27.9  # the 0.999 quantile of chi-square with 9 degrees of freedom


def test_skips_spread_over_a_long_stream():
    """With a large input the skip lengths decide: records late in the stream get their share."""
    trials, population, size = 400, 5000, 10
    late = sum(
        sum(1 for n in chosen(population, size, seed) if n >= population // 2)
        for seed in range(trials)
    )
    share = late / (trials * size)
    assert abs(share - 0.5) < 0.04


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_is_reproducible_and_keeps_input_order():
    data = (FIXTURES / "users.ndjson").read_bytes()
    users = records(data)
    first = run_ndpipe("sample", "-n", "5", "--seed", "42", input=data)
    again = run_ndpipe("sample", "-n", "5", "--seed", "42", input=data)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    assert first.stderr == b""
    picked = records(first.stdout)
    assert len(picked) == 5
    positions = [users.index(user) for user in picked]
    assert positions == sorted(positions)


def test_cli_without_seed_varies():
    data = ndjson(numbered(1000))
    outputs = {run_ndpipe("sample", "-n", "3", input=data).stdout for _ in range(3)}
    assert len(outputs) > 1


@pytest.mark.parametrize("args", [["-n", "-1"], ["-n", "x"], ["--seed", "abc"]])
def test_cli_usage_errors(args):
    result = run_ndpipe("sample", *args, input=b"not json\n")
    assert result.returncode == 2


def test_memory_stays_constant(tmp_path):
    rng = random.Random(3)
    users = tmp_path / "users.ndjson"
    with open(users, "wb") as out:
        for start in range(0, 200_000, 1000):
            out.write(ndjson([generated_user(n, rng) for n in range(start, start + 1000)]))
    output = tmp_path / "sample.ndjson"
    code, max_rss_mb, stderr = run_measured(["sample", "-n", "100", "--seed", "1"], users, output)
    assert code == 0, stderr
    assert len(output.read_bytes().splitlines()) == 100
    assert users.stat().st_size > 50 * 2**20
    assert max_rss_mb < 40, f"max RSS {max_rss_mb:.0f} MB"
