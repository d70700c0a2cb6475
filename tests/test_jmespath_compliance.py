"""The JMESPath compiler against the official compliance suite and against jmespath itself.

Every case of ../shared/jmespath-compliance/*.json with a `result` or an `error` must come out of
`compile_expression` exactly as the suite says; on top of that the compiled function must agree
with jmespath's interpreter value for value and type for type (True is not 1, 1 is not 1.0), and
raise the same exception with the same message, there and on realistic Auth0 users and random
expressions over random data. The one difference allowed: what fails on every evaluation (an
unknown function, a wrong argument count or literal type) fails already in compile_expression.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jmespath import exceptions
from jmespath.visitor import _Expression

from bench.generate import users
from ndpipe.jmespath_compiler import LiteralNumberError, compile_expression

ROOT = Path(__file__).resolve().parent.parent
# A copy in fixtures/ wins; otherwise the shared reference copy next to the checkout.
SUITE = next(
    (
        path
        for path in (
            ROOT / "fixtures" / "jmespath-compliance",
            ROOT.parent / "shared" / "jmespath-compliance",
        )
        if path.is_dir()
    ),
    ROOT / "fixtures" / "jmespath-compliance",
)


def _load_cases() -> list[Any]:
    cases = []
    for path in sorted(SUITE.glob("*.json")):
        for group_number, group in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            for case_number, case in enumerate(group["cases"]):
                case_id = f"{path.stem}-{group_number}-{case_number}"
                cases.append(pytest.param(group["given"], case, id=case_id))
    return cases


CASES = _load_cases()
CHECKED_CASES = [case for case in CASES if {"result", "error"} & set(case.values[1])]
BENCH_ONLY_CASES = [case for case in CASES if case not in CHECKED_CASES]


def same_json(actual: Any, expected: Any) -> bool:
    """Equality as JSON means it: booleans are not numbers, and numbers compare by value."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return actual == expected
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(same_json(actual[key], expected[key]) for key in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same_json(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return type(actual) is type(expected) and actual == expected


def identical(actual: Any, expected: Any) -> bool:
    """Same types all the way down (int is not float, key order counts), and equal values."""
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, dict):
        return list(actual) == list(expected) and all(
            identical(actual[key], expected[key]) for key in expected
        )
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(
            identical(a, e) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(actual)
    if isinstance(expected, _Expression):
        # The same expression: equal AST nodes (compile_expression parses the text itself).
        return bool(actual.expression == expected.expression)
    return bool(actual == expected)


def outcome(evaluate: Any, value: Any) -> tuple[str, Any]:
    try:
        return "value", evaluate(value)
    except Exception as error:
        return "error", error


# What compile_expression refuses although jmespath compiles it: a call or literal that fails on
# every evaluation, which the interpreter raises (or, for a literal, turns into infinity) only
# when evaluation gets there. tests/test_expressions.py checks that these refusals are sound.
REFUSED_BEFORE_INPUT = (
    exceptions.UnknownFunctionError,
    exceptions.ArityError,
    exceptions.JMESPathTypeError,
    LiteralNumberError,
)


def assert_agrees(expression: str, value: Any) -> None:
    """The compiled expression gives what jmespath gives: the same value, or the same error.

    Except that what fails on every evaluation fails at compile time, whatever jmespath does
    with this value (a short circuit may skip the bad call there).
    """
    try:
        reference = jmespath.compile(expression)
    except Exception as error:
        with pytest.raises(type(error)) as raised:
            compile_expression(expression)
        assert str(raised.value) == str(error)
        return
    expected_kind, expected = outcome(reference.search, value)
    try:
        evaluate = compile_expression(expression)
    except REFUSED_BEFORE_INPUT:
        return
    # Whatever makes the interpreter raise these on some value is refused before any value.
    assert not isinstance(expected, (exceptions.UnknownFunctionError, exceptions.ArityError)), (
        expression,
        expected,
    )
    actual_kind, actual = outcome(evaluate, value)
    assert actual_kind == expected_kind, (expression, value, actual, expected)
    if expected_kind == "error":
        assert type(actual) is type(expected), (expression, value, actual, expected)
        assert str(actual) == str(expected), (expression, value)
    else:
        assert identical(actual, expected), (expression, value, actual, expected)


# Which exceptions each category of the suite stands for. ArityError is a ParseError in jmespath,
# so a syntax error is a ParseError that is not an ArityError.
def _is_category(error: BaseException, category: str) -> bool:
    if category == "syntax":
        return isinstance(error, exceptions.ParseError) and not isinstance(
            error, exceptions.ArityError
        )
    if category == "invalid-arity":
        return isinstance(error, exceptions.ArityError)
    if category == "invalid-type":
        return isinstance(error, exceptions.JMESPathTypeError)
    if category == "unknown-function":
        return isinstance(error, exceptions.UnknownFunctionError)
    if category == "invalid-value":
        return isinstance(error, ValueError) and not isinstance(error, exceptions.JMESPathError)
    raise AssertionError(f"unknown error category {category!r}")


@pytest.mark.parametrize(("given_value", "case"), CHECKED_CASES)
def test_compliance(given_value: Any, case: dict[str, Any]) -> None:
    expression = case["expression"]
    if "result" in case:
        actual = compile_expression(expression)(given_value)
        assert same_json(actual, case["result"]), (expression, actual, case["result"])
    else:
        category = case["error"]
        try:
            evaluate = compile_expression(expression)
        except Exception as error:
            assert _is_category(error, category), (expression, error)
        else:
            assert category != "syntax", f"{expression!r} compiled but is a syntax error"
            with pytest.raises(Exception) as raised:
                evaluate(given_value)
            assert _is_category(raised.value, category), (expression, raised.value)
    # And exactly what the interpreter does, types and messages included.
    assert_agrees(expression, given_value)


def test_suite_size() -> None:
    # The suite's README: 892 cases with a result or an error, 16 benchmarks without.
    assert len(CHECKED_CASES) == 892
    assert len(BENCH_ONLY_CASES) == 16


@pytest.mark.parametrize(("given_value", "case"), BENCH_ONLY_CASES)
def test_benchmark_expressions_agree(given_value: Any, case: dict[str, Any]) -> None:
    assert_agrees(case["expression"], given_value)


# --- realistic Auth0 users

AUTH0_EXPRESSIONS = [
    "email",
    "user_metadata.name",
    "user_metadata.preferences.language",
    "app_metadata.billing.trial.active",
    "identities[0].connection",
    "identities[-1].provider",
    "identities[0]",
    "identities[*].connection",
    "identities[].provider",
    "identities[?isSocial].user_id",
    "identities[?isSocial == `false`] | [0].connection",
    "{email: email, name: user_metadata.name || name}",
    "{email: email, verified: email_verified, logins: logins_count, c: user_metadata.country}",
    "[email, name, identities[0].connection]",
    "user_metadata.name || name || email",
    "user_metadata.name && name",
    "app_metadata.roles[?@ == 'admin']",
    "contains(app_metadata.roles, 'admin')",
    "contains(app_metadata.roles || `[]`, 'admin')",
    "length(identities)",
    "length(app_metadata.roles)",
    "logins_count > `10`",
    "logins_count >= `1` && email_verified",
    "`10` < logins_count",
    "logins_count < last_login",
    "!email_verified",
    "!logins_count",
    "email_verified == `true`",
    "logins_count == `1`",
    "logins_count != `0`",
    "starts_with(user_id, 'auth0|')",
    "ends_with(email, '@gmail.com')",
    "join(', ', app_metadata.roles)",
    "to_string(logins_count)",
    "to_number(user_metadata.country)",
    "not_null(user_metadata.name, name, email)",
    "type(app_metadata)",
    "keys(user_metadata)",
    "sort(keys(@))",
    "values(app_metadata.tenant)",
    "max_by(identities, &user_id).connection",
    "sort_by(identities, &connection)[0].provider",
    "map(&connection, identities)",
    "merge(app_metadata, user_metadata)",
    "sum(app_metadata.billing.*.seats || `[]`)",
    "app_metadata.*",
    "*.name",
    "app_metadata.deep.a.b.c[]",
    "app_metadata.deep.a.b.c[?d]",
    "identities[0:1].connection",
    "name | length(@)",
    "@",
    "avg([logins_count, `1`])",
    "abs(logins_count)",
    "reverse(email)",
]


@pytest.fixture(scope="module")
def auth0_users() -> list[dict[str, Any]]:
    # A high hostile rate puts nulls, missing fields and odd strings in many records.
    return list(users(400, seed=7, hostile_rate=0.3))


@pytest.mark.parametrize("expression", AUTH0_EXPRESSIONS)
def test_auth0_users_agree(expression: str, auth0_users: list[dict[str, Any]]) -> None:
    for user in auth0_users:
        assert_agrees(expression, user)


def test_auth0_select_example() -> None:
    search = compile_expression("{email: email, name: user_metadata.name || name}")
    record = {"email": "jane@example.com", "name": "Jane", "user_metadata": {"name": ""}}
    assert search(record) == {"email": "jane@example.com", "name": "Jane"}
    record["user_metadata"] = {"name": "Jane Q. Doe"}
    assert search(record) == {"email": "jane@example.com", "name": "Jane Q. Doe"}
    assert search(None) is None


def test_function_type_error_is_jmespaths() -> None:
    search = compile_expression("length(logins_count)")
    with pytest.raises(exceptions.JMESPathTypeError) as raised:
        search({"logins_count": 3})
    assert "length()" in str(raised.value)
    assert search({"logins_count": "abc"}) == 3


def test_values_jmespath_treats_specially() -> None:
    # Not only the plain JSON types: subclasses and Decimal go down the interpreter's own paths.
    ordered = OrderedDict([("a", Decimal("0")), ("b", [])])
    for expression in [
        "a",
        "a || b",
        "!a",
        "a == `0`",
        "a < `1`",
        "length(@)",
        "abs(a)",
        "keys(@)",
        "*",
        "b[0]",
        "[a, b]",
        "{x: a}",
    ]:
        assert_agrees(expression, ordered)
        assert_agrees(expression, {"a": Decimal("2.5"), "b": ordered})


# --- every specialised shape against edge-case values

EDGE_VALUES = [
    None,
    True,
    False,
    0,
    1,
    0.0,
    1.0,
    -1,
    2.5,
    "",
    "a",
    [],
    [None],
    [0, False, ""],
    [1, 2, 3],
    [[1], 2, [3, [4]], None],
    {},
    {"a": None},
    {"a": []},
    {"a": [None]},
    {"a": [{}]},
    {"a": [{"b": 1}, {"b": None}, {"c": 2}]},
    {"a": [{"b": "x"}, {"b": "y"}]},
    {"a": {"b": {"c": {"d": 1}}}},
    {"a": {"b": ""}, "c": 0},
    {"a": {"b": False}, "c": []},
    {"a": {"b": 0}, "c": {}},
    {"a": "s", "c": "t"},
    {"a": [1, "x"]},
    {"a": [["x"], ["y", "z"]]},
    {"a": Decimal("0"), "c": Decimal("1.5")},
    OrderedDict(a=OrderedDict(b=1)),
    {"a": OrderedDict(b=[OrderedDict(b=2, c=3)]), "c": OrderedDict()},
    {"a": [OrderedDict(b="x")], "c": [OrderedDict()]},
]

EDGE_EXPRESSIONS = [
    "a",
    "a.b",
    "a.b.c",
    "a.b.c.d",
    "a[0]",
    "a[1]",
    "a[-1]",
    "a[-3]",
    "a[0].b",
    "a[-1].b",
    "a[2].b",
    "a[0].b.c",
    "a[0][0]",
    "a.b[0]",
    "[0]",
    "[-1].b",
    "a | b",
    "a | [0]",
    "a || c",
    "a.b || c",
    "a.b || c.d || `1`",
    "a.b || a.c",
    "a[0] || c",
    "a && c",
    "a.b && c",
    "!a",
    "!a.b",
    "a == `0`",
    "a == `1`",
    "a == `false`",
    "a == `true`",
    "a == `null`",
    "a == 'a'",
    "`0` == a",
    "a != `1`",
    "a == c",
    "a != c",
    "a < `1`",
    "a <= `0`",
    "a > `-1`",
    "a >= 'a'",
    "a > `null`",
    "`1` > a",
    "a > c",
    "{x: a, y: a.b || c, z: c}",
    "{x: a}",
    "{x: a.b, y: a[0]}",
    "[a, c]",
    "[a]",
    "[a, c, a.b]",
    "a[*]",
    "a[*].b",
    "[*].b",
    "a[]",
    "a[].b",
    "[]",
    "a.*",
    "*",
    "*.b",
    "a[?b]",
    "a[?@]",
    "[?@]",
    "a[?!b]",
    "a[?b == `1`]",
    "a[?b == 'x'].b",
    "a[?b > `0` || c]",
    "a[?b && c]",
    "a[1:]",
    "a[::-1]",
    "a[:1].b",
    "length(a)",
    "length(@)",
    "contains(a, `1`)",
    "contains(a, 'x')",
    "starts_with(a, 's')",
    "join(',', a)",
    "sort_by(a, &b)",
    "min_by(a, &b)",
    "max_by(a, &@)",
    "map(&b, a)",
    "map(&@, @)",
    "sort(a)",
    "max(a)",
    "sum(a)",
    "avg(@)",
    "to_string(a)",
    "to_number(a)",
    "to_array(a)",
    "type(a)",
    "keys(a)",
    "values(@)",
    "merge(a, c)",
    "not_null(a.b, c)",
    "abs(a)",
    "reverse(a)",
    "&a",
]


@pytest.mark.parametrize("expression", EDGE_EXPRESSIONS)
def test_edge_values_agree(expression: str) -> None:
    for value in EDGE_VALUES:
        assert_agrees(expression, value)


# --- random expressions over random data

FIELDS = ["a", "b", "c"]
LITERALS = [
    "`0`",
    "`1`",
    "`2.5`",
    "`-1`",
    "`true`",
    "`false`",
    "`null`",
    "`[]`",
    "`{}`",
    "'a'",
    "''",
    '`"b"`',
    "`[1, true]`",
]
UNARY_FUNCTIONS = [
    "length",
    "abs",
    "avg",
    "ceil",
    "floor",
    "keys",
    "values",
    "max",
    "min",
    "reverse",
    "sort",
    "sum",
    "to_array",
    "to_number",
    "to_string",
    "type",
    "not_null",
]
BINARY_FUNCTIONS = ["contains", "starts_with", "ends_with", "join", "merge", "not_null"]
BY_FUNCTIONS = ["sort_by", "min_by", "max_by"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, -1, 2, 0.0, 1.0, 2.5])
    | st.sampled_from(["", "a", "b", "ab", "0"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS), children, max_size=3)
    ),
    max_leaves=12,
)


def _combine(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(parts, parts)
    return st.one_of(
        st.builds(lambda x, y: f"({x}).{y}", parts, st.sampled_from(FIELDS)),
        st.builds(lambda x, i: f"({x})[{i}]", parts, st.sampled_from([0, 1, -1])),
        st.builds(lambda x, s: f"({x})[{s}]", parts, st.sampled_from(["1:", ":2", "::-1", "::0"])),
        st.builds(lambda xy: f"({xy[0]})[*].{FIELDS[0]} || ({xy[1]})", pair),
        st.builds(lambda x, y: f"({x})[*].{y}", parts, st.sampled_from(FIELDS)),
        st.builds(lambda x: f"({x})[]", parts),
        st.builds(lambda x: f"({x}).*", parts),
        st.builds(lambda xy: f"({xy[0]})[?{xy[1]}]", pair),
        st.builds(lambda xy: f"({xy[0]}) || ({xy[1]})", pair),
        st.builds(lambda xy: f"({xy[0]}) && ({xy[1]})", pair),
        st.builds(lambda x: f"!({x})", parts),
        st.builds(
            lambda xy, op: f"({xy[0]}) {op} ({xy[1]})",
            pair,
            st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        ),
        st.builds(lambda xy: f"[{xy[0]}, {xy[1]}]", pair),
        st.builds(lambda xy: f"{{x: {xy[0]}, y: {xy[1]}}}", pair),
        st.builds(lambda xy: f"({xy[0]}) | ({xy[1]})", pair),
        st.builds(lambda f, x: f"{f}({x})", st.sampled_from(UNARY_FUNCTIONS), parts),
        st.builds(lambda f, xy: f"{f}({xy[0]}, {xy[1]})", st.sampled_from(BINARY_FUNCTIONS), pair),
        st.builds(lambda f, xy: f"{f}({xy[0]}, &{xy[1]})", st.sampled_from(BY_FUNCTIONS), pair),
        st.builds(lambda xy: f"map(&{xy[1]}, {xy[0]})", pair),
    )


expressions = st.recursive(
    st.sampled_from([*FIELDS, "@", *LITERALS]),
    _combine,
    max_leaves=6,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=expressions, value=json_values)
def test_random_expressions_agree(expression: str, value: Any) -> None:
    assert_agrees(expression, value)
