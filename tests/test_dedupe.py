"""dedupe: first record per key kept, the others counted and optionally written aside."""

from __future__ import annotations

import tracemalloc

import pytest

from ndpipe.errors import RecordError
from ndpipe.expr import compile_expression
from ndpipe.ops.dedupe import DedupeStats, dedupe
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe


def run(given: list[dict], *keys: str, **options) -> tuple[list[dict], list[dict], DedupeStats]:
    stats = DedupeStats()
    dropped: list[dict] = []
    kept = list(
        dedupe(
            iter(given),
            keys=[compile_expression(key) for key in keys],
            stats=stats,
            on_duplicate=dropped.append,
            **options,
        )
    )
    return kept, dropped, stats


USERS = [
    {"email": "a@example.com", "n": 1},
    {"email": "b@example.com", "n": 2},
    {"email": "A@Example.com", "n": 3},
    {"email": "a@example.com", "n": 4},
    {"n": 5},
    {"email": None, "n": 6},
    {"email": "b@example.com", "n": 7},
]


def numbers(found: list[dict]) -> list[int]:
    return [record["n"] for record in found]


def test_first_record_per_key_is_kept_in_order():
    kept, dropped, stats = run(USERS, "email")
    assert numbers(kept) == [1, 2, 3, 5, 6]
    assert numbers(dropped) == [4, 7]
    assert (stats.read, stats.kept, stats.duplicates, stats.keyless) == (7, 5, 2, 2)


def test_ignore_case():
    kept, dropped, _ = run(USERS, "email", ignore_case=True)
    assert numbers(kept) == [1, 2, 5, 6]
    assert numbers(dropped) == [3, 4, 7]


def test_records_without_a_key_are_all_kept_and_counted():
    kept, _, stats = run([{"n": 1}, {"n": 2}, {"email": None, "n": 3}], "email")
    assert numbers(kept) == [1, 2, 3]
    assert stats.keyless == 3


def test_compound_key():
    given = [
        {"g": "Jane", "f": "Doe", "n": 1},
        {"g": "Jane", "f": "Roe", "n": 2},
        {"g": "Jane", "f": "Doe", "n": 3},
        {"g": "Jane", "n": 4},
        {"g": "Jane", "f": None, "n": 5},  # same key as 4: (Jane, null)
        {"n": 6},  # every part null: no key
        {"n": 7},
    ]
    kept, dropped, stats = run(given, "g", "f")
    assert numbers(kept) == [1, 2, 4, 6, 7]
    assert numbers(dropped) == [3, 5]
    assert stats.keyless == 2


def test_compound_key_parts_do_not_run_together():
    kept, _, _ = run([{"a": "x", "b": "yz", "n": 1}, {"a": "xy", "b": "z", "n": 2}], "a", "b")
    assert numbers(kept) == [1, 2]


def test_keys_compare_as_json_values():
    given = [
        {"k": {"a": 1, "b": [1, "x"]}, "n": 1},
        {"k": {"b": [1, "x"], "a": 1}, "n": 2},  # same object, other key order
        {"k": 1, "n": 3},
        {"k": "1", "n": 4},  # a string is not the number
        {"k": True, "n": 5},
        {"k": [], "n": 6},
        {"k": {"a": 1, "b": [1, "X"]}, "n": 7},
    ]
    kept, _, _ = run(given, "k")
    assert numbers(kept) == [1, 3, 4, 5, 6, 7]
    kept, _, _ = run(given, "k", ignore_case=True)
    assert numbers(kept) == [1, 3, 4, 5, 6]


def test_a_failing_key_expression_is_a_record_error():
    with pytest.raises(RecordError, match="abs"):
        run([{"n": "text"}], "abs(n)")


def test_memory_is_a_digest_per_key_not_the_record():
    """200,000 distinct keys on 2 KB records: the op keeps about 80 bytes per key."""
    payload = "x" * 2000
    count = 200_000

    def given():
        for number in range(count):
            yield {"email": f"user{number}@example.com", "payload": payload}

    tracemalloc.start()
    try:
        stats = DedupeStats()
        keys = [compile_expression("email")]
        for _ in dedupe(given(), keys=keys, stats=stats):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.kept == count
    per_key = peak / count
    assert per_key < 150, f"{per_key:.0f} bytes per distinct key"


# --- the command --------------------------------------------------------------------------------


def test_cli_counts_on_stderr_and_writes_dups(tmp_path):
    dups = tmp_path / "dups.ndjson"
    result = run_ndpipe(
        "dedupe", "-k", "email", "--ignore-case", "--dups", str(dups), input=ndjson(USERS)
    )
    assert result.returncode == 0, result.stderr
    assert numbers(records(result.stdout)) == [1, 2, 5, 6]
    assert numbers(records(dups.read_bytes())) == [3, 4, 7]
    assert result.stderr.decode() == (
        f"ndpipe dedupe: 7 read, 4 kept, 3 duplicates dropped (written to {dups}); "
        "2 without a key, kept\n"
    )


def test_cli_repeated_key_and_then_chain():
    result = run_ndpipe(
        "select", "g=given_name", "f=family_name", "then", "dedupe", "-k", "g", "-k", "f",
        input=(FIXTURES / "users.ndjson").read_bytes(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    kept = records(result.stdout)
    pairs = [(r["g"], r["f"]) for r in kept]
    assert len(pairs) == len(set(pairs))
    assert b"40 read, " in result.stderr


def test_cli_key_failure_names_the_line():
    data = ndjson([{"n": 1}, {"n": 2}, {"n": "x"}])
    result = run_ndpipe("dedupe", "-k", "abs(n)", input=data)
    assert result.returncode == 1
    assert result.stderr.startswith(b"ndpipe dedupe: stdin:3: ")


@pytest.mark.parametrize("args", [[], ["-k", "email["], ["-k", ""]])
def test_cli_usage_errors(args):
    result = run_ndpipe("dedupe", *args, input=b'{"email": "a"}\n')
    assert result.returncode == 2
    assert result.stdout == b""


def test_cli_unwritable_dups_file():
    result = run_ndpipe("dedupe", "-k", "email", "--dups", "/nonexistent/d.ndjson", input=b"{}\n")
    assert result.returncode == 2
    assert b"cannot write --dups /nonexistent/d.ndjson" in result.stderr
