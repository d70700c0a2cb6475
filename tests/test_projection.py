"""Projection pushdown: decoding only the fields a pipeline reads changes nothing a user sees.

Every pipeline here runs twice, with the projection and with NDPIPE_PUSHDOWN=0 (whole records),
and must give the same stdout, stderr and exit code: on random Auth0-like records carrying the
values the projected decoder does not check itself (numbers beyond a double, integers too long
to read, bytes that are not UTF-8, lone surrogates, deep nesting, duplicate keys, bad JSON in a
field nobody reads, null beside missing), on the fixtures and on README pipelines. The runs are
in-process (ndpipe.cli.main with stdin and stdout swapped), so hundreds of them stay cheap; the
reader's block size is made small so that one input spans many blocks, as a large file does.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndpipe import cli, codec
from ndpipe import io as ndpipe_io
from ndpipe.expr import compile_expression
from ndpipe.projection import SWITCH, expression_fields, plan

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

Result = tuple[int, bytes, str]


class Kept(io.BytesIO):
    """A buffer that stays readable when the wrappers around it are closed or dropped."""

    def close(self) -> None:
        pass


@contextmanager
def swapped(data: bytes, pushdown: bool, block: int) -> Iterator[tuple[Kept, io.StringIO]]:
    saved = sys.stdin, sys.stdout, sys.stderr, os.environ.get(SWITCH), ndpipe_io.READ_BLOCK_BYTES
    out, err = Kept(), io.StringIO()
    sys.stdin, sys.stdout, sys.stderr = io.TextIOWrapper(Kept(data)), io.TextIOWrapper(out), err
    os.environ[SWITCH] = "1" if pushdown else "0"
    ndpipe_io.READ_BLOCK_BYTES = block
    try:
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr, switch, ndpipe_io.READ_BLOCK_BYTES = saved
        if switch is None:
            os.environ.pop(SWITCH, None)
        else:
            os.environ[SWITCH] = switch


def run(args: list[str], data: bytes, pushdown: bool, block: int = 65536) -> Result:
    """`ndpipe ARGS < data`, in this process: exit code, stdout, stderr."""
    with swapped(data, pushdown, block) as (out, err):
        code = cli.main(args)
    return code, out.getvalue(), err.getvalue()


def run_piped(commands: list[list[str]], data: bytes, pushdown: bool, block: int) -> list[Result]:
    """`ndpipe A | ndpipe B | ...`: each command's output is the next one's input."""
    results = []
    for args in commands:
        result = run(args, data, pushdown, block)
        results.append(result)
        data = result[1]
    return results


class Counted(codec.Projected):
    """The projected decoder, counting the records it builds (so a test knows it ran)."""

    built = 0

    def __init__(self, fields: tuple[str, ...]) -> None:
        super().__init__(fields)
        build = self.build

        def counting(item: object) -> object:
            Counted.built += 1
            return build(item)

        self.build = counting


@pytest.fixture(autouse=True)
def counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "Projected", Counted)
    Counted.built = 0


def same(args: list[str], data: bytes, block: int = 65536) -> Result:
    """Run with and without the projection; both must agree. Returns the result."""
    projected = run(args, data, True, block)
    whole = run(args, data, False, block)
    assert projected == whole, (args, data[:300])
    return projected


# --- what expressions read ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("email", {"email"}),
        ("user_metadata.name || name", {"user_metadata", "name"}),
        ("identities[0].connection", {"identities"}),
        ('identities[?provider == `"auth0"`].user_id', {"identities"}),
        ('logins_count > `10` && app_metadata.plan == `"pro"`', {"logins_count", "app_metadata"}),
        ("length(identities[?isSocial]) > `0`", {"identities"}),
        ("sort_by(identities, &connection)[0]", {"identities"}),
        ("{a: email, b: [name, nickname]}", {"email", "name", "nickname"}),
        ("email | length(@)", {"email"}),
        ("user.email", {"user", "email"}),
        ('"odd key"', {"odd key"}),
        ("`1`", set()),
        ("@", None),
        ("@.email", None),
        ("keys(@)", None),
        ("values(@)", None),
        ("*", None),
        ("*.name", None),
        ("[0]", None),
        ("[]", None),
        ("to_string(@)", None),
        ("merge(@, `{}`)", None),
        ("max_by(@, &a)", None),
        ("not_null(email, @)", None),
    ],
)
def test_expression_fields(text: str, fields: set[str] | None) -> None:
    found = expression_fields(compile_expression(text))
    assert (set(found) if found is not None else None) == fields


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (["filter", "email_verified"], ("email_verified",)),
        (["head", "-n", "3"], ()),
        (["sort", "-k", "created_at"], ("created_at",)),
        (["dedupe", "-k", "email", "-i"], ("email",)),
        # select ends the plan: what follows reads the records it builds.
        (["filter", "email_verified", "then", "select", "email", "then", "csv"],
         ("email", "email_verified")),
        (["select", "E=email", "C=created_at", "then", "escape-csv", "then", "csv"],
         ("created_at", "email")),
        (["select", "Name=user.name"], ("name", "user")),
        (["sample", "-n", "2", "then", "select", "email"], ("email",)),
        (["sample", "-n", "2"], ()),
        # Whole records: an expression over the record, a side file of whole records, a sink,
        # a stage that reads everything.
        (["filter", "@.email"], None),
        (["dedupe", "-k", "email", "--dups", "dups.ndjson"], None),
        (["filter", "email_verified", "then", "csv"], None),
        (["filter", "email_verified", "then", "map", "--set", "x=email"], None),
        (["filter", "email_verified", "then", "to-json-array"], None),
        # A name msgspec cannot give a struct field (a backslash, a quote, a control character).
        (["filter", '"back\\\\slash"'], None),
        (["select", 'T="\\ttab"'], None),
    ],
)  # fmt: skip
def test_plan(
    args: list[str], fields: tuple[str, ...] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SWITCH, "1")
    stages = cli.parse_stages(args)
    assert not isinstance(stages, int)
    projection = plan(stages)
    assert (projection.fields if projection is not None else None) == fields


@pytest.mark.parametrize(("value", "on"), [(None, False), ("0", False), ("1", True)])
def test_switch(value: str | None, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Off unless asked for: exact projected reading costs about what it saves (see SWITCH).
    if value is None:
        monkeypatch.delenv(SWITCH, raising=False)
    else:
        monkeypatch.setenv(SWITCH, value)
    stages = cli.parse_stages(["filter", "email_verified"])
    assert not isinstance(stages, int)
    assert (plan(stages) is not None) == on


# --- the traps, one by one ----------------------------------------------------------------

GOOD = b'{"email":"a@example.com","email_verified":true,"logins_count":3}\n'

# Lines the projected decoder alone would accept (it reads only `email_verified`) but whole
# decoding refuses, or accepts with values the projection must not lose.
TRAPS = {
    "number beyond a double": b'{"email_verified":true,"n":1e400}',
    "negative, capital E, signed exponent": b'{"email_verified":true,"n":-1.5E+400}',
    "exponent after spaces": b'{"email_verified":true,"n": [ 2e308 ] }',
    "tiny exponent is fine": b'{"email_verified":true,"n":1e-400}',
    "long mantissa, short exponent": b'{"email_verified":true,"n":1' + b"0" * 250 + b"e99}",
    "long float": b'{"email_verified":true,"n":' + b"9" * 400 + b".5}",
    "integer too long": b'{"email_verified":true,"n":' + b"7" * 4301 + b"}",
    "longest integer read": b'{"email_verified":true,"n":' + b"7" * 4300 + b"}",
    "number in nested skipped field": b'{"email_verified":true,"m":{"a":[1,{"b":1e999}]}}',
    "invalid UTF-8 in skipped string": b'{"email_verified":true,"name":"caf\xe9"}',
    "invalid UTF-8 in skipped key": b'{"email_verified":true,"n\xff":1}',
    "UTF-8 surrogate bytes": b'{"email_verified":true,"name":"\xed\xa0\x80"}',
    "lone high surrogate escape": b'{"email_verified":true,"name":"\\ud800"}',
    "lone low surrogate escape": b'{"email_verified":true,"name":"\\udc00x"}',
    "high surrogate then letter": b'{"email_verified":true,"name":"\\ud834\\u0041"}',
    "good surrogate pair": b'{"email_verified":true,"name":"\\ud834\\udd1e"}',
    "deep nesting, readable": b'{"email_verified":true,"d":' + b"[" * 900 + b"]" * 900 + b"}",
    "deep nesting, too deep": b'{"email_verified":true,"d":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "duplicate read key": b'{"email_verified":false,"email_verified":true}',
    "duplicate read key, last bad": b'{"email_verified":true,"email_verified":1e400}',
    "duplicate skipped key": b'{"email_verified":true,"n":1,"n":"x"}',
    "invalid JSON in skipped field": b'{"email_verified":true,"n":tru}',
    "trailing comma in skipped field": b'{"email_verified":true,"n":[1,2,]}',
    "control character in skipped string": b'{"email_verified":true,"n":"a\tb"}',
    "NaN in skipped field": b'{"email_verified":true,"n":NaN}',
    "escaped key": b'{"email_\\u0076erified":true}',
    "null read field": b'{"email_verified":null,"email":"x"}',
    "missing read field": b'{"email":"x"}',
    "not an object": b"[1, 2]",
    "a string": b'"email_verified"',
    "trailing garbage": b'{"email_verified":true} x',
    "CRLF": b'{"email_verified":true,"n":1e400}\r',
}


@pytest.mark.parametrize("name", sorted(TRAPS))
@pytest.mark.parametrize(
    "args",
    [
        ["filter", "email_verified"],
        ["head", "-n", "5"],
        ["select", "email_verified", "email", "--missing", "omit"],
        ["filter", "email_verified", "--on-error", "skip"],
    ],
)
def test_trap(name: str, args: list[str]) -> None:
    # Good lines around the trap, in blocks of their own and in one block.
    data = GOOD * 3 + TRAPS[name] + b"\n" + GOOD * 2
    for block in (64, 65536):
        same(args, data, block)
    assert Counted.built  # the projected decoder did read the good lines


def test_traps_are_refused_as_before() -> None:
    # The comparison above cannot hide a trap both modes miss: these are refused.
    for name in ("number beyond a double", "integer too long", "invalid UTF-8 in skipped string"):
        code, out, err = run(["filter", "email_verified"], GOOD + TRAPS[name] + b"\n", True)
        assert code == 1
        assert out == GOOD
        assert err.startswith("ndpipe filter: stdin:2: invalid")


# --- random records and random pipelines --------------------------------------------------

KEYS = [
    "user_id", "email", "email_verified", "name", "given_name", "family_name", "created_at",
    "logins_count", "app_metadata", "user_metadata", "identities", "user", "em\u00e9", "a\\b",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["a@x.com", "A@X.com", "2024-01-01T00:00:00.000Z", "pro", "free"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["plan", "name", "provider", "x"]), inner, max_size=3)
    ),
    max_leaves=6,
)

# JSON text whole decoding refuses, or reads in a way worth comparing, put in as is.
RAW_VALUES = [
    b"1e400", b"-1E+309", b"1e-400", b"1" + b"0" * 230 + b"e80", b"2" * 4301, b"3" * 4300,
    b"1" * 320 + b".5", b'"\\ud800"', b'"\\udc00"', b'"\\ud83d\\ude00"', b'"\\u00e9"',
    b'"caf\xe9"', b'"\xf0\x9f\x98\x80"', b'"\xed\xa0\x80"', b"[" * 1000 + b"]" * 1000,
    b"[" * 990 + b"]" * 990, b"tru", b"[1,]", b'"a\x01b"', b" 12 ", b"1.0e+02", b"123",
]  # fmt: skip


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.sampled_from([b"", b"  ", b"5", b"null", b"[]", b"{}", b'{"a":1}x']))
    parts = []
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
        encoded = codec.dumps(key)
        if draw(st.integers(0, 9)) == 0:
            value = draw(st.sampled_from(RAW_VALUES))
        else:
            value = codec.dumps(draw(values))
        parts.append(encoded + b":" + value)
    line = b"{" + b",".join(parts) + b"}"
    return line + draw(st.sampled_from([b"", b"", b"\r", b" "]))


EXPRESSIONS = [
    "email_verified", "logins_count > `3`", "email", "user.email", "app_metadata.plan",
    "user_metadata.name || name", "length(identities || `[]`) > `0`", "!email_verified",
    "created_at", "@.email", "keys(@)", "\"em\u00e9\"", "to_string(logins_count)",
    '"a\\\\b"',
]  # fmt: skip


@st.composite
def stages(draw: st.DrawFn) -> list[str]:
    expression = draw(st.sampled_from(EXPRESSIONS))
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return ["filter", expression]
    if choice == 1:
        fields = draw(
            st.lists(st.sampled_from(EXPRESSIONS[:9]), min_size=1, max_size=3, unique=True)
        )
        named = [f"f{index}={text}" for index, text in enumerate(fields)]
        missing = draw(st.sampled_from(["null", "omit", "empty"]))
        return ["select", *named, "--missing", missing]
    if choice == 2:
        return ["head", "-n", str(draw(st.integers(0, 6)))]
    if choice == 3:
        return ["sample", "-n", str(draw(st.integers(0, 4))), "--seed", "7"]
    if choice == 4:
        return ["sort", "-k", expression, *draw(st.sampled_from([[], ["--desc"]]))]
    if choice == 5:
        return ["dedupe", "-k", expression, *draw(st.sampled_from([[], ["-i"]]))]
    return ["filter", "email_verified", "--on-error", "skip"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    data=st.lists(lines(), max_size=12).map(lambda found: b"".join(x + b"\n" for x in found)),
    pipelines=st.lists(st.lists(stages(), min_size=1, max_size=3), min_size=3, max_size=3),
    block=st.sampled_from([32, 256, 65536]),
)
def test_random_pipelines(data: bytes, pipelines: list[list[list[str]]], block: int) -> None:
    for pipeline in pipelines:
        chained: list[str] = []
        for stage in pipeline:
            chained += [*(["then"] if chained else []), *stage]
        assert run(chained, data, True, block) == run(chained, data, False, block), chained
        # The same stages piped, each a process of its own in a shell.
        assert run_piped(pipeline, data, True, block) == run_piped(pipeline, data, False, block)


# --- fixtures and README pipelines ---------------------------------------------------------

FIXTURE_PIPELINES = [
    ["filter", "email_verified"],
    ["filter", 'logins_count > `10` && app_metadata.plan == `"premium"`'],
    ["select", "email", "Name=user_metadata.name || name", "--missing", "omit"],
    ["select", "--preset", "auth0-default", "then", "csv"],
    ["select", "Email Address=email", "Created At=created_at", "then", "escape-csv", "then", "csv"],
    ["sort", "-k", "created_at"],
    ["sort", "-k", "logins_count", "--desc", "then", "head", "-n", "3"],
    ["dedupe", "-k", "email", "--ignore-case"],
    ["dedupe", "-k", "given_name", "-k", "family_name"],
    ["sample", "-n", "5", "--seed", "42", "then", "select", "email"],
    ["head", "-n", "3", "then", "select", "user_id", "identities[0].connection"],
    ["filter", "email_verified", "then", "sort", "-k", "email", "then", "dedupe", "-k", "name"],
    ["select", "nosuchfield", "emial"],
]


def fixture_inputs() -> list[Path]:
    found = sorted(FIXTURES.glob("*.ndjson")) + sorted(FIXTURES.glob("*/*.ndjson"))
    found += sorted(FIXTURES.glob("*/*/in"))
    return [path for path in found if path.stat().st_size < 2_000_000][:40]


@pytest.mark.parametrize("args", FIXTURE_PIPELINES, ids=" ".join)
def test_fixtures(args: list[str]) -> None:
    for path in fixture_inputs():
        data = path.read_bytes()
        for block in (128, 65536):
            same(args, data, block)


def test_users_fixture_uses_the_projection() -> None:
    data = (FIXTURES / "users.ndjson").read_bytes()
    code, out, _ = same(["filter", "email_verified"], data)
    assert code == 0 and out
    assert Counted.built == data.count(b"\n")  # every line decoded projected, none whole
