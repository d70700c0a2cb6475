"""diff: the op with lists, the CLI through a real subprocess, and OLD + diff == NEW."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndpipe import codec
from ndpipe.errors import DataError, RecordError
from ndpipe.expr import compile_expression
from ndpipe.io import ErrorPolicy, Position
from ndpipe.ops.diff import DiffStats, apply_diff, changed_fields, diff, json_equal
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe

USERS = [codec.loads(line) for line in (FIXTURES / "users.ndjson").read_bytes().splitlines()]


def keys(*texts: str):
    return [compile_expression(text, "key") for text in texts]


def numbered(users):
    """A reader of a list: keeps the position up to date, as ndpipe.io's readers do."""

    def read(position):
        for number, user in enumerate(users, 1):
            position.number = number
            yield user

    return read


def run_op(old, new, *key_texts, **options):
    stats = DiffStats()
    out = list(
        diff(
            numbered(old),
            numbered(new),
            keys=keys(*(key_texts or ("id",))),
            stats=stats,
            **options,
        )
    )
    return out, stats


def write(path, users) -> str:
    path.write_bytes(ndjson(users))
    return str(path)


def _number_normal(value):
    """1.0 as 1 and -0.0 as 0: the same JSON number, so the same identity."""
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is dict:
        return {name: _number_normal(item) for name, item in value.items()}
    if type(value) is list:
        return [_number_normal(item) for item in value]
    return value


def identity(record) -> str:
    """A record's identity for multiset comparison: equal JSON values, equal identities."""
    return json.dumps(_number_normal(record), sort_keys=True)


# --- the op, with lists -------------------------------------------------------------------------


def test_op_reports_added_removed_changed_in_key_order():
    old = [{"id": 3, "a": 1}, {"id": 1, "a": 1}, {"id": 2, "a": 1}]
    new = [{"id": 4, "a": 1}, {"id": 2, "a": 2}, {"id": 1, "a": 1}]
    out, stats = run_op(old, new)
    assert out == [
        {"op": "changed", "key": [2], "record": {"id": 2, "a": 2}, "old": {"id": 2, "a": 1},
         "fields": ["a"]},
        {"op": "removed", "key": [3], "record": {"id": 3, "a": 1}},
        {"op": "added", "key": [4], "record": {"id": 4, "a": 1}},
    ]  # fmt: skip
    assert stats == DiffStats(added=1, removed=1, changed=1, unchanged=1)
    assert apply_diff(old, out) == [{"id": 1, "a": 1}, {"id": 2, "a": 2}, {"id": 4, "a": 1}]


def test_changed_fields_are_dotted_paths_into_objects():
    old = {"email": "a", "user_metadata": {"plan": "free", "x": {"y": 1}}, "tags": [1, 2], "z": 1}
    new = {"email": "b", "user_metadata": {"plan": "pro", "x": {"y": 1}}, "tags": [1, 3], "w": 1}
    assert changed_fields(old, new) == ["email", "tags", "user_metadata.plan", "w", "z"]
    assert changed_fields(old, new, [["user_metadata"], ["nope"]]) == ["user_metadata.plan"]
    assert changed_fields(old, new, [["user_metadata", "x"]]) == []


def test_json_equality_is_exact():
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert not json_equal(2**64 + 1, float(2**64 + 1))
    assert json_equal(2**70, 2**70)
    assert json_equal({"a": 1, "b": [1, {"c": None}]}, {"b": [1.0, {"c": None}], "a": 1})
    assert not json_equal({"a": None}, {})
    assert not json_equal("1", 1)


def test_op_numbers_are_equal_as_numbers_and_booleans_are_not():
    out, stats = run_op(
        [{"id": 1, "n": 1}, {"id": 2, "b": 1}], [{"id": 1.0, "n": 1.0}, {"id": 2, "b": True}]
    )
    assert stats == DiffStats(changed=1, unchanged=1)
    assert out[0]["key"] == [2] and out[0]["fields"] == ["b"]


def test_op_only_and_fields():
    old = [{"id": 1, "email": "a", "seen": 1}, {"id": 2, "email": "b", "seen": 1}, {"id": 3}]
    new = [{"id": 1, "email": "a", "seen": 2}, {"id": 2, "email": "c", "seen": 2}, {"id": 4}]
    out, stats = run_op(old, new, only=["changed", "added"], fields=[["email"]])
    assert [(line["op"], line["key"]) for line in out] == [("changed", [2]), ("added", [4])]
    assert out[0]["fields"] == ["email"]
    assert stats == DiffStats(added=1, removed=1, changed=1, unchanged=1)


def test_op_duplicate_key_names_both_positions():
    with pytest.raises(DataError, match=r"the key \[1\] appears twice: input:1 and input:3"):
        run_op([{"id": 1}, {"id": 2}, {"id": 1}], [])


def test_op_null_key_is_a_record_error_or_skipped():
    with pytest.raises(RecordError, match="null or missing"):
        run_op([{"id": None}], [])
    policy = ErrorPolicy("skip", Position("x"))
    out, stats = run_op([{"id": 1}, {"nope": 1}], [{"id": 1}, {"id": None}], policy=policy)
    assert out == [] and stats.unchanged == 1 and policy.failed == 2


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_added_removed_changed(tmp_path):
    new_users = [dict(user) for user in USERS[1:]] + [{"user_id": "auth0|new", "email": "n@x"}]
    new_users[0]["email"] = "changed@example.com"
    new_users[0]["user_metadata"] = {**new_users[0]["user_metadata"], "plan": "pro"}
    old = str(FIXTURES / "users.ndjson")
    result = run_ndpipe("diff", old, write(tmp_path / "new.ndjson", new_users), "-k", "user_id")
    assert result.returncode == 0, result.stderr
    out = records(result.stdout)
    by_op = Counter(line["op"] for line in out)
    assert by_op == {"added": 1, "removed": 1, "changed": 1}
    changed = next(line for line in out if line["op"] == "changed")
    assert changed["fields"] == ["email", "user_metadata.plan"]
    assert changed["key"] == [USERS[1]["user_id"]]
    assert changed["old"] == USERS[1] and changed["record"] == new_users[0]
    assert [line["key"] for line in out] == sorted(line["key"] for line in out)
    assert result.stderr == b"ndpipe diff: 1 added, 1 removed, 1 changed, 38 unchanged\n"


def test_cli_only_fields_and_a_chain(tmp_path):
    new_users = [dict(user) for user in USERS]
    new_users[0]["logins_count"] = 999
    new_users[1]["email"] = "moved@example.com"
    new_path = write(tmp_path / "new.ndjson", [*new_users[:-1], {"user_id": "z", "email": "z@x"}])
    old = str(FIXTURES / "users.ndjson")
    result = run_ndpipe(
        "diff", old, new_path, "-k", "user_id", "--only", "added,changed", "--fields", "email",
        "then", "select", "op", "email=record.email",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert records(result.stdout) == [
        {"op": "changed", "email": "moved@example.com"},
        {"op": "added", "email": "z@x"},
    ]
    assert b"1 added, 1 removed, 1 changed, 38 unchanged" in result.stderr


def test_cli_compound_key_and_array_and_gzip_inputs(tmp_path):
    old = [{"c": "a", "e": "x", "v": 1}, {"c": "b", "e": "x", "v": 1}]
    new = [{"c": "b", "e": "x", "v": 2}, {"c": "a", "e": "x", "v": 1}, {"c": "a", "e": "y"}]
    (tmp_path / "old.json").write_text(json.dumps(old, indent=2))
    (tmp_path / "new.json.gz").write_bytes(gzip.compress(ndjson(new)))
    result = run_ndpipe(
        "diff", str(tmp_path / "old.json"), str(tmp_path / "new.json.gz"), "-k", "c", "-k", "e"
    )
    assert result.returncode == 0, result.stderr
    assert [(line["op"], line["key"]) for line in records(result.stdout)] == [
        ("added", ["a", "y"]),
        ("changed", ["b", "x"]),
    ]


def test_cli_old_from_stdin(tmp_path):
    result = run_ndpipe(
        "diff", "-", str(FIXTURES / "users.json.gz"), "-k", "user_id",
        input=ndjson(USERS[:39]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [line["op"] for line in records(result.stdout)] == ["added"]


def test_cli_big_integers_stay_exact(tmp_path):
    big = 2**70 + 1
    old = write(tmp_path / "old.ndjson", [{"id": big, "n": 2**64}, {"id": 1, "n": 1}])
    new = write(tmp_path / "new.ndjson", [{"id": big, "n": 2**64 + 1}, {"id": 1, "n": 1.0}])
    result = run_ndpipe("diff", old, new, "-k", "id")
    assert result.returncode == 0, result.stderr
    assert str(big).encode() in result.stdout
    assert records(result.stdout) == [
        {"op": "changed", "key": [big], "record": {"id": big, "n": 2**64 + 1},
         "old": {"id": big, "n": 2**64}, "fields": ["n"]},
    ]  # fmt: skip


def test_cli_duplicate_key_is_an_error_naming_both_lines(tmp_path):
    old = write(tmp_path / "old.ndjson", [{"id": 1}])
    new = write(tmp_path / "new.ndjson", [{"id": 2}, {"id": 1}, {"id": 2}])
    result = run_ndpipe("diff", old, new, "-k", "id")
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"ndpipe diff: the key [2] appears twice: {new}:1 and {new}:3\n"
    )


def test_cli_duplicate_key_in_a_json_array_names_the_records(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps([{"id": 1}, {"id": 1.0}]))
    result = run_ndpipe("diff", str(old), "/dev/null", "-k", "id")
    assert result.returncode == 1
    assert f"appears twice: {old}: record 1 and {old}: record 2".encode() in result.stderr


def test_cli_missing_key_is_an_error_or_skipped(tmp_path):
    old = write(tmp_path / "old.ndjson", [{"id": 1}, {"id": 2}])
    new = write(tmp_path / "new.ndjson", [{"id": 1}, {"x": 1}, {"id": None}])
    result = run_ndpipe("diff", old, new, "-k", "id")
    assert result.returncode == 1
    assert result.stderr.decode() == f"ndpipe diff: {new}:2: the key is null or missing\n"
    assert result.stdout == b""
    result = run_ndpipe("diff", old, new, "-k", "id", "--on-error", "skip")
    assert result.returncode == 0, result.stderr
    assert [line["op"] for line in records(result.stdout)] == ["removed"]
    assert f"2 records that could not be processed ({new}:2, {new}:3)".encode() in result.stderr


def test_cli_bad_json_names_the_input_and_line(tmp_path):
    old = write(tmp_path / "old.ndjson", [{"id": 1}])
    new = tmp_path / "new.ndjson"
    new.write_bytes(b'{"id": 1}\n{"id": \n')
    result = run_ndpipe("diff", old, str(new), "-k", "id")
    assert result.returncode == 1
    assert result.stderr.startswith(f"ndpipe diff: {new}:2: invalid JSON".encode())


@pytest.mark.parametrize(
    "args, message",
    [
        (["a", "b"], b"Missing option '-k'"),
        (["-", "-", "-k", "id"], b"cannot both be stdin"),
        (["a", "b", "-k", "id", "--only", "added,moved"], b"'moved' is not one of"),
        (["a", "b", "-k", "id", "--fields", "email,,x"], b"is not a field"),
        (["a", "b", "-k", "id", "--fields", "a..b"], b"is not a field"),
        (["a", "b", "-k", "nope("], b"-k"),
        (["a", "b", "-k", "id", "-S", "1K"], b"too small"),
        (["a", "-k", "id"], b"Missing argument 'NEW'"),
    ],
)
def test_cli_usage_errors_exit_2_before_reading(args, message):
    # a and b do not exist: a usage error must be found without opening them.
    result = run_ndpipe("diff", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == b""


def test_cli_diff_must_come_first_and_not_write_its_input(tmp_path):
    old = write(tmp_path / "old.ndjson", [{"id": 1}])
    result = run_ndpipe("head", "then", "diff", old, old, "-k", "id", input=b"{}\n")
    assert result.returncode == 2
    assert b"must come first" in result.stderr
    result = run_ndpipe("diff", old, old, "-k", "id", "then", "to-json-array", "--out", old)
    assert result.returncode == 2, result.stderr
    assert codec.loads((tmp_path / "old.ndjson").read_bytes()) == {"id": 1}


def test_cli_spills_with_a_tiny_buffer(tmp_path):
    old_users = [{"id": n, "pad": "x" * 200, "v": n % 7} for n in range(3000)]
    new_users = [
        {**user, "v": user["v"] + 1} if user["id"] % 5 == 0 else user
        for user in old_users
        if user["id"] % 11
    ] + [{"id": 5000 + n, "pad": "y"} for n in range(50)]
    new_users.reverse()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    old, new = write(tmp_path / "old.ndjson", old_users), write(tmp_path / "new.ndjson", new_users)
    result = run_ndpipe("diff", old, new, "-k", "id", "-S", "64K", "-T", str(scratch))
    assert result.returncode == 0, result.stderr
    out = records(result.stdout)
    assert [line["key"] for line in out] == sorted(line["key"] for line in out)
    assert sorted(map(identity, apply_diff(old_users, out))) == sorted(map(identity, new_users))
    assert list(scratch.iterdir()) == []


def test_spilling_happens_with_a_tiny_buffer(tmp_path, monkeypatch):
    import ndpipe.ops.diff as diff_module

    written = []
    original = diff_module._SortedSide._spill

    def spill(self):
        written.append(len(self.buffer))
        original(self)

    monkeypatch.setattr(diff_module._SortedSide, "_spill", spill)
    old = [{"id": n, "pad": "x" * 200} for n in range(2000)]
    new = [dict(user, pad="y") if user["id"] % 3 == 0 else user for user in reversed(old)]
    out, stats = run_op(old, new, buffer_size=64_000, temp_dir=str(tmp_path))
    assert len(written) > 4
    assert stats == DiffStats(changed=667, unchanged=1333)
    assert [line["key"][0] for line in out] == list(range(0, 2000, 3))
    assert list(tmp_path.iterdir()) == []


# --- OLD + diff == NEW, for random exports -------------------------------------------------------

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 1.5, -0.0]),
    st.text(max_size=4),
)
metadata = st.dictionaries(st.sampled_from(["plan", "crm", "x"]), values, max_size=3)
user_fields = st.fixed_dictionaries(
    {"email": st.text(max_size=4)},
    optional={"n": values, "user_metadata": metadata, "tags": st.lists(values, max_size=2)},
)


@st.composite
def export_pairs(draw):
    ids = draw(st.lists(st.integers(0, 60), unique=True, max_size=30))
    old = [{"user_id": f"u{n}", **draw(user_fields)} for n in ids]
    new = []
    for user in old:
        fate = draw(st.sampled_from(["keep", "keep", "edit", "remove"]))
        if fate == "keep":
            new.append(user)
        elif fate == "edit":
            new.append({"user_id": user["user_id"], **draw(user_fields)})
    extra = draw(st.lists(st.integers(100, 130), unique=True, max_size=5))
    new += [{"user_id": f"u{n}", **draw(user_fields)} for n in extra]
    return old, draw(st.permutations(new))


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(export_pairs())
def test_applying_the_cli_output_to_old_gives_new(tmp_path_factory, pair):
    old, new = pair
    directory = tmp_path_factory.mktemp("pair")
    result = run_ndpipe(
        "diff",
        write(directory / "old.ndjson", old),
        write(directory / "new.ndjson", new),
        "-k",
        "user_id",
    )
    assert result.returncode == 0, result.stderr
    out = records(result.stdout)
    assert Counter(map(identity, apply_diff(old, out))) == Counter(map(identity, new))
    changed = [line for line in out if line["op"] == "changed"]
    assert all(line["fields"] for line in changed)
