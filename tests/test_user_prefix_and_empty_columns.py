"""The extension's `user.` expressions as written, and fields that no record sets, reported."""

from __future__ import annotations

import jmespath
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ndpipe.expr import compile_expression, strip_user_prefix
from ndpipe.ops.csv import Dropped, csv
from ndpipe.ops.select import Unset, parse_field, select, suggest, unset_fields, watching
from tests.conftest import ndjson, records, run_ndpipe

JANE = {
    "email": "jane@example.com",
    "name": "Jane Doe",
    "user_metadata": {"name": "Jane Q. Doe"},
    "identities": [{"connection": "Username-Password-Authentication"}],
    "logins_count": 0,
}
BOB = {"email": "bob@example.com", "name": "Bob", "user_metadata": {}, "identities": []}


# --- user. means the record when it has no `user` field


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user.email", "jane@example.com"),
        ("user.user_metadata.name || user.name", "Jane Q. Doe"),
        ("user.identities[0].connection", "Username-Password-Authentication"),
        ("user.identities[*].connection", ["Username-Password-Authentication"]),
        ("{mail: user.email, n: user.logins_count}", {"mail": "jane@example.com", "n": 0}),
        ("length(user.identities)", 1),
        ("user.logins_count == `0` && user.email", "jane@example.com"),
        ("user", None),  # only a path that goes on from `user.` is rewritten
    ],
)
def test_user_prefix_reads_the_record_without_a_user_field(text, expected):
    assert compile_expression(text).search(JANE) == expected


def test_a_record_with_a_user_field_keeps_jmespath_meaning():
    wrapped = {"user": {"email": "inner@example.com"}, "email": "outer@example.com"}
    assert compile_expression("user.email").search(wrapped) == "inner@example.com"
    assert compile_expression("user.name").search(wrapped) is None
    # A null `user` is no user: the record itself is read.
    assert compile_expression("user.email").search({"user": None, "email": "a@x"}) == "a@x"


def test_paths_not_at_the_root_are_left_alone():
    for text in ("items[?user.x]", "a | user.x", "map(&user.x, a)", "a[*].user.x", "a.user.x"):
        tree = jmespath.compile(text).parsed
        assert strip_user_prefix(tree) == tree
    record = {"a": [{"user": {"x": 1}}, {"x": 2}]}
    assert compile_expression("a[?user.x]").search(record) == [{"user": {"x": 1}}]


def test_an_expression_without_user_is_compiled_as_before():
    expression = compile_expression("user_metadata.name || name")
    assert expression.search.__name__ != "either"


def test_every_expression_verb_takes_the_prefix():
    data = ndjson([JANE, BOB])
    selected = run_ndpipe(
        "select", "Name=user.user_metadata.name || user.name", "email", input=data
    )
    assert selected.returncode == 0, selected.stderr
    assert records(selected.stdout) == [
        {"Name": "Jane Q. Doe", "email": "jane@example.com"},
        {"Name": "Bob", "email": "bob@example.com"},
    ]
    assert selected.stderr == b""
    filtered = run_ndpipe("filter", "user.logins_count == `0`", input=data)
    assert records(filtered.stdout) == [JANE]
    mapped = run_ndpipe("map", "--set", "mail=user.email", input=ndjson([BOB]))
    assert records(mapped.stdout)[0]["mail"] == "bob@example.com"
    ordered = run_ndpipe("sort", "-k", "user.name", input=data)
    assert [r["name"] for r in records(ordered.stdout)] == ["Bob", "Jane Doe"]
    assert ordered.stderr == b""
    deduped = run_ndpipe("dedupe", "-k", "user.user_metadata", input=ndjson([BOB, BOB, JANE]))
    assert len(records(deduped.stdout)) == 2


def test_the_readme_number_fallback():
    fallback = compile_expression("(logins_count != `0` && logins_count) || `5`")
    assert fallback.search({"logins_count": 0}) == 5
    assert fallback.search({"logins_count": 3}) == 3
    assert fallback.search({}) == 5
    assert compile_expression("logins_count || `5`").search({"logins_count": 0}) == 0


_names = st.sampled_from(["email", "name", "user_metadata", "identities", "a", "b"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=3)
    ),
    max_leaves=8,
)
_records = st.dictionaries(_names, _values, max_size=5)
# `U.` stands for the prefix. (`!user.email` is `(!user).email` in JMESPath, so no path.)
_templates = st.sampled_from(
    [
        "U.name",
        "U.user_metadata.name || U.name",
        "U.identities[0].connection",
        "U.identities[*].a",
        "U.a == U.b",
        "!(U.email)",
        "[U.a, U.b]",
        "{x: U.a}",
        "U.a | b",
        "U.a[?b]",
        "U.b[0]",
        "length(U.a || 'x') > `1` && U.b",
    ]
)


@given(record=_records, template=_templates)
def test_user_prefixed_and_plain_agree_without_a_user_field(record, template):
    assert "user" not in record
    plain = compile_expression(template.replace("U.", ""))
    prefixed = compile_expression(template.replace("U.", "user."))
    try:
        expected = plain.search(record)
    except Exception as error:  # the same failure, then
        with pytest.raises(type(error)):
            prefixed.search(record)
        return
    assert prefixed.search(record) == expected


# --- fields no record sets


def test_suggest():
    seen = ["email", "name", "user_metadata", "user_metadata.name", "user.email"]
    assert suggest("Email", seen) == "email"
    assert suggest("nickname", seen) is None
    assert suggest("user_metadata.nme", seen) == "user_metadata.name"
    assert suggest("given_name", ["user_metadata", "user_metadata.given_name"]) == (
        "user_metadata.given_name"
    )
    assert suggest("email", ["user", "user.email"]) == "user.email"
    assert suggest("user.mail", ["mail"]) == "mail"
    assert suggest("x", []) is None


def test_select_op_notes_fields_and_stops_checking():
    fields = [parse_field(text) for text in ["email", "Email", "N=user_metadata.nme"]]
    unset = unset_fields(fields)
    out = list(select([JANE, BOB], fields=fields, unset=unset))
    assert out[0] == {"email": "jane@example.com", "Email": None, "N": None}
    assert list(unset.pending) == ["Email", "N"]
    assert unset.records == 2
    assert unset.messages("field") == [
        "field 'Email' is missing or null in all 2 records; did you mean 'email'?",
        "field 'N' (user_metadata.nme) is missing or null in all 2 records; "
        "did you mean 'user_metadata.name'?",
    ]
    # Every field set by the first record: the rest of the stream goes by the fast loop.
    unset = unset_fields([parse_field("email")])
    list(select([JANE, BOB, BOB], fields=[parse_field("email")], unset=unset))
    assert unset.records == 1 and not unset.pending and unset.messages("field") == []


@pytest.mark.parametrize("missing", ["null", "omit", "empty"])
def test_select_output_is_the_same_with_and_without_the_check(missing):
    fields = [parse_field(t) for t in ["email", "Nick=nickname", "user_metadata.name"]]
    data = [BOB, JANE, BOB]
    assert list(select(data, fields=fields, missing=missing, unset=unset_fields(fields))) == list(
        select(data, fields=fields, missing=missing)
    )


def test_no_records_no_message():
    assert Unset({"a": "a"}).messages("field") == []


def test_watching_passes_records_through():
    unset = Unset({"email": "email", "Email": "Email"})
    keys = [("email", compile_expression("email")), ("Email", compile_expression("Email"))]
    assert list(watching([JANE, BOB], keys, unset)) == [JANE, BOB]
    assert list(unset.pending) == ["Email"]


def test_select_cli_warns_and_strict_fails():
    data = ndjson([JANE, BOB])
    result = run_ndpipe("select", "Email", "name", input=data)
    assert result.returncode == 0
    assert records(result.stdout) == [
        {"Email": None, "name": "Jane Doe"},
        {"Email": None, "name": "Bob"},
    ]
    assert result.stderr == (
        b"ndpipe select: field 'Email' is missing or null in all 2 records; did you mean 'email'?\n"
    )
    strict = run_ndpipe("select", "--strict", "Email", input=data)
    assert strict.returncode == 1
    assert len(records(strict.stdout)) == 2
    assert b"field 'Email' is missing or null" in strict.stderr
    fine = run_ndpipe("select", "--strict", "email", input=data)
    assert fine.returncode == 0 and fine.stderr == b""
    empty = run_ndpipe("select", "--strict", "Email", input=b"")
    assert empty.returncode == 0 and empty.stderr == b""


def test_a_field_null_in_some_records_only_is_fine():
    result = run_ndpipe("select", "--strict", "logins_count", input=ndjson([BOB, JANE]))
    assert result.returncode == 0 and result.stderr == b""


def test_wrapped_records_suggest_the_prefix():
    result = run_ndpipe("select", "email", input=ndjson([{"user": {"email": "a@x"}}]))
    assert b"did you mean 'user.email'?" in result.stderr


def test_csv_columns_null_everywhere_are_reported_and_strict_fails():
    data = [{"email": "a@x", "Name": None}, {"email": "b@x", "Name": None}]
    dropped = Dropped()
    lines = list(csv(data, columns=["Email", "Name", "email"], dropped=dropped))
    assert lines[0] == "Email,Name,email"
    assert dropped.unseen == ["Email", "Name"]
    assert dropped.unseen_message() == (
        "no record has the column(s) Email, Name (missing or null in all 2 records); "
        "left empty; did you mean 'email' for 'Email'?"
    )
    result = run_ndpipe(
        "csv", "--strict", "--columns", "Email,email", input=ndjson([{"email": "a"}])
    )
    assert result.returncode == 1
    assert result.stdout == b"Email,email\n,a\n"
    assert b"did you mean 'email' for 'Email'?" in result.stderr


def test_sort_and_dedupe_name_an_empty_key():
    data = ndjson([JANE, BOB])
    result = run_ndpipe("sort", "-k", "Email", input=data)
    assert result.returncode == 0
    assert result.stderr == (
        b"ndpipe sort: key 'Email' is missing or null in all 2 records; did you mean 'email'?\n"
    )
    result = run_ndpipe("dedupe", "-k", "given_name", input=data)
    assert b"key 'given_name' is missing or null in all 2 records" in result.stderr
    result = run_ndpipe("dedupe", "-k", "email", input=data)
    assert b"missing or null" not in result.stderr


@pytest.mark.parametrize("texts", [["a", "b", "c"], ["a", "b || `null`", "c"]])
def test_fields_set_by_the_same_record_are_all_noted(texts):
    fields = [parse_field(text) for text in texts]
    unset = unset_fields(fields)
    data = [{"a": None, "b": None}, {"a": 1, "b": 2}, {"a": 3}]
    assert list(select(data, fields=fields, unset=unset)) == list(select(data, fields=fields))
    assert list(unset.pending) == ["c"]
    assert unset.records == 3
