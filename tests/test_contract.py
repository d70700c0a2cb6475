"""The contract every verb keeps (STYLE.md): help with an example, empty input, bad line N named,
a closed downstream ended quietly, and a README section."""

from __future__ import annotations

import json

import pytest

from ndpipe import codec
from ndpipe.cli import VerbGroup, cli
from tests.conftest import ROOT, shell

# The smallest useful arguments for each verb. A new verb must be added here, or the
# completeness test below fails.
MINIMAL_ARGS = {
    "fetch": [],
    "select": ["email"],
    "filter": "email",
    "map": ["--set", "n=`1`"],
    "head": [],
    "sample": ["-n", "5", "--seed", "1"],
    "sort": ["-k", "email"],
    "dedupe": ["-k", "email"],
    "escape-csv": [],
    "csv": [],
    "to-json-array": [],
    "import-clean": ["--rejects", "{tmp}/rejects.ndjson"],
    "upsert-patch": ["--set", "user_metadata.flag=true"],
    "diff": ["-", "/dev/null", "-k", "email"],
    "to-marketo": ["--dry-run", "--out", "{tmp}/leads-{{n}}.csv", "--quiet"],
    "to-salesforce": ["--dry-run", "--out", "{tmp}/sf-{{n}}.csv", "--operation", "insert"],
    "import": [
        "--dry-run",
        "--out",
        "{tmp}/chunk-{{n}}.json",
        "--connection",
        "con_0123456789abcdef",
    ],
}
# Verbs whose output is not NDJSON, or that need no input to say something useful.
NOT_NDJSON = {"csv", "to-json-array", "import", "to-marketo", "to-salesforce"}
# Verbs that log each file or job on stderr as they write or send it.
LOGS_AS_IT_GOES = {"import", "to-marketo", "to-salesforce"}
# Verbs that push flat records to a CRM: they refuse a nested value at its line.
FLAT = {"to-marketo", "to-salesforce"}
# Verbs that end with a summary line on stderr when they read their whole input.
SUMMARIZING = {"dedupe", "import-clean"}
# Verbs that say on stderr what they do with the disk (sort: when it spills and merges).
NOTIFYING = {"sort"}
# Verbs that need no stdout (they write or send files and a summary).
NO_STDOUT = {"import", "to-marketo", "to-salesforce"}


def registered() -> list[str]:
    return VerbGroup.list_commands(cli, None)  # type: ignore[arg-type]


def args_for(verb: str, tmp_path) -> str:
    raw = MINIMAL_ARGS[verb]
    parts = [raw] if isinstance(raw, str) else raw
    return " ".join("'" + part.format(tmp=tmp_path).replace("'", "'\\''") + "'" for part in parts)


def test_every_verb_is_covered():
    assert set(registered()) <= set(MINIMAL_ARGS), set(registered()) - set(MINIMAL_ARGS)


@pytest.mark.parametrize("verb", registered())
def test_help_has_an_example(verb):
    result = shell(f"ndpipe {verb} --help")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "Example" in text
    assert f"ndpipe {verb}" in text


@pytest.mark.parametrize("verb", registered())
def test_empty_input(verb, tmp_path):
    result = shell(f"ndpipe {verb} {args_for(verb, tmp_path)} < /dev/null")
    assert result.returncode == 0, result.stderr
    if verb == "to-json-array":
        assert result.stdout == b"[]\n"
    elif verb not in NOT_NDJSON:
        assert result.stdout == b""


@pytest.mark.parametrize("verb", registered())
def test_bad_line_is_named(verb, tmp_path):
    data = b'{"email":"a@example.com","email_verified":true,"app_metadata":{},"user_metadata":{}}\n'
    if verb in FLAT:
        data = b'{"email":"a@example.com","email_verified":true}\n'
    data += b"\n" + b'{"email": "b@example.com",\n'
    result = shell(f"ndpipe {verb} {args_for(verb, tmp_path)}", input=data)
    assert result.returncode == 1, result.stderr
    error = f"ndpipe {verb}: stdin:3: invalid JSON".encode()
    if verb in LOGS_AS_IT_GOES:  # the files written before the bad line are logged first
        assert any(line.startswith(error) for line in result.stderr.splitlines()), result.stderr
    else:
        assert result.stderr.startswith(error), result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("verb", registered())
def test_closed_downstream_is_quiet(verb, tmp_path):
    if verb in NO_STDOUT:
        pytest.skip(f"{verb} sends files and writes a summary, not a stream")
    big = tmp_path / "big.ndjson"
    users = (ROOT / "fixtures" / "users.ndjson").read_bytes().splitlines()
    if verb == "diff":  # diff refuses a key twice on one side: give every copy its own email
        copies = [
            codec.dumps({**codec.loads(line), "email": f"u{number}@example.com"})
            for number, line in enumerate(users * 3000)
        ]
        big.write_bytes(b"\n".join(copies) + b"\n")
    else:
        big.write_bytes(b"\n".join(users * 3000) + b"\n")
    result = shell(f"ndpipe {verb} {args_for(verb, tmp_path)} < {big} | head -c 100 > /dev/null")
    assert result.returncode == 0, result.stderr
    if verb in SUMMARIZING or verb in NOTIFYING:
        lines = result.stderr.splitlines()
        assert len(lines) <= (1 if verb in SUMMARIZING else 2), result.stderr
        assert all(line.startswith(f"ndpipe {verb}: ".encode()) for line in lines), lines
        assert b"rror" not in result.stderr and b"Traceback" not in result.stderr
    else:
        assert result.stderr == b"", result.stderr


@pytest.mark.parametrize("verb", registered())
def test_readme_has_a_section(verb):
    readme = (ROOT / "README.md").read_text()
    assert f"### `{verb}`" in readme


# --- hostile conditions every verb must survive: a documented exit code, never a traceback ------

# Exit codes the README documents; 70 (internal error) is documented too, but always a bug.
DOCUMENTED_EXITS = {0, 1, 2, 3, 129, 130, 143}
# Side files each verb can write, so that a failed command line can be checked for leftovers.
SIDE_FILE_ARGS = {
    "dedupe": ["--dups", "{tmp}/dups.ndjson"],
    "upsert-patch": ["--unmatched", "{tmp}/unmatched.ndjson"],
    "to-json-array": ["--out", "{tmp}/users.json"],
    "import": ["--report", "{tmp}/report.ndjson"],
    "to-marketo": ["--report", "{tmp}/report.ndjson"],
    "to-salesforce": ["--report", "{tmp}/report.ndjson"],
}
# Verbs that end the pipeline: nothing may follow them.
SINKS = {"csv", "to-json-array", "import", "to-marketo", "to-salesforce"}


def side_args_for(verb: str, tmp_path) -> str:
    extra = " ".join("'" + part.format(tmp=tmp_path) + "'" for part in SIDE_FILE_ARGS.get(verb, []))
    return f"{verb} {args_for(verb, tmp_path)} {extra}".strip()


def assert_clean(result) -> None:
    assert b"Traceback" not in result.stderr, result.stderr
    assert b"internal error" not in result.stderr, result.stderr
    assert result.returncode in DOCUMENTED_EXITS, (result.returncode, result.stderr)


@pytest.mark.parametrize(
    "bad",
    [b"\xff\xfe{}\n", b'{"a":"\xe9"}\n', b"[1]\n", b'{"a":1e400}\n', b"{" * 3000 + b"\n"],
    ids=["utf16-bom", "latin1", "not-an-object", "huge-number", "deep"],
)
@pytest.mark.parametrize("verb", registered())
def test_hostile_bad_line_has_a_documented_exit(verb, bad, tmp_path):
    data = b'{"email":"a@example.com","email_verified":true,"app_metadata":{},"user_metadata":{}}\n'
    result = shell(f"ndpipe {side_args_for(verb, tmp_path)}", input=data + bad)
    assert_clean(result)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip()
    # Nothing written beside the stream survives a failed run (the --out chunks of import
    # before the bad line are complete files, and allowed).
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith("chunk-")]
    if verb == "to-json-array":
        # --out holds exactly the records before the bad line, as a valid array.
        assert left == ["users.json"], left
        assert len(json.loads((tmp_path / "users.json").read_bytes())) == 1
    else:
        assert left == [], left


@pytest.mark.parametrize("verb", registered())
def test_closed_stdin_has_a_documented_exit(verb, tmp_path):
    result = shell(f"ndpipe {side_args_for(verb, tmp_path)} <&-")
    assert_clean(result)
    assert result.returncode in (1, 2), result.stderr
    assert b"stdin" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("verb", [verb for verb in registered() if verb not in NO_STDOUT])
def test_stdout_to_dev_full_is_a_clean_error(verb, tmp_path):
    users = ROOT / "fixtures" / "users.ndjson"
    result = shell(f"ndpipe {verb} {args_for(verb, tmp_path)} < {users} > /dev/full")
    assert_clean(result)
    assert result.returncode == 1, result.stderr
    message = result.stderr.decode()
    assert "cannot write" in message and "stdout" in message, message
    assert "stdin:" not in message, message


@pytest.mark.parametrize("verb", registered())
def test_bad_then_segment_leaves_no_file(verb, tmp_path):
    users = ROOT / "fixtures" / "users.ndjson"
    if verb in SINKS:
        # A sink is last, so the bad segment comes before it.
        line = f"ndpipe select 'x=nope(email)' then {verb} {side_args_for(verb, tmp_path)}"
    else:
        line = f"ndpipe {side_args_for(verb, tmp_path)} then csv --bogus"
    result = shell(f"{line} < {users}")
    assert_clean(result)
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    assert list(tmp_path.iterdir()) == []
    if verb not in SINKS:
        # A sink followed by anything is refused the same way.
        line = f"ndpipe {side_args_for(verb, tmp_path)} then to-json-array then head"
        result = shell(f"{line} < {users}")
        assert_clean(result)
        assert result.returncode == 2, result.stderr
        assert list(tmp_path.iterdir()) == []
