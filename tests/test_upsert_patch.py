"""upsert-patch: merges (RFC 7386 and Auth0's shallow PATCH), patch checking, the patch index in
memory and on disk, the import-ready output, and a realistic bulk edit checked against an
independent reference merge."""

from __future__ import annotations

import copy
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.generate import users as generated_users
from ndpipe.errors import UsageError
from ndpipe.ops.upsert_patch import (
    AlreadyMatched,
    PatchIndex,
    check_patch,
    merge_patch,
    parse_set,
    parse_unset,
    same_json,
    shallow_merge,
)
from ndpipe.services.auth0.schema import UPSERTABLE_FIELDS, check_user
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe, shell
from tests.test_sort import run_measured

METADATA = ("app_metadata", "user_metadata")

# --- merging -----------------------------------------------------------------------------------

# RFC 7386 Appendix A, verbatim: (original, patch, result).
RFC_7386_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("original, patch, result", RFC_7386_EXAMPLES)
def test_merge_patch_rfc_7386_examples(original, patch, result):
    assert merge_patch(original, patch) == result


def test_merge_patch_leaves_its_arguments_alone():
    original = {"a": {"b": 1, "c": [1]}, "d": 2}
    patch = {"a": {"b": None, "e": {"f": 1}}}
    before = copy.deepcopy((original, patch))
    merged = merge_patch(original, patch)
    assert merged == {"a": {"c": [1], "e": {"f": 1}}, "d": 2}
    assert (original, patch) == before


def test_shallow_merge_is_first_level_only():
    original = {"prefs": {"lang": "en", "news": True}, "plan": "free", "x": 1}
    assert shallow_merge(original, {"prefs": {"theme": "dark"}, "x": None}) == {
        "prefs": {"theme": "dark"},
        "plan": "free",
    }


def test_same_json_tells_booleans_from_numbers():
    assert same_json({"a": [1, {"b": 2}]}, {"a": [1.0, {"b": 2}]})
    assert not same_json({"a": True}, {"a": 1})
    assert not same_json([0], [False])
    assert not same_json({"a": 1}, {"a": 1, "b": None})


# --- checking patches --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"user_metadata": {}}, '"email"'),
        ({"email": 5}, '"email"'),
        ({"email": "a@example.com", "user_id": "auth0|1"}, "'user_id' cannot be changed"),
        ({"email": "a@example.com", "blocked": True}, "'blocked' cannot be changed"),
        ({"email": "a@example.com", "phone_number": "+6421"}, "'phone_number' cannot be"),
        ({"email": "a@example.com", "username": "a"}, "'username' cannot be changed"),
        ({"email": "a@example.com", "password_hash": "$2b$"}, "'password_hash' cannot be"),
        ({"email": "a@example.com", "created_at": "2020"}, "read-only"),
        ({"email": "a@example.com", "Email": "a@example.com"}, "not a field"),
        ({"email": "a@example.com", "given_name": None}, "cannot remove given_name"),
        ({"email": "a@example.com", "given_name": ""}, "MIN_LENGTH"),
        ({"email": "a@example.com", "email_verified": "yes"}, "INVALID_TYPE"),
        ({"email": "a@example.com", "user_metadata": []}, "must be an object"),
        ({"email": "a@example.com", "app_metadata": {"email": "x"}}, "must not contain email"),
    ],
)
def test_bad_patches(patch, message):
    with pytest.raises(ValueError, match=None) as error:
        check_patch(patch)
    assert message in str(error.value)


def test_good_patch_keys_and_email_normalisation():
    patch = {
        "email": "  Jane.Doe@Example.COM ",
        "user_metadata": None,
        "app_metadata": {"plan": "pro", "email": None},  # deleting a forbidden key is fine
        "email_verified": True,
        "given_name": "Jane",
    }
    assert check_patch(patch) == "jane.doe@example.com"


def test_every_upsertable_field_is_accepted():
    values = {
        "email_verified": True,
        "app_metadata": {},
        "user_metadata": {},
        "custom_password_hash": {
            "algorithm": "md5",
            "hash": {"value": "5f4dcc3b5aa765d61d8327deb882cf99", "encoding": "hex"},
        },
    }
    for name in UPSERTABLE_FIELDS:
        check_patch({"email": "a@example.com", name: values.get(name, "text")})


@pytest.mark.parametrize(
    "text, message",
    [
        ("user_metadata.plan=gold", "not JSON"),
        ("blocked=true", "cannot be changed"),
        ('given_name.first="x"', "not an object"),
        ('email="x@example.com"', "cannot change"),
        ("user_metadata=[1]", "must be an object"),
        ('app_metadata.user_id="1"', "refuses"),
        ("user_metadata.plan", "expected PATH=JSON"),
        ("user_metadata..plan=1", "bad path"),
    ],
)
def test_bad_set(text, message):
    with pytest.raises(UsageError) as error:
        parse_set(text)
    assert message in str(error.value)


def test_unset_only_inside_metadata():
    assert parse_unset("user_metadata.preferences.language").path == (
        "user_metadata",
        "preferences",
        "language",
    )
    with pytest.raises(UsageError, match="cannot remove given_name"):
        parse_unset("given_name")


# --- the patch index ---------------------------------------------------------------------------


def fill(index: PatchIndex, lines: list[tuple[str, dict]]) -> None:
    for number, (key, patch) in enumerate(lines, 1):
        index.add(key, number, orjson.dumps(patch))
    index.seal()


@pytest.mark.parametrize("budget", [10**9, 600])
def test_index_in_memory_and_on_disk(tmp_path, budget):
    lines = [(f"u{n % 7}@example.com", {"n": n}) for n in range(40)]
    index = PatchIndex(memory_budget=budget, temp_dir=str(tmp_path))
    fill(index, lines)
    assert index.spilled == (budget < 10**9)
    found = index.match("u3@example.com")
    assert [orjson.loads(body)["n"] for _, body in found] == [n for n in range(40) if n % 7 == 3]
    assert index.match("nobody@example.com") == ()
    with pytest.raises(AlreadyMatched):
        index.match("u3@example.com")
    index.match("u5@example.com")
    unmatched = [orjson.loads(body)["n"] for _, body in index.unmatched()]
    assert unmatched == [n for n in range(40) if n % 7 not in (3, 5)]
    assert index.emails() == 7
    assert index.matched_patches == len([n for n in range(40) if n % 7 in (3, 5)])
    index.close()
    assert os.listdir(tmp_path) == []


# --- a realistic bulk edit, against a reference computed here ---------------------------------


def reference_merge(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2's pseudo-code, on deep copies."""
    if isinstance(patch, dict):
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for name, value in patch.items():
            if value is None:
                result.pop(name, None)
            else:
                result[name] = reference_merge(result.get(name), value)
        return result
    return copy.deepcopy(patch)


def reference_shallow(target: Any, patch: Any) -> Any:
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = copy.deepcopy(value)
    return result


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def expected_output(users: list[dict], patches: list[dict], merge) -> list[dict]:
    """For each user the patches change: email, email_verified, and the changed fields."""
    by_email: dict[str, list[dict]] = defaultdict(list)
    for patch in patches:
        by_email[patch["email"].strip().lower()].append(patch)
    out = []
    for user in users:
        current = {name: user.get(name) or {} for name in METADATA}
        new: dict[str, Any] = {}
        for patch in by_email.get(user["email"].lower(), []):
            for name, value in patch.items():
                if name == "email":
                    continue
                if name in METADATA:
                    base = new.get(name, current[name])
                    new[name] = {} if value is None else merge(base, value)
                else:
                    new[name] = value
        changed = {
            name: value
            for name, value in new.items()
            if canonical(value) != canonical(current.get(name, user.get(name)))
        }
        if changed:
            record = {"email": user["email"], "email_verified": user["email_verified"]}
            record.update(changed)
            out.append(record)
    return out


def realistic_patches(users: list[dict], rng: random.Random) -> tuple[list[dict], int]:
    """2000 patches: nested changes, null deletions, no-ops, odd case; 300 unknown emails."""
    patches = []
    for _ in range(1700):
        user = users[rng.randrange(len(users))]
        email = user["email"]
        style = rng.random()
        if style < 0.3:
            email = email.upper()
        elif style < 0.4:
            email = f"  {email.title()} "
        kind = rng.randrange(9)
        patch: dict[str, Any] = {"email": email}
        if kind == 0:
            patch["user_metadata"] = {"preferences": {"language": rng.choice(["fr", "de", "mi"])}}
        elif kind == 1:
            patch["user_metadata"] = {"country": None, "consent": {"marketing": True}}
        elif kind == 2:
            patch["app_metadata"] = {"roles": None, "flags": {"beta": True}}
        elif kind == 3:
            patch["app_metadata"] = {"billing": {"trial": None, "seats": 10}}
        elif kind == 4:
            patch["user_metadata"] = None
        elif kind == 5:
            patch["email_verified"] = not user["email_verified"]
        elif kind == 6:
            patch["given_name"] = "Renamed"
            patch["user_metadata"] = {"name": "Renamed"}
        elif kind == 7 and isinstance(user.get("app_metadata"), dict):
            patch["app_metadata"] = {"plan": user["app_metadata"].get("plan")}  # often a no-op
        else:
            patch["email_verified"] = user["email_verified"]  # a no-op
        patches.append(patch)
    unknown = 300
    for number in range(unknown):
        patches.append({"email": f"Unknown{number}@Nowhere.example", "user_metadata": {"a": 1}})
    rng.shuffle(patches)
    return patches, unknown


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    directory = tmp_path_factory.mktemp("realistic")
    users = list(generated_users(20_000, seed=3, hostile_rate=0.0))
    patches, unknown = realistic_patches(users, random.Random(5))
    (directory / "users.ndjson").write_bytes(ndjson(users))
    (directory / "changes.ndjson").write_bytes(ndjson(patches))
    return directory, users, patches, unknown


@pytest.mark.parametrize(
    "merge, reference, buffer_size",
    [
        ("deep", reference_merge, "64M"),
        ("deep", reference_merge, "20K"),  # the patch file goes to the on-disk index
        ("shallow", reference_shallow, "64M"),
    ],
)
def test_realistic_bulk_edit(realistic, merge, reference, buffer_size):
    directory, users, patches, unknown = realistic
    unmatched_file = directory / f"unmatched-{merge}-{buffer_size}.ndjson"
    result = run_ndpipe(
        "upsert-patch",
        "--patch",
        str(directory / "changes.ndjson"),
        "--merge",
        merge,
        "--buffer-size",
        buffer_size,
        "--unmatched",
        str(unmatched_file),
        input=(directory / "users.ndjson").read_bytes(),
        env={"TMPDIR": str(directory)},
    )
    assert result.returncode == 0, result.stderr
    output = records(result.stdout)
    expected = expected_output(users, patches, reference)
    assert len(expected) > 1000  # the case is not trivially small
    assert output == expected
    for record in output:
        assert check_user(record) == [], record
        assert set(record) <= UPSERTABLE_FIELDS | {"email"}
        assert type(record["email_verified"]) is bool
    # Patches for unknown emails: counted on stderr and listed in file order.
    assert records(unmatched_file.read_bytes()) == [
        p for p in patches if p["email"].startswith("Unknown")
    ]
    stderr = result.stderr.decode()
    emails = {p["email"].strip().lower() for p in patches}
    matched = {p["email"].strip().lower() for p in patches} - {
        p["email"].lower() for p in patches if p["email"].startswith("Unknown")
    }
    assert (
        f"{len(patches)} patches for {len(emails)} emails: {len(patches) - unknown} applied to "
        f"{len(matched)} users; {unknown} matched no user, written to {unmatched_file}"
    ) in stderr
    assert f"20000 users read: {len(expected)} changed" in stderr
    assert [name for name in os.listdir(directory) if name.startswith("ndpipe-")] == []


def test_realistic_bulk_edit_in_the_import_recipe(realistic, tmp_path):
    """The README recipe: the chunks hold exactly upsert-patch's records, each under 500 KB."""
    directory, users, patches, _ = realistic
    pipeline = (
        f"ndpipe upsert-patch --patch {directory / 'changes.ndjson'} < {directory / 'users.ndjson'}"
        " | ndpipe to-json-array --max-bytes 500000 --out 'up/users-{n:04d}.json'"
    )
    result = shell(pipeline, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    chunks = sorted((tmp_path / "up").iterdir())
    assert chunks
    chunked = [record for chunk in chunks for record in orjson.loads(chunk.read_bytes())]
    assert all(chunk.stat().st_size <= 500_000 for chunk in chunks)
    assert chunked == expected_output(users, patches, reference_merge)


# --- the CLI on small cases ----------------------------------------------------------------------


def user(email: str, **fields: Any) -> dict:
    base = {
        "user_id": "auth0|" + email.partition("@")[0],
        "email": email,
        "email_verified": True,
        "app_metadata": {"plan": "free"},
        "user_metadata": {"lang": "en"},
        "created_at": "2021-01-01T00:00:00.000Z",
    }
    base.update(fields)
    return {name: value for name, value in base.items() if value is not ...}


def patch_file(tmp_path: Path, patches: list[dict] | bytes) -> str:
    path = tmp_path / "changes.ndjson"
    path.write_bytes(patches if isinstance(patches, bytes) else ndjson(patches))
    return str(path)


def test_bad_patch_line_is_named_before_stdin_is_read(tmp_path):
    changes = patch_file(
        tmp_path,
        [
            {"email": "a@example.com", "user_metadata": {}},
            {"email": "b@example.com", "blocked": True},
        ],
    )
    result = run_ndpipe("upsert-patch", "--patch", changes, input=b"this is not json\n")
    assert result.returncode == 1
    assert result.stderr.decode().startswith(
        f"ndpipe upsert-patch: {changes}:2: bad patch: 'blocked' cannot be changed by an "
        "import upsert"
    )
    assert result.stdout == b""


def test_invalid_json_in_the_patch_file(tmp_path):
    changes = patch_file(tmp_path, b'{"email": "a@example.com"}\n{"email": \n')
    result = run_ndpipe("upsert-patch", "--patch", changes, input=b"")
    assert result.returncode == 1
    assert f"{changes}:2: invalid JSON".encode() in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--patch", "/nonexistent/changes.ndjson"], "does not exist"),
        ([], "nothing to do"),
        (
            ["--patch", str(FIXTURES / "upsert-patch" / "changes.ndjson"), "--where", "email"],
            "--where limits --set and --unset",
        ),
        (["--set", "user_metadata.plan=gold"], "not JSON"),
        (["--set", 'user_id="x"'], "cannot be changed"),
        (["--unset", "email_verified"], "cannot remove"),
        (["--set", "user_metadata.a=1", "--where", "a["], "bad --where"),
        (["--set", "user_metadata.a=1", "--buffer-size", "lots"], "bad size"),
    ],
)
def test_usage_errors(args, message):
    result = run_ndpipe("upsert-patch", *args, input=b"not json\n")
    assert result.returncode == 2, result.stderr
    assert message.encode() in result.stderr


def test_first_user_without_email_verified_stops_at_once():
    data = ndjson([{"email": "a@example.com", "given_name": "A"}, user("b@example.com")])
    result = run_ndpipe("upsert-patch", "--set", "user_metadata.x=1", input=data)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert stderr.startswith("ndpipe upsert-patch: stdin:1: the first user has no email_verified")
    assert "(nor app_metadata, user_metadata)" in stderr
    assert result.stdout == b""


def test_later_user_without_email_verified_is_left_out_and_reported():
    data = ndjson(
        [user("a@example.com"), user("b@example.com", email_verified=...), user("c@example.com")]
    )
    result = run_ndpipe("upsert-patch", "--set", "user_metadata.x=1", input=data)
    assert result.returncode == 1
    assert [r["email"] for r in records(result.stdout)] == ["a@example.com", "c@example.com"]
    assert b"input record 2 (b@example.com): no email_verified" in result.stderr
    assert b"1 user left out, exit status 1 (1 no email_verified)" in result.stderr


def test_a_patch_can_supply_a_missing_email_verified(tmp_path):
    changes = patch_file(tmp_path, [{"email": "a@example.com", "email_verified": True}])
    data = ndjson([user("a@example.com", email_verified=...)])
    result = run_ndpipe("upsert-patch", "--patch", changes, input=data)
    assert result.returncode == 0, result.stderr
    assert records(result.stdout) == [{"email": "a@example.com", "email_verified": True}]


def test_duplicate_users_for_a_patched_email_are_left_out(tmp_path):
    changes = patch_file(tmp_path, [{"email": "a@example.com", "user_metadata": {"x": 1}}])
    data = ndjson([user("a@example.com"), user("A@example.com", user_id="google-oauth2|1")])
    result = run_ndpipe("upsert-patch", "--patch", changes, input=data)
    assert result.returncode == 1
    assert records(result.stdout) == [
        {"email": "a@example.com", "email_verified": True, "user_metadata": {"lang": "en", "x": 1}}
    ]
    assert b"input record 2 (A@example.com): an earlier user has this email" in result.stderr


def test_missing_or_null_metadata_is_empty_and_a_field_no_user_has_is_flagged():
    some = ndjson([user("a@example.com", user_metadata=None), user("b@example.com")])
    result = run_ndpipe("upsert-patch", "--set", "user_metadata.x=1", input=some)
    assert result.returncode == 0
    assert records(result.stdout)[0]["user_metadata"] == {"x": 1}
    assert b"warning" not in result.stderr

    none = ndjson(
        [user("a@example.com", user_metadata=...), user("b@example.com", user_metadata=...)]
    )
    result = run_ndpipe("upsert-patch", "--set", "user_metadata.x=1", input=none)
    assert result.returncode == 0
    assert [r["user_metadata"] for r in records(result.stdout)] == [{"x": 1}, {"x": 1}]
    assert b"warning: no input user had user_metadata" in result.stderr


def test_set_unset_where_and_all():
    data = ndjson(
        [
            user("a@example.com", app_metadata={"plan": "pro", "tags": ["x"]}),
            user("b@example.com", user_metadata={"lang": "en", "old": {"deep": 1, "keep": 2}}),
            user("c@example.com", user_metadata={"lang": "de"}),
        ]
    )
    result = run_ndpipe(
        "upsert-patch",
        "--set",
        'app_metadata.plan="gold"',
        "--unset",
        "user_metadata.old.deep",
        "--set",
        "email_verified=false",
        "--where",
        "app_metadata.plan == 'free'",
        input=data,
    )
    assert result.returncode == 0, result.stderr
    assert records(result.stdout) == [
        {
            "email": "b@example.com",
            "email_verified": False,
            "app_metadata": {"plan": "gold"},
            "user_metadata": {"lang": "en", "old": {"keep": 2}},
        },
        {"email": "c@example.com", "email_verified": False, "app_metadata": {"plan": "gold"}},
    ]
    everyone = run_ndpipe("upsert-patch", "--all", "--set", 'user_metadata.lang="en"', input=data)
    assert [r["email"] for r in records(everyone.stdout)] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    first = records(everyone.stdout)[0]
    assert first == {
        "email": "a@example.com",
        "email_verified": True,
        "app_metadata": {"plan": "pro", "tags": ["x"]},
        "user_metadata": {"lang": "en"},
    }
    assert b"3 users read: 1 changed, 2 unchanged, written" in everyone.stderr


def test_where_limits_only_set_and_unset(tmp_path):
    changes = patch_file(tmp_path, [{"email": "a@example.com", "given_name": "Ann"}])
    data = ndjson([user("a@example.com"), user("b@example.com")])
    result = run_ndpipe(
        "upsert-patch",
        "--patch",
        changes,
        "--set",
        "user_metadata.x=1",
        "--where",
        "email == 'b@example.com'",
        input=data,
    )
    assert records(result.stdout) == [
        {"email": "a@example.com", "email_verified": True, "given_name": "Ann"},
        {"email": "b@example.com", "email_verified": True, "user_metadata": {"lang": "en", "x": 1}},
    ]


def test_unchanged_users_are_left_out(tmp_path):
    changes = patch_file(
        tmp_path,
        [
            {"email": "a@example.com", "app_metadata": {"plan": "free"}, "email_verified": True},
            {"email": "b@example.com", "user_metadata": {"gone": None}},
        ],
    )
    data = ndjson([user("a@example.com"), user("b@example.com")])
    result = run_ndpipe("upsert-patch", "--patch", changes, input=data)
    assert result.returncode == 0
    assert result.stdout == b""
    assert b"2 users read: 0 changed, 2 unchanged" in result.stderr


def test_records_the_import_refuses_are_left_out_and_listed(tmp_path):
    data = ndjson([user('a"b@x.com'), user("ok@example.com")])
    result = run_ndpipe("upsert-patch", "--set", "user_metadata.x=1", input=data)
    assert result.returncode == 1
    assert [r["email"] for r in records(result.stdout)] == ["ok@example.com"]
    assert b'input record 1 (a"b@x.com): FORMAT email' in result.stderr


def test_non_database_users_are_flagged():
    data = ndjson([user("a@example.com", user_id="google-oauth2|123"), user("b@example.com")])
    result = run_ndpipe("upsert-patch", "--set", "user_metadata.x=1", input=data)
    assert result.returncode == 0
    assert b"warning: 1 written user is not a database user" in result.stderr


def test_chained_with_then_gives_the_same_records(tmp_path):
    changes = str(FIXTURES / "upsert-patch" / "changes.ndjson")
    data = (FIXTURES / "users.ndjson").read_bytes()
    piped = run_ndpipe("upsert-patch", "--patch", changes, input=data)
    chained = run_ndpipe("upsert-patch", "--patch", changes, "then", "to-json-array", input=data)
    assert chained.returncode == 0, chained.stderr
    assert orjson.loads(chained.stdout) == records(piped.stdout)


CASES = sorted((FIXTURES / "upsert-patch").glob("*/cmd"))


def test_there_are_golden_cases():
    assert len(CASES) >= 4


@pytest.mark.parametrize("cmd", CASES, ids=lambda path: path.parent.name)
def test_golden(cmd: Path) -> None:
    result = shell(cmd.read_text().strip(), input=(FIXTURES / "users.ndjson").read_bytes())
    assert result.returncode == 0, result.stderr
    assert result.stdout == (cmd.parent / "out").read_bytes()
    for record in records(result.stdout):
        assert check_user(record) == []


# --- a 2M-line patch file in bounded memory -------------------------------------------------------

PATCH_LINES = 2_000_000
MEMORY_USERS = 50_000


def test_two_million_patches_in_bounded_memory(tmp_path):
    rng = random.Random(9)
    changes = tmp_path / "changes.ndjson"
    with open(changes, "wb") as out:
        dumps = orjson.dumps
        for start in range(0, PATCH_LINES, 10_000):
            out.write(
                b"".join(
                    dumps({"email": f"U{n % 1_200_000}@Example.com", "user_metadata": {"n": n}})
                    + b"\n"
                    for n in range(start, start + 10_000)
                )
            )
    users = tmp_path / "users.ndjson"
    picked = sorted(rng.sample(range(1_300_000), MEMORY_USERS))
    users.write_bytes(
        ndjson([user(f"u{n}@example.com", user_metadata={"keep": n}) for n in picked])
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    output = tmp_path / "out.ndjson"
    code, max_rss_mb, stderr = run_measured(
        ["upsert-patch", "--patch", str(changes)], users, output, {"TMPDIR": str(temp)}
    )
    assert code == 0, stderr
    print(f"upsert-patch: max RSS {max_rss_mb:.0f} MB with {PATCH_LINES} patch lines")
    assert max_rss_mb < 200, f"max RSS {max_rss_mb:.0f} MB"
    # Users below 1.2M have patches, applied in file order: the last one's n wins.
    written = {r["email"]: r["user_metadata"] for r in records(output.read_bytes())}
    expected = {}
    for n in picked:
        if n < 1_200_000:
            last = max(m for m in (n, n + 1_200_000) if m < PATCH_LINES)
            expected[f"u{n}@example.com"] = {"keep": n, "n": last}
    assert written == expected
    assert f"{PATCH_LINES} patches for 1200000 emails".encode() in stderr
    assert os.listdir(temp) == []
