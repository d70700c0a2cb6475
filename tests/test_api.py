"""The Python API (`import ndpipe`) gives the records the CLI gives, with the CLI's checks.

Each function runs on fixtures/users.ndjson and is compared with the real CLI's output; usage
errors must come before any record is read; numbers stay exact; errors="skip" counts.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ndpipe
from tests.conftest import FIXTURES, records, run_ndpipe

USERS = FIXTURES / "users.ndjson"
CHANGES = FIXTURES / "upsert-patch" / "changes.ndjson"


def cli(*args: str, source: Path = USERS) -> bytes:
    done = run_ndpipe(*args, input=source.read_bytes())
    assert done.returncode in (0, 1), done.stderr
    return done.stdout


def users() -> Iterator[dict]:
    return ndpipe.read(USERS)


# Each case: the CLI's arguments, and the same stage through the API.
CASES: dict[str, tuple[list[str], Callable[[], Iterator[dict]]]] = {
    "select": (
        ["select", "email", "Name=user_metadata.name || name", "user_metadata.country"],
        lambda: ndpipe.select(
            users(), ["email", "Name=user_metadata.name || name", "user_metadata.country"]
        ),
    ),
    "select preset omit": (
        ["select", "--preset", "auth0-default", "--missing", "omit"],
        lambda: ndpipe.select(users(), preset="auth0-default", missing="omit"),
    ),
    "filter": (
        ["filter", "logins_count > `10` && email_verified"],
        lambda: ndpipe.filter(users(), "logins_count > `10` && email_verified"),
    ),
    "map in order": (
        ["map", "--rename", "email=Email", "--set", "name=Email", "--del", "identities"],
        lambda: ndpipe.map(users(), rename="email=Email", set=["name=Email"], delete="identities"),
    ),
    "head": (["head", "-n", "3"], lambda: ndpipe.head(users(), 3)),
    "sample": (
        ["sample", "-n", "5", "--seed", "42"],
        lambda: ndpipe.sample(users(), 5, seed=42),
    ),
    "sort": (
        ["sort", "-k", "app_metadata.plan", "-k", "created_at", "--desc"],
        lambda: ndpipe.sort(users(), ["app_metadata.plan", "created_at"], descending=True),
    ),
    "dedupe": (
        ["dedupe", "-k", "family_name", "--ignore-case"],
        lambda: ndpipe.dedupe(users(), "family_name", ignore_case=True),
    ),
    "escape-csv": (
        ["escape-csv", "--style", "auth0"],
        lambda: ndpipe.escape_csv(users(), style="auth0"),
    ),
    "import-clean": (["import-clean"], lambda: ndpipe.import_clean(users())),
    "upsert-patch": (
        ["upsert-patch", "--patch", str(CHANGES)],
        lambda: ndpipe.upsert_patch(users(), patch=CHANGES),
    ),
    "upsert-patch set where": (
        [
            "upsert-patch",
            "--set",
            'app_metadata.plan="pro"',
            "--unset",
            "user_metadata.x",
            "--where",
            "app_metadata.plan == 'premium'",
        ],
        lambda: ndpipe.upsert_patch(
            users(),
            set='app_metadata.plan="pro"',
            unset=["user_metadata.x"],
            where="app_metadata.plan == 'premium'",
        ),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_library_gives_the_records_the_cli_gives(name):
    args, stage = CASES[name]
    expected = records(cli(*args))
    assert expected, "the case should give some records"
    assert list(stage()) == expected


@pytest.mark.parametrize(
    "source", ["users.ndjson", "users.json.gz", "csv/auth0-export.csv.gz", "csv/plain.csv"]
)
def test_read_reads_what_fetch_reads(source):
    path = FIXTURES / source
    expected = records(cli("fetch", str(path)))
    assert list(ndpipe.read(path)) == expected
    with open(path, "rb") as stream:
        assert list(ndpipe.read(stream)) == expected


def test_writers_write_the_bytes_the_cli_writes(tmp_path):
    fields = ["Email Address=email", "First Name=given_name", "plan=app_metadata.plan"]
    rows = list(ndpipe.escape_csv(ndpipe.select(users(), fields)))
    piped = run_ndpipe(
        "select", *fields, "then", "escape-csv", "then", "csv", "--delimiter", ";", "--bom",
        input=USERS.read_bytes(),
    )  # fmt: skip
    out = io.BytesIO()
    assert ndpipe.write_csv(rows, out, delimiter=";", bom=True) == len(rows) == 40
    assert out.getvalue() == piped.stdout

    selected = cli("select", *fields)
    out = io.BytesIO()
    assert ndpipe.write_ndjson(ndpipe.select(users(), fields), out) == 40
    assert out.getvalue() == selected

    target = tmp_path / "users.json"
    assert ndpipe.write_json_array(users(), target) == 40
    assert target.read_bytes() == cli("to-json-array")
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]  # no temporary file left


def test_dedupe_and_import_clean_report_their_counts():
    stats = ndpipe.DedupeStats()
    dropped: list[dict] = []
    kept = list(ndpipe.dedupe(users(), "family_name", stats=stats, on_duplicate=dropped.append))
    assert (stats.read, stats.kept, stats.duplicates) == (40, len(kept), len(dropped))
    assert stats.duplicates > 0
    assert kept + dropped != [] and len(kept) + len(dropped) == 40

    clean = ndpipe.CleanStats()
    rejected: list[ndpipe.Rejected] = []
    passed = list(ndpipe.import_clean(users(), stats=clean, on_reject=rejected.append))
    assert (clean.read, clean.passed, clean.rejected) == (40, len(passed), len(rejected))
    assert rejected and rejected[0].problems


def untouchable() -> Iterator[dict]:
    raise AssertionError("a record was read before the usage error")
    yield {}


@pytest.mark.parametrize(
    "call",
    [
        lambda r: ndpipe.select(r, ["a["]),
        lambda r: ndpipe.select(r, ["email", "email"]),
        lambda r: ndpipe.select(r, ["email"], missing="zero"),
        lambda r: ndpipe.filter(r, "length(a, b)"),
        lambda r: ndpipe.filter(r, "a == `1e400`"),
        lambda r: ndpipe.filter(r, "email", errors="ignore"),
        lambda r: ndpipe.map(r, set="a.=b"),
        lambda r: ndpipe.map(r),
        lambda r: ndpipe.sort(r, []),
        lambda r: ndpipe.sort(r, "a", buffer_size="1K"),
        lambda r: ndpipe.dedupe(r, "a ||"),
        lambda r: ndpipe.escape_csv(r, style="auth0", unescape=True),
        lambda r: ndpipe.upsert_patch(r, set="user_metadata.plan=gold"),
        lambda r: ndpipe.upsert_patch(r, patch="no-such-patch.ndjson"),
        lambda r: ndpipe.head(r, -1),
        lambda r: ndpipe.write_csv(r, io.BytesIO(), delimiter=";;"),
        lambda r: ndpipe.write_csv(r, io.BytesIO(), columns="a,a"),
    ],
)
def test_usage_errors_are_raised_before_any_record_is_read(call):
    with pytest.raises(ndpipe.UsageError):
        call(untouchable())


def test_read_refuses_a_missing_file_when_called():
    with pytest.raises(ndpipe.UsageError, match="cannot open"):
        ndpipe.read("no-such-file.ndjson")


def test_a_writer_names_the_record_it_cannot_write(tmp_path):
    target = tmp_path / "users.csv"
    rows = [{"email": "a@example.com"}, {"email": "b@example.com", "extra": 1}]
    with pytest.raises(ndpipe.RecordError, match=r"^write_csv: record 2: fields not in the"):
        ndpipe.write_csv(rows, target, strict=True)
    assert list(tmp_path.iterdir()) == []  # complete or absent


def test_numbers_stay_exact():
    data = b'{"id":12345678901234567890123,"f":1E5,"n":-98765432109876543210}\n{"id":2,"f":0.1}\n'
    chain = ndpipe.sort(ndpipe.read(io.BytesIO(data)), "id")
    out = io.BytesIO()
    ndpipe.write_ndjson(ndpipe.select(chain, ["id", "f", "n"]), out)
    assert out.getvalue() == (
        b'{"id":2,"f":0.1,"n":null}\n'
        b'{"id":12345678901234567890123,"f":100000.0,"n":-98765432109876543210}\n'
    )
    csv_out = io.BytesIO()
    ndpipe.write_csv(ndpipe.read(io.BytesIO(data)), csv_out, columns=["id"])
    assert csv_out.getvalue() == b"id\n12345678901234567890123\n2\n"


def test_errors_skip_counts_bad_lines_and_records():
    data = b'{"a":"xy"}\n{not json\n{"a":5}\n{"a":"z"}\n'
    skipped = ndpipe.Skipped()
    out = list(
        ndpipe.select(
            ndpipe.read(io.BytesIO(data), errors="skip", skipped=skipped),
            ["n=length(a)"],
            errors="skip",
            skipped=skipped,
        )
    )
    assert out == [{"n": 2}, {"n": 1}]
    assert (skipped.lines, skipped.records, skipped.total) == (1, 1, 2)
    assert skipped.where == ["input:2", "select: record 2"]


def test_errors_fail_names_the_record_and_passes_upstream_errors_through():
    with pytest.raises(ndpipe.RecordError, match=r"^filter: record 2: expression"):
        list(ndpipe.filter([{"a": "x"}, {"a": 1}], "length(a) > `0`"))
    # A later stage that skips never swallows an earlier stage's error.
    skipped = ndpipe.Skipped()
    upstream = ndpipe.filter([{"a": "x"}, {"a": 1}], "length(a) > `0`")
    with pytest.raises(ndpipe.RecordError, match="filter: record 2"):
        list(ndpipe.select(upstream, ["a"], errors="skip", skipped=skipped))
    assert skipped.total == 0
    with pytest.raises(ndpipe.DataError, match="input:2: invalid JSON"):
        list(ndpipe.head(ndpipe.read(io.BytesIO(b'{"a":1}\n{"a":\n')), 5))


def test_the_library_is_lazy_and_exported():
    assert set(ndpipe.__all__) <= set(dir(ndpipe))
    assert issubclass(ndpipe.RecordError, ndpipe.DataError)
    assert issubclass(ndpipe.UsageError, ndpipe.NdpipeError)
    pulled: list[int] = []

    def numbered() -> Iterator[dict]:
        for number in range(1000):
            pulled.append(number)
            yield {"n": number}

    assert [r["n"] for r in ndpipe.head(ndpipe.filter(numbered(), "n > `2`"), 2)] == [3, 4]
    assert len(pulled) == 5
    assert (Path(ndpipe.__file__).parent / "py.typed").exists()


def test_dask_runs_the_per_record_stages_over_partitions(tmp_path):
    bag = pytest.importorskip("dask.bag")
    import ndpipe.codec

    lines = USERS.read_bytes().splitlines(keepends=True)
    for part in range(4):
        (tmp_path / f"users-{part}.ndjson").write_bytes(b"".join(lines[part::4]))
    fields = ["email", "Name=user_metadata.name || name"]
    result = (
        bag.read_text(str(tmp_path / "users-*.ndjson"))
        .map(ndpipe.codec.loads)
        .map_partitions(lambda part: list(ndpipe.select(ndpipe.filter(part, "email"), fields)))
        .compute(scheduler="synchronous")
    )
    expected = records(cli("filter", "email", "then", "select", *fields))
    key = json.dumps
    assert sorted(result, key=key) == sorted(expected, key=key)
