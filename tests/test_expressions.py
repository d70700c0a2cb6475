"""JMESPath expressions: what fails on every record fails before input is read, and no number
comes out that JSON cannot carry.

Three parts: the real CLI refusing bad expressions with exit 2 before touching stdin; the checks
behind that being sound (what they refuse, jmespath's interpreter raises whenever it gets to it);
and the numeric functions against references written from the JMESPath specification, on huge
integers, extreme floats, -0.0 and other hostile values.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jmespath import exceptions
from jmespath.functions import Functions

from ndpipe.errors import UsageError
from ndpipe.expr import EvaluationError, compile_expression
from ndpipe.jmespath_compiler import LiteralNumberError, NumberRangeError
from ndpipe.jmespath_compiler import compile_expression as compile_closures

ROOT = Path(__file__).resolve().parent.parent
NDPIPE = ROOT / "bin" / "ndpipe"
LARGEST_FLOAT = sys.float_info.max
# The range of numbers ndpipe reads and writes: a double's, with ints exact within it.
LARGEST = Fraction(LARGEST_FLOAT)
LARGEST_INT = int(LARGEST_FLOAT)
HUGE = 2**64 + 1  # beyond 64 bits: orjson alone would not read it exactly


def ndpipe(
    *args: str, stdin: Any = subprocess.DEVNULL, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run bin/ndpipe ARGS, reading `input` through a pipe, or else `stdin` (by default none)."""
    if input is not None:
        stdin = None
    return subprocess.run(
        [str(NDPIPE), *args], stdin=stdin, input=input, capture_output=True, timeout=60, cwd=ROOT
    )


def search(expression: str, value: Any) -> Any:
    return compile_closures(expression)(value)


# --- the CLI: a bad expression exits 2 before stdin is read

# (arguments, the bad expression as the error shows it, the column the caret points at)
BAD_EXPRESSIONS = [
    (["select", "x=nosuch(email)"], "nosuch(email)", 1),
    (["select", "email", "x=length(a, b)"], "length(a, b)", 1),
    (["select", "x=join(',')"], "join(',')", 1),
    (["select", "x=a || not_null()"], "a || not_null()", 6),
    (["select", "x=merge()"], "merge()", 1),
    (["select", "x=user_metadata.nosuch(@)"], "user_metadata.nosuch(@)", 15),
    (["select", "x=map(&nosuch(@), a)"], "map(&nosuch(@), a)", 6),
    (["select", "x=ceil(`1e400`)"], "ceil(`1e400`)", 6),
    (["select", "x=`-1e400`"], "`-1e400`", 1),
    (["select", "x=a[?b > `[1, NaN]`]"], "a[?b > `[1, NaN]`]", 8),
    (["select", "x=length(`1`)"], "length(`1`)", 1),
    (["select", "x=join(',', `\"x\"`)"], "join(',', `\"x\"`)", 1),
    (["select", "x=sort_by(a, b) || abs(&c)"], "sort_by(a, b) || abs(&c)", 18),
    (["filter", "nosuch(email)"], "nosuch(email)", 1),
    (["filter", "email && length(a, b) > `1`"], "email && length(a, b) > `1`", 10),
    (["sort", "-k", "to_number(a, b)"], "to_number(a, b)", 1),
    (["dedupe", "-k", "email", "-k", "lower(email)"], "lower(email)", 1),
    (["map", "--set", "n=sum(`[1e400]`)"], "sum(`[1e400]`)", 5),
    (["upsert-patch", "--set", 'app_metadata.plan="pro"', "--where", "nosuch(a)"], "nosuch(a)", 1),
    (["fetch", "then", "select", "x=nosuch(email)"], "nosuch(email)", 1),
]


@pytest.mark.parametrize(("args", "shown", "column"), BAD_EXPRESSIONS)
def test_bad_expression_exits_2_before_reading(
    args: list[str], shown: str, column: int, tmp_path: Path
) -> None:
    # Input that would fail if it were read, given as a file, so that its offset afterwards
    # says whether any of it was read.
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not json\n" * 1000)
    with garbage.open("rb") as stdin:
        result = ndpipe(*args, stdin=stdin)
        assert os.lseek(stdin.fileno(), 0, os.SEEK_CUR) == 0, "stdin was read"
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert f"at column {column}" in stderr
    lines = stderr.splitlines()
    shown_at = lines.index(f"  {shown}")
    assert lines[shown_at + 1] == "  " + " " * (column - 1) + "^"
    empty = ndpipe(*args)
    assert (empty.returncode, empty.stdout, empty.stderr) == (2, b"", result.stderr)


def test_bad_expression_messages_say_what_is_wrong() -> None:
    messages = {
        "x=nosuch(email)": "Unknown function: nosuch()",
        "x=length(a, b)": "Expected 1 argument for function length(), received 2",
        "x=not_null()": "Expected at least 1 argument for function not_null(), received 0",
        "x=ceil(`1e400`)": "number out of range in literal",
        "x=`NaN`": "NaN in literal is not a JSON number",
        "x=`-Infinity`": "Infinity in literal is not a JSON number",
        "x=abs(&a)": "In function abs(), invalid type for value: &a, expected one of: "
        "['number'], received: \"expref\"",
    }
    for field, message in messages.items():
        result = ndpipe("select", field)
        assert result.returncode == 2
        assert message in result.stderr.decode(), (field, result.stderr)


@pytest.mark.parametrize(
    "expression",
    [
        "not_null(a, b, c, `1`)",
        "merge(a, b, c)",
        "a || length(b)",
        "to_number('1')",
        "sort_by(a, &b)",
        "map(&to_number(@), a)",
        "`1e308` > a",
        "`-0.0`",
        "`18446744073709551617`",
    ],
)
def test_good_expressions_run_on_empty_input(expression: str) -> None:
    result = ndpipe("select", f"x={expression}")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


SUM_OF_LARGEST = b'{"a":[%d,%d]}' % (LARGEST_INT, LARGEST_INT)


@pytest.mark.parametrize(
    ("field", "good_record", "expected", "bad_record"),
    [
        ("x=sum(a)", b'{"a":[1e308,1e308,-1e308]}', 1e308, b'{"a":[1e308,1e308]}'),
        ("x=sum(a)", b'{"a":[1.5e308]}', 1.5e308, b'{"a":[1e308,1e308,1.5e308]}'),
        ("x=sum(a)", b'{"a":[%d,-1]}' % LARGEST_INT, LARGEST_INT - 1, SUM_OF_LARGEST),
    ],
)
def test_numbers_out_of_range_fail_per_record(
    field: str, good_record: bytes, expected: Any, bad_record: bytes
) -> None:
    data = good_record + b"\n" + bad_record + b"\n"
    result = ndpipe("select", field, input=data)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {"x": expected}
    stderr = result.stderr.decode()
    expression = field.removeprefix("x=")
    assert stderr.startswith(f"ndpipe select: stdin:2: expression '{expression}' failed: "), stderr
    assert "result is out of range" in stderr and "Traceback" not in stderr
    skipped = ndpipe("select", field, "--on-error", "skip", input=data)
    assert skipped.returncode == 0 and json.loads(skipped.stdout) == {"x": expected}


def test_big_numbers_stay_exact_through_the_cli() -> None:
    record = {
        "a": [HUGE, 1],
        "s": str(HUGE),
        "f": 1e308,
        "z": -0.0,
        "t": "1e400",
    }
    data = json.dumps(record).encode() + b"\n"
    fields = [
        "sum=sum(a)",
        "max=max(a)",
        "number=to_number(s)",
        "text=to_string(a[0])",
        "ceil=ceil(f)",
        "floor=floor(a[0])",
        "abs=abs(z)",
        "bigger=a[0] > `18446744073709551616.0`",
        "infinite=to_number(t)",
        "sorted=sort_by(map(&{n: @}, a), &n)[*].n",
    ]
    result = ndpipe("select", *fields, input=data)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "sum": HUGE + 1,
        "max": HUGE,
        "number": HUGE,
        "text": str(HUGE),
        "ceil": int(1e308),
        "floor": HUGE,
        "abs": 0.0,
        "bigger": True,
        "infinite": None,
        "sorted": [1, HUGE],
    }


# --- expr.compile_expression: the usage error names the expression and the column


def test_usage_error_has_column_and_caret() -> None:
    with pytest.raises(UsageError) as raised:
        compile_expression("a || nosuch(b)", "key")
    assert str(raised.value) == (
        "bad key 'a || nosuch(b)': Unknown function: nosuch() at column 6\n"
        "  a || nosuch(b)\n"
        "       ^"
    )


def test_leftmost_problem_is_reported() -> None:
    with pytest.raises(UsageError) as raised:
        compile_expression("[length(`1`), nosuch(a), ceil(`1e400`)]")
    assert "length()" in str(raised.value) and "column 2" in str(raised.value)
    with pytest.raises(UsageError) as raised:
        compile_expression("a[?x == `1e400`].nosuch(@)")
    assert "number out of range" in str(raised.value)


@pytest.mark.filterwarnings("ignore:deprecated string literal syntax")
def test_literal_numbers_beyond_a_double_are_refused() -> None:
    for literal in ["1e400", "-1e400", str(2**1024), '[1, {"a": 1e309}]', "1" * 5000]:
        with pytest.raises(LiteralNumberError, match="out of range"):
            compile_closures(f"a == `{literal}`")
    # (jmespath would read the last one as a string: JSON refuses so many digits, and a literal
    # that is not JSON is a deprecated string literal.) At the edge of the range, and as strings,
    # they are fine.
    assert compile_closures(f"`{LARGEST_INT}`")(None) == LARGEST_INT
    assert compile_closures(f"`{-LARGEST_INT}`")(None) == -LARGEST_INT
    assert compile_closures("`1e308`")(None) == 1e308
    assert compile_closures('`"1e400"`')(None) == "1e400"
    assert compile_closures("'1e400'")(None) == "1e400"


def test_failure_message_of_a_huge_value_is_cut_short() -> None:
    expression = compile_expression("abs(a)")
    with pytest.raises(EvaluationError) as raised:
        expression.search({"a": "x" * 10_000_000})
    message = str(expression.failed(raised.value))
    assert len(message) < 600 and message.endswith("…")


# --- the checks are sound: what they refuse, the interpreter raises whenever it gets there

FUNCTION_NAMES = sorted(Functions.FUNCTION_TABLE)
ARGUMENT_LITERALS = [
    "`1`",
    "`-2.5`",
    "'a'",
    "`true`",
    "`null`",
    "`[]`",
    "`[1, 2]`",
    '`["a"]`',
    '`[1, "a"]`',
    "`{}`",
    '`{"a": 1}`',
]
ARGUMENTS = [*ARGUMENT_LITERALS, "a", "b", "&a", "@"]


records = st.fixed_dictionaries(
    {},
    optional={
        "a": st.sampled_from([None, 1, "x", [], [1], ["x"], {}, {"k": 1}, True]),
        "b": st.sampled_from([None, 2.5, "y", [2], {"j": 2}, False]),
    },
)


def _interpreter(expression: str, value: Any) -> tuple[str, Any]:
    try:
        return "value", jmespath.search(expression, value)
    except Exception as error:
        return "error", error


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([*FUNCTION_NAMES, "nosuch", "lower"]),
    arguments=st.lists(st.sampled_from(ARGUMENTS), max_size=3),
    value=records,
)
def test_refusals_are_what_the_interpreter_raises(
    name: str, arguments: list[str], value: dict[str, Any]
) -> None:
    call = f"{name}({', '.join(arguments)})"
    kind, outcome = _interpreter(call, value)
    literal_only = all(argument in ARGUMENT_LITERALS for argument in arguments)
    try:
        compile_closures(call)
    except (exceptions.UnknownFunctionError, exceptions.JMESPathTypeError) as error:
        # Arguments are literals, fields and &expressions, which never raise themselves.
        assert kind == "error" and type(outcome) is type(error), (call, value, outcome)
        if literal_only:
            assert str(outcome) == str(error)
        return
    except exceptions.ArityError as error:
        assert kind == "error" and type(outcome) is type(error), (call, value, outcome)
        assert str(outcome) == str(error)
        return
    # Accepted: the interpreter never finds an unknown function or a wrong count, and with
    # literal arguments only (types known) never a wrong type either.
    refused = (exceptions.UnknownFunctionError, exceptions.ArityError)
    if literal_only:
        refused = (*refused, exceptions.JMESPathTypeError)
    assert not (kind == "error" and isinstance(outcome, refused)), (call, value, outcome)


# --- numbers: references from the JMESPath specification

finite_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, LARGEST_FLOAT, -LARGEST_FLOAT, 1e308, 5e-324, 2.0**63, 2.0**64, 0.1]
)
big_ints = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-LARGEST_INT, max_value=LARGEST_INT)
    | st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, HUGE, -HUGE, LARGEST_INT])
)
numbers = big_ints | finite_floats
number_lists = st.lists(numbers, max_size=8)


def json_can_carry(value: Any) -> bool:
    """Whether `value` is JSON that ndpipe carries: numbers within a double's range."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is int:
        return abs(value) <= LARGEST_INT
    if kind is list:
        return all(json_can_carry(item) for item in value)
    if kind is dict:
        return all(type(key) is str and json_can_carry(item) for key, item in value.items())
    return kind in (str, bool, type(None))


def same_number(actual: Any, expected: Any) -> bool:
    """Same JSON number: same type (int or float), same value, and the same sign for zeros."""
    if type(actual) is not type(expected) or actual != expected:
        return False
    return type(actual) is int or math.copysign(1, actual) == math.copysign(1, expected)


def summation_bound(values: list[Any]) -> Fraction:
    """How far a float sum of `values`, added one by one, may be from the exact sum."""
    unit = Fraction(1, 2**53)
    tiny = Fraction(2) ** -1074  # a subnormal's spacing: rounding near zero
    return (
        len(values) * unit * sum((abs(Fraction(v)) for v in values), Fraction(0))
        + len(values) * tiny
    )


# abs: "Returns the absolute value of the provided argument." ceil: "the next highest integer
# value by rounding up if necessary", floor: "the next lowest integer value by rounding down".
# An integer result of a float is a Python int here (as jmespath has it), exact at any size.


@given(numbers)
def test_abs_ceil_floor(number: Any) -> None:
    exact = Fraction(number)
    result = search("abs(@)", number)
    assert type(result) is type(number) and Fraction(result) == abs(exact)
    if type(result) is float:
        assert math.copysign(1, result) == 1  # abs(-0.0) is 0.0
    for name, reference in (("ceil", exact.__ceil__()), ("floor", exact.__floor__())):
        result = search(f"{name}(@)", number)
        assert type(result) is int and result == reference, (name, number, result)


# sum: "Returns the sum of the provided array argument." Integers add exactly; with a float among
# them the sum is a float, within the rounding of adding one by one, and an error when it is out
# of a double's range rather than infinity.


@settings(max_examples=300)
@given(number_lists)
def test_sum(values: list[Any]) -> None:
    exact = sum((Fraction(v) for v in values), Fraction(0))
    try:
        result = search("sum(@)", values)
    except NumberRangeError:
        assert abs(exact) >= LARGEST - summation_bound(values)
        return
    if all(type(v) is int for v in values):
        assert type(result) is int and result == exact
        return
    assert type(result) is float and math.isfinite(result)
    assert abs(Fraction(result) - exact) <= summation_bound(values), (values, result)
    naive = _python_float_sum(values)
    if naive is not None:
        assert same_number(result, naive)  # jmespath's own answer whenever it has one


# avg: "Returns the average of the elements in the provided array. An empty array will produce
# a return value of null." Always a float, as jmespath divides.


@settings(max_examples=300)
@given(number_lists)
def test_avg(values: list[Any]) -> None:
    if not values:
        assert search("avg(@)", values) is None
        return
    mean = sum((Fraction(v) for v in values), Fraction(0)) / len(values)
    # The float sum's rounding, shrunk by the division, plus the division's own rounding.
    bound = summation_bound(values) / len(values) + abs(mean) / 2**52
    try:
        result = search("avg(@)", values)
    except NumberRangeError:
        assert abs(mean) >= LARGEST - bound
        return
    assert type(result) is float and math.isfinite(result)
    assert abs(Fraction(result) - mean) <= bound, (values, result)
    naive = _python_float_sum(values)
    if naive is not None and math.isfinite(naive / len(values)):
        assert same_number(result, naive / len(values))


def _python_float_sum(values: list[Any]) -> Any:
    """What jmespath's sum() gives, when it is a finite number; None otherwise."""
    try:
        total = sum(values)
    except OverflowError:
        return None
    return total if type(total) is int or math.isfinite(total) else None


# max, min, sort, sort_by and comparisons: by exact value, whatever the mix of int and float.


@given(st.lists(numbers, min_size=1, max_size=8))
def test_ordering_is_exact(values: list[Any]) -> None:
    by_value = sorted(values, key=Fraction)
    assert search("max(@)", values) is max(values, key=Fraction)
    assert search("min(@)", values) is min(values, key=Fraction)
    assert [Fraction(v) for v in search("sort(@)", values)] == [Fraction(v) for v in by_value]
    objects = [{"n": v} for v in values]
    assert search("sort_by(@, &n)", objects) == sorted(objects, key=lambda o: Fraction(o["n"]))
    assert search("max_by(@, &n)", objects) is max(objects, key=lambda o: Fraction(o["n"]))
    first, last = values[0], values[-1]
    record = {"x": first, "y": last}
    for operator, reference in (
        ("<", Fraction(first) < Fraction(last)),
        ("<=", Fraction(first) <= Fraction(last)),
        ("==", Fraction(first) == Fraction(last)),
        ("!=", Fraction(first) != Fraction(last)),
        (">", Fraction(first) > Fraction(last)),
    ):
        assert search(f"x {operator} y", record) is reference, (operator, record)


# to_string: "number/array/object/boolean - The JSON encoded value of the object."


@given(numbers)
def test_to_string_of_a_number_is_its_json(number: Any) -> None:
    text = search("to_string(@)", number)
    assert same_number(json.loads(text), number)
    if type(number) is int:
        assert text == str(number)


# to_number: "string - Returns the parsed number. Any string that conforms to the json-number
# production is supported", "number - Returns the passed in value", anything else null. A
# string that is not a finite JSON number gives null, as a non-number does.


def reference_to_number(value: Any) -> Any:
    if type(value) in (int, float):
        return value
    if type(value) is not str or value != value.strip(" \t\r\n"):
        return None  # json.loads takes white space around a value; the production does not
    try:
        parsed = json.loads(value, parse_constant=_not_json)
    except ValueError:
        return None
    if type(parsed) is float and not math.isfinite(parsed):
        return None
    if type(parsed) is int and abs(parsed) > LARGEST_INT:
        return None  # beyond a double's range, as a float would be
    return parsed if type(parsed) in (int, float) else None


def _not_json(constant: str) -> Any:
    raise ValueError(constant)


number_texts = st.one_of(
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,4})?\Z"),
    st.sampled_from(
        [
            "nan",
            "NaN",
            "inf",
            "-Infinity",
            "1e400",
            "-1e400",
            "1e-400",
            " 12",
            "12 ",
            "+5",
            "1_000",
            ".5",
            "5.",
            "01",
            "0x10",
            "١٢",
            "１２",
            "-0",
            "-0.0",
            "1E5",
            "",
            "-",
            '"1"',
            "true",
            "[1]",
        ]
    ),
    st.text(alphabet="0123456789-+.eE _", max_size=12),
    st.text(max_size=6),
)


@settings(max_examples=500)
@given(number_texts | numbers | st.sampled_from([None, True, False, [], [1], {}, {"a": 1}]))
def test_to_number(value: Any) -> None:
    result = search("to_number(@)", value)
    expected = reference_to_number(value)
    if expected is None:
        assert result is None, (value, result)
    else:
        assert same_number(result, expected), (value, result, expected)


def test_to_number_long_digit_strings() -> None:
    assert search("to_number(@)", str(LARGEST_INT)) == LARGEST_INT
    assert search("to_number(@)", str(-LARGEST_INT)) == -LARGEST_INT
    assert search("to_number(@)", "9" * 308) == 10**308 - 1
    assert search("to_number(@)", "-" + "9" * 30) == -(10**30 - 1)
    # Beyond the range, as JSON input beyond it is refused, even past int()'s digit limit.
    for digits in ["9" * 309, str(2**1024), "1" * 5000, "1" * 5000 + ".5", "-" + "9" * 400]:
        assert search("to_number(@)", digits) is None
    assert search("to_number(@)", "9" * 300 + ".5") == float("9" * 300)


def test_to_number_differs_from_the_interpreter_only_where_the_text_is_no_json_number() -> None:
    for text in [" 12", "+5", "1_000", ".5", "5.", "01", "١٢", "nan", "inf", "1e400"]:
        assert jmespath.search("to_number(@)", text) is not None
        assert search("to_number(@)", text) is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1e308, 1e308, -1e308], 1e308),  # the float sum overflows; the exact one fits
        ([1.5, 10**400, -(10**400)], 1.5),  # 1.5 + 10**400 cannot be a float
        ([1.0, LARGEST_INT, LARGEST_INT, -LARGEST_INT], 1.0 + LARGEST_FLOAT),
        ([HUGE, 1], HUGE + 1),
        ([-0.0], 0.0),
        ([], 0),
    ],
)
def test_sum_cases(values: list[Any], expected: Any) -> None:
    assert same_number(search("sum(@)", values), expected)


@pytest.mark.parametrize(
    "values",
    [[1e308, 1e308], [LARGEST_FLOAT, LARGEST_FLOAT, 1.0], [LARGEST_INT, 1.0, LARGEST_INT]],
)
def test_sum_out_of_range_is_a_clear_error(values: list[Any]) -> None:
    with pytest.raises(NumberRangeError, match=r"^sum\(\) result is out of range"):
        search("sum(@)", values)


def test_sum_of_integers_beyond_a_double_is_an_error() -> None:
    assert search("sum(@)", [LARGEST_INT, -1, 1]) == LARGEST_INT
    with pytest.raises(NumberRangeError, match=r"^sum\(\) result is out of range"):
        search("sum(@)", [LARGEST_INT, LARGEST_INT])
    with pytest.raises(NumberRangeError):
        search("sum(@)", [-LARGEST_INT, -(2**970)])


def test_avg_cases() -> None:
    assert search("avg(@)", [1e308, 1e308]) == 1e308
    assert search("avg(@)", [LARGEST_FLOAT] * 3) == LARGEST_FLOAT
    assert search("avg(@)", [LARGEST_INT, LARGEST_INT]) == LARGEST_FLOAT
    assert search("avg(@)", [HUGE, HUGE]) == float(HUGE)
    assert search("avg(@)", [1.5e308, 1.5e308, 1.5e308, 1e308]) == 1.375e308
    # The mean of numbers in range is in range; only ints beyond it, which ndpipe never reads,
    # make one that is not.
    with pytest.raises(NumberRangeError, match=r"^avg\(\) result is out of range"):
        search("avg(@)", [2**1024, 2**1024])


def test_ceil_floor_abs_cases() -> None:
    assert search("ceil(@)", LARGEST_FLOAT) == int(LARGEST_FLOAT)
    assert search("floor(@)", -LARGEST_FLOAT) == -int(LARGEST_FLOAT)
    assert search("ceil(@)", -0.5) == 0 and type(search("ceil(@)", -0.5)) is int
    assert search("ceil(@)", HUGE) == HUGE and search("floor(@)", -HUGE) == -HUGE
    assert search("abs(@)", -HUGE) == HUGE


# --- hostile values: every function, any argument, gives JSON or an EvaluationError

hostile_scalars = st.one_of(
    numbers,
    st.sampled_from([None, True, False, "", "x", "1e400", "nan", "-0", str(HUGE), "9" * 5000]),
    st.text(max_size=5),
    st.just("y" * 100_000),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "n"]), children, max_size=3)
    ),
    max_leaves=10,
)
ARGUMENT_FORMS = ["a", "b", "@", "&a", "&n", "a[]", "a[*].n", "`[]`", "'s'"]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(FUNCTION_NAMES), value=hostile_values, data=st.data())
def test_hostile_values_give_json_or_a_record_error(name: str, value: Any, data: Any) -> None:
    signature = Functions.FUNCTION_TABLE[name]["signature"]
    count = len(signature) + (data.draw(st.integers(0, 2)) if signature[-1].get("variadic") else 0)
    arguments = data.draw(st.lists(st.sampled_from(ARGUMENT_FORMS), min_size=count, max_size=count))
    expression = f"{name}({', '.join(arguments)})"
    try:
        evaluate = compile_closures(expression)
    except exceptions.JMESPathTypeError:
        assume(False)  # a literal or &expression of the wrong type: refused before any input
        return
    try:
        result = evaluate(value)
    except EvaluationError:
        return
    if "&" in expression and name in ("not_null", "to_array"):
        return  # an &expression handed back as it is: a value the writer refuses per record
    assert json_can_carry(result), (expression, value, result)
