"""select, filter, map and head: the pure ops, and the same behaviour through the CLI."""

from __future__ import annotations

import json

import pytest

from ndpipe.errors import RecordError, UsageError
from ndpipe.expr import compile_expression
from ndpipe.ops.filter import filter
from ndpipe.ops.head import head
from ndpipe.ops.map import map, parse_del, parse_rename, parse_set
from ndpipe.ops.select import (
    auth0_path_to_expression,
    check_fields,
    parse_field,
    select,
    split_name,
)
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe

USERS = records((FIXTURES / "users.ndjson").read_bytes())
JANE = {
    "email": "jane@example.com",
    "name": "Jane Doe",
    "user_metadata": {"name": "Jane Q. Doe", "country": "NZ"},
    "identities": [{"connection": "Username-Password-Authentication"}],
    "logins_count": 0,
}
BOB = {"email": "bob@example.com", "name": "Bob", "user_metadata": None}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email", (None, "email")),
        ("Email Address=email", ("Email Address", "email")),
        ("x=a==b", ("x", "a==b")),
        ("a==b", (None, "a==b")),
        ("a!=b", (None, "a!=b")),
        ("ok=a<=b", ("ok", "a<=b")),
        ("a>=b", (None, "a>=b")),
        ("n = name", ("n", "name")),
    ],
)
def test_split_name(text, expected):
    assert split_name(text) == expected


def test_select_names_nesting_and_fallbacks():
    fields = [
        parse_field(t)
        for t in ["email", "Name=user_metadata.name || name", "user_metadata.country"]
    ]
    assert list(select([JANE, BOB], fields=fields)) == [
        {"email": "jane@example.com", "Name": "Jane Q. Doe", "user_metadata": {"country": "NZ"}},
        {"email": "bob@example.com", "Name": "Bob", "user_metadata": {"country": None}},
    ]


def test_select_expression_text_is_the_key_for_other_bare_expressions():
    fields = [parse_field("identities[0].connection"), parse_field("length(identities)")]
    assert list(select([JANE], fields=fields)) == [
        {"identities[0].connection": "Username-Password-Authentication", "length(identities)": 1}
    ]


def test_select_equals_inside_the_expression():
    field = parse_field("identities[?connection=='a=b']")
    assert field.key == ("identities[?connection=='a=b']",)


@pytest.mark.parametrize(
    ("missing", "expected"), [("null", None), ("empty", ""), ("omit", "absent")]
)
def test_select_missing_modes(missing, expected):
    fields = [
        parse_field("email"),
        parse_field("Country=user_metadata.country"),
        parse_field("a.b"),
    ]
    (out,) = select([BOB], fields=fields, missing=missing)
    if expected == "absent":
        assert out == {"email": "bob@example.com"}
    else:
        assert out == {"email": "bob@example.com", "Country": expected, "a": {"b": expected}}


def test_select_zero_and_false_are_values_not_missing():
    (out,) = select(
        [{"n": 0, "f": False}], fields=[parse_field("n"), parse_field("f")], missing="omit"
    )
    assert out == {"n": 0, "f": False}


def test_select_rejects_colliding_keys():
    with pytest.raises(UsageError, match="both write"):
        check_fields([parse_field("email"), parse_field("email")])
    with pytest.raises(UsageError, match="both write 'user_metadata'"):
        check_fields([parse_field("user_metadata"), parse_field("user_metadata.name")])
    check_fields([parse_field("user_metadata.name"), parse_field("user_metadata.country")])


def test_auth0_field_names_become_jmespath():
    assert auth0_path_to_expression("identities[0].connection") == "identities[0].connection"
    assert auth0_path_to_expression("app_metadata.stripe-id[1]") == 'app_metadata."stripe-id"[1]'
    with pytest.raises(UsageError):
        auth0_path_to_expression("a..b")


def test_select_preset_matches_the_extension_columns():
    result = run_ndpipe("select", "--preset", "auth0-default", input=ndjson(USERS[:1]))
    (out,) = records(result.stdout)
    assert list(out) == [
        "Id", "Given Name", "Family Name", "Nickname", "Name", "Email", "Email Verified",
        "Picture", "Connection", "Created At", "Updated At",
    ]  # fmt: skip
    assert out["Connection"] == "Username-Password-Authentication"
    assert out["Id"] == USERS[0]["user_id"]


def test_select_fields_file(tmp_path):
    fields_file = tmp_path / "fields.json"
    fields_file.write_text(
        json.dumps([{"name": "email", "export_as": "Email"}, {"name": "user_metadata.country"}])
    )
    result = run_ndpipe("select", "--fields-file", str(fields_file), "Plan=app_metadata.plan",
                        input=ndjson(USERS[:1]))  # fmt: skip
    assert records(result.stdout) == [
        {"Email": USERS[0]["email"], "user_metadata": {"country": "NZ"}, "Plan": "free"}
    ]
    fields_file.write_text('{"name": "email"}')
    bad = run_ndpipe("select", "--fields-file", str(fields_file), input=b"x")
    assert bad.returncode == 2
    assert b"expected a JSON array" in bad.stderr


def test_select_without_fields_is_a_usage_error():
    result = run_ndpipe("select", input=b"{}")
    assert result.returncode == 2
    assert b"no fields given" in result.stderr


def test_filter_uses_jmespath_truthiness():
    rows = [{"v": value} for value in (0, 1, "", "x", [], [0], {}, {"a": 1}, None, False, True)]
    kept = list(filter(rows, expression=compile_expression("v")))
    assert [row["v"] for row in kept] == [0, 1, "x", [0], {"a": 1}, True]


def test_filter_cli():
    result = run_ndpipe("filter", 'app_metadata.plan == `"premium"` && logins_count > `50`',
                        input=ndjson(USERS))  # fmt: skip
    expected = [
        u for u in USERS
        if (u.get("app_metadata") or {}).get("plan") == "premium" and u["logins_count"] > 50
    ]  # fmt: skip
    assert expected and records(result.stdout) == expected


def test_map_applies_edits_in_order():
    edits = [
        parse_set('user_metadata.source=`"auth0"`'),
        parse_rename("email=contact.email"),
        parse_del("identities"),
        parse_set("n=logins_count"),
        parse_del("logins_count"),
    ]
    (out,) = map([dict(JANE, user_metadata=dict(JANE["user_metadata"]))], edits=edits)
    assert out == {
        "name": "Jane Doe",
        "user_metadata": {"name": "Jane Q. Doe", "country": "NZ", "source": "auth0"},
        "contact": {"email": "jane@example.com"},
        "n": 0,
    }


def test_map_creates_objects_for_null_and_refuses_scalars():
    (out,) = map([{"m": None}], edits=[parse_set("m.a.b=`1`")])
    assert out == {"m": {"a": {"b": 1}}}
    with pytest.raises(RecordError, match="m is not an object"):
        list(map([{"m": "text"}], edits=[parse_set("m.a=`1`")]))


def test_map_cli_keeps_option_order():
    data = ndjson([{"a": 1}])
    first = run_ndpipe("map", "--set", "b=a", "--del", "a", input=data)
    assert records(first.stdout) == [{"b": 1}]
    second = run_ndpipe("map", "--del", "a", "--set", "b=a", input=data)
    assert records(second.stdout) == [{"b": None}]
    bad = run_ndpipe("map", "--set", "novalue", input=data)
    assert bad.returncode == 2 and b"PATH=EXPR" in bad.stderr
    scalar = run_ndpipe("map", "--set", "a.b=`1`", input=data)
    assert scalar.returncode == 1
    assert scalar.stderr.startswith(b"ndpipe map: stdin:1: cannot set a.b: a is not an object")


def test_head_stops_pulling():
    pulled = []

    def source():
        for number in range(100):
            pulled.append(number)
            yield {"n": number}

    assert [r["n"] for r in head(source(), count=3)] == [0, 1, 2]
    assert len(pulled) == 3


def test_head_cli():
    result = run_ndpipe("head", "-n", "2", input=ndjson(USERS))
    assert records(result.stdout) == USERS[:2]
    assert records(run_ndpipe("head", input=ndjson(USERS)).stdout) == USERS[:10]
    assert run_ndpipe("head", "-n", "-1").returncode == 2
