"""sort: the documented order of values, stability, the external merge (runs on disk, multi-pass
merges), clean-up of temporary files, and bounded memory on generated data."""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndpipe.errors import RecordError
from ndpipe.expr import compile_expression
from ndpipe.ops.sort import ExternalSorter, sort
from tests.conftest import FIXTURES, ROOT, environment, ndjson, records, run_ndpipe, shell

MISSING = object()

# --- a reference order, written from the documentation, independent of the implementation ---

KIND_ORDER = ["boolean", "number", "string", "array", "object"]


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def compare_values(left: Any, right: Any) -> int:
    """Ascending: false, true, numbers, strings, arrays, objects (by sorted-key JSON text)."""
    left_kind, right_kind = KIND_ORDER.index(kind(left)), KIND_ORDER.index(kind(right))
    if left_kind != right_kind:
        return -1 if left_kind < right_kind else 1
    if kind(left) in ("array", "object"):
        left = orjson.dumps(left, option=orjson.OPT_SORT_KEYS)
        right = orjson.dumps(right, option=orjson.OPT_SORT_KEYS)
    return (left > right) - (left < right)


def reference_sort(items: list[dict], fields: list[str], descending: bool = False) -> list[dict]:
    """Stable insertion of each record in order; null and missing last in both directions."""

    def compare(a: dict, b: dict) -> int:
        for name in fields:
            x, y = a.get(name), b.get(name)
            if x is None and y is None:
                continue
            if x is None:
                return 1
            if y is None:
                return -1
            result = compare_values(x, y)
            if result:
                return -result if descending else result
        return 0

    # sorted() is stable, so equal records keep their input order in both directions.
    return sorted(items, key=functools.cmp_to_key(compare))


def keys(*texts: str) -> list:
    return [compile_expression(text) for text in texts]


def ids(items: list[dict]) -> list[Any]:
    return [item["id"] for item in items]


# --- the order of values ---------------------------------------------------------------------

MIXED = [3, "b", None, MISSING, True, False, 1.5, "a", [1], {"a": 1}, -2, "B", [0, 5], {}, 10**15]


def mixed_records() -> list[dict]:
    out = []
    for number, value in enumerate(MIXED):
        record: dict[str, Any] = {"id": number}
        if value is not MISSING:
            record["v"] = value
        out.append(record)
    return out


def test_ascending_order_of_kinds():
    result = list(sort(mixed_records(), keys=keys("v")))
    values = [r.get("v", "<missing>") for r in result]
    assert values == [
        False,
        True,
        -2,
        1.5,
        3,
        10**15,
        "B",
        "a",
        "b",
        [0, 5],
        [1],
        {"a": 1},  # '{"a":1}' < '{}' as JSON text
        {},
        None,
        "<missing>",
    ]


def test_descending_reverses_all_but_null_and_missing():
    ascending = list(sort(mixed_records(), keys=keys("v")))
    descending = list(sort(mixed_records(), keys=keys("v"), descending=True))
    present = [r for r in ascending if r.get("v") is not None]
    assert descending[: len(present)] == present[::-1]
    # null and missing stay last, in input order (stable), as with ascending order
    assert ids(descending[len(present) :]) == ids(ascending[len(present) :]) == [2, 3]


def test_numbers_compare_by_value_not_type():
    items = [{"id": 0, "v": 2}, {"id": 1, "v": 1.5}, {"id": 2, "v": 2.0}, {"id": 3, "v": -0.5}]
    assert ids(sort(items, keys=keys("v"))) == [3, 1, 0, 2]


def test_stable_in_both_directions():
    items = [{"id": n, "k": n % 3} for n in range(30)]
    up = list(sort(items, keys=keys("k")))
    down = list(sort(items, keys=keys("k"), descending=True))
    assert ids(up) == [n for k in (0, 1, 2) for n in range(30) if n % 3 == k]
    assert ids(down) == [n for k in (2, 1, 0) for n in range(30) if n % 3 == k]


def test_secondary_keys():
    items = [
        {"id": 0, "plan": "pro", "at": "2021"},
        {"id": 1, "plan": "free", "at": "2023"},
        {"id": 2, "plan": "pro", "at": "2020"},
        {"id": 3, "plan": None, "at": "2019"},
        {"id": 4, "plan": "free", "at": "2022"},
    ]
    assert ids(sort(items, keys=keys("plan", "at"))) == [4, 1, 2, 0, 3]
    assert ids(sort(items, keys=keys("plan", "at"), descending=True)) == [0, 2, 1, 4, 3]


def test_key_failure_names_the_expression():
    with pytest.raises(RecordError, match="abs"):
        list(sort([{"v": "x"}], keys=keys("abs(v)")))


# --- the external merge: runs on disk, compared with the reference -----------------------------


def random_records(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pool: list[Any] = [
        None,
        True,
        False,
        "",
        "a",
        "b",
        "ab",
        "é",
        "Z",
        0,
        1,
        -1,
        2.5,
        [1],
        {"x": 1},
    ]
    items = []
    for number in range(count):
        record: dict[str, Any] = {"id": number, "pad": "x" * rng.randrange(200)}
        for name in ("a", "b"):
            choice = rng.randrange(len(pool) + 1)
            if choice < len(pool):
                record[name] = pool[choice]
        items.append(record)
    return items


@pytest.mark.parametrize("descending", [False, True])
def test_many_runs_and_multi_pass_merge_match_the_reference(tmp_path, descending):
    items = random_records(3000, seed=5)
    sorter = ExternalSorter(
        keys("a", "b"),
        descending=descending,
        buffer_size=20_000,
        temp_dir=str(tmp_path),
        fan_in=4,
    )
    for item in items:
        sorter.add(item)
    assert len(sorter.run_paths) > 16  # several merge passes at a fan-in of 4
    result = list(sorter.results())
    sorter.close()
    assert ids(result) == ids(reference_sort(items, ["a", "b"], descending))
    assert result == reference_sort(items, ["a", "b"], descending)  # records intact
    assert os.listdir(tmp_path) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-3, 3) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=4,
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(json_values, max_size=60), descending=st.booleans(), size=st.integers(1, 3))
def test_any_values_sort_like_the_reference(values, descending, size):
    items = [{"id": number, "v": value} for number, value in enumerate(values)]
    result = list(sort(items, keys=keys("v"), descending=descending, buffer_size=size * 400))
    assert ids(result) == ids(reference_sort(items, ["v"], descending))


def test_temp_files_removed_after_an_error_mid_stream(tmp_path):
    def items():
        yield from random_records(500, seed=1)
        yield {"id": "bad", "a": "text"}

    with pytest.raises(RecordError):
        list(sort(items(), keys=keys("abs(a)"), buffer_size=5000, temp_dir=str(tmp_path)))
    assert os.listdir(tmp_path) == []


def test_temp_files_removed_when_the_consumer_stops_early(tmp_path):
    stream = sort(
        random_records(500, seed=2), keys=keys("a"), buffer_size=5000, temp_dir=str(tmp_path)
    )
    next(stream)
    assert os.listdir(tmp_path)  # runs exist while the merge is under way
    stream.close()
    assert os.listdir(tmp_path) == []


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_sorts_fixture_users_like_the_reference():
    data = (FIXTURES / "users.ndjson").read_bytes()
    users = records(data)
    for args, fields, descending in (
        (["-k", "created_at"], ["created_at"], False),
        (["-k", "logins_count", "--desc"], ["logins_count"], True),
        (["-k", "app_metadata.plan", "-k", "email", "-S", "64K"], ["plan", "email"], False),
    ):
        result = run_ndpipe("sort", *args, input=data)
        assert result.returncode == 0, result.stderr
        assert result.stderr == b""
        flat = [dict(u, plan=(u.get("app_metadata") or {}).get("plan")) for u in users]
        expected = [u["email"] for u in reference_sort(flat, fields, descending)]
        assert [u["email"] for u in records(result.stdout)] == expected


CASES = sorted((FIXTURES / "sort").glob("*/cmd"))


def test_there_are_golden_cases():
    assert len(CASES) >= 3


@pytest.mark.parametrize("cmd", CASES, ids=lambda path: path.parent.name)
def test_golden(cmd: Path) -> None:
    result = shell(cmd.read_text().strip(), input=(FIXTURES / "users.ndjson").read_bytes())
    assert result.returncode == 0, result.stderr
    assert result.stdout == (cmd.parent / "out").read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "a[", "-r"], b"bad key"),
        (["-k", "a", "--buffer-size", "lots"], b"bad size"),
        (["-k", "a", "--buffer-size", "10K"], b"too small"),
        ([], b"Missing option"),
    ],
)
def test_usage_errors_exit_2_before_reading(args, message):
    result = run_ndpipe("sort", *args, input=b"not json\n")
    assert result.returncode == 2
    assert message in result.stderr


def test_bad_line_after_runs_were_written_cleans_up(tmp_path):
    data = ndjson(random_records(2000, seed=3)) + b"{oops\n"
    result = run_ndpipe("sort", "-k", "a", "-S", "64K", input=data, env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 1
    assert b"stdin:2001: invalid JSON" in result.stderr
    assert result.stdout == b""
    assert os.listdir(tmp_path) == []


def default_sigint() -> None:
    # A shell that runs the suite in the background ignores SIGINT, and its children inherit
    # that; Ctrl-C in a terminal reaches ndpipe with the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_removes_the_runs(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "ndpipe", "sort", "-k", "a", "-S", "64K"],
        preexec_fn=default_sigint,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment({"TMPDIR": str(tmp_path)}),
        cwd=ROOT,
    )
    assert process.stdin is not None
    process.stdin.write(ndjson(random_records(3000, seed=4)))
    process.stdin.flush()  # stdin stays open: sort is still reading when interrupted
    deadline = time.monotonic() + 30
    while not any(Path(tmp_path).rglob("run-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(Path(tmp_path).rglob("run-*"))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert os.listdir(tmp_path) == []


# --- bounded memory on generated data ----------------------------------------------------------

# Runs a command in a fresh, small Python process and prints its exit code and its children's
# max RSS. Measured from the test process itself, a child's max RSS would include the test
# process's own memory at fork time, which Linux carries over into the child's counter.
MEASURE = """
import resource, subprocess, sys
with open(sys.argv[1], "rb") as stdin, open(sys.argv[2], "wb") as stdout:
    code = subprocess.call(sys.argv[3:], stdin=stdin, stdout=stdout)
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_measured(
    args: list[str], stdin: Path, stdout: Path, env: dict[str, str] | None = None
) -> tuple[int, float, bytes]:
    """Run `ndpipe ARGS < stdin > stdout`; returns (exit code, max RSS in MB, stderr)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            str(stdin),
            str(stdout),
            sys.executable,
            "-m",
            "ndpipe",
            *args,
        ],
        capture_output=True,
        env=environment(env),
        cwd=ROOT,
        timeout=300,
    )
    code, kib = result.stdout.split()
    return int(code), int(kib) / 1024, result.stderr


MEMORY_RECORDS = 300_000


def generated_user(number: int, rng: random.Random) -> dict:
    created = None if number % 997 == 0 else f"20{rng.randrange(10, 25)}-0{rng.randrange(1, 10)}"
    return {
        "user_id": f"auth0|{number:024x}",
        "email": f"user{number}@example.com",
        "email_verified": number % 3 == 0,
        "name": f"User {number}",
        "app_metadata": {"plan": "premium", "roles": ["admin", "user"]},
        "user_metadata": {"name": f"User {number}", "preferences": {"newsletter": True}},
        "created_at": created,
        "logins_count": number % 97,
        "n": number,
    }


def test_sort_memory_is_bounded_by_the_buffer_not_the_input(tmp_path):
    rng = random.Random(11)
    users = tmp_path / "users.ndjson"
    created: list[Any] = []
    with open(users, "wb") as out:
        for start in range(0, MEMORY_RECORDS, 1000):
            block = [generated_user(n, rng) for n in range(start, start + 1000)]
            created.extend(user["created_at"] for user in block)
            out.write(ndjson(block))
    temp = tmp_path / "tmp"
    temp.mkdir()
    sorted_path = tmp_path / "sorted.ndjson"
    code, max_rss_mb, stderr = run_measured(
        ["sort", "-k", "created_at", "--buffer-size", "1M"],
        users,
        sorted_path,
        {"TMPDIR": str(temp)},
    )
    assert code == 0, stderr
    with open(sorted_path, "rb") as result:
        order = [orjson.loads(line)["n"] for line in result]
    # The reference: Python's stable sort, missing dates last.
    expected = sorted(range(MEMORY_RECORDS), key=lambda n: (created[n] is None, created[n] or ""))
    assert order == expected
    input_mb = users.stat().st_size / 2**20
    assert input_mb > 80  # far more than the memory the sort may use
    print(f"sort: max RSS {max_rss_mb:.0f} MB for {input_mb:.0f} MB of input")
    assert max_rss_mb < 50, f"max RSS {max_rss_mb:.0f} MB sorting {input_mb:.0f} MB"
    assert os.listdir(temp) == []
