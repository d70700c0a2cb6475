"""The export-to-import pipeline of issue 3, end to end, on a hostile fixture export.

    ndpipe fetch export.ndjson | ndpipe import-clean --rejects R | ndpipe dedupe -k email
      --ignore-case --dups D | ndpipe to-json-array --max-bytes N --out 'import/users-{n:04d}.json'

Proves: every file is a valid JSON array of at most N bytes; every written record passes the
import schema; no email is in two records; and every input record is accounted for, exactly
once: written, rejected with a reason, or dropped as a reported duplicate.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ndpipe.services.auth0.schema import check_user
from tests.conftest import FIXTURES, records, shell

EXPORT = FIXTURES / "import-clean" / "export.ndjson"


def email_of(record: dict) -> str | None:
    """The email import-clean makes of an input record (or None when it has none)."""
    value = record["email"] if record.get("email") is not None else record.get("Email")
    return value.strip().lower() if isinstance(value, str) else None


def run_pipeline(tmp_path: Path, max_bytes: int, source: str, chained: bool = False):
    commands = [
        f"fetch {source}",
        "import-clean --rejects rejects.ndjson",
        "dedupe -k email --ignore-case --dups dups.ndjson",
        f"to-json-array --max-bytes {max_bytes} --out 'import/users-{{n:04d}}.json'",
    ]
    line = "ndpipe " + (" then " if chained else " | ndpipe ").join(commands)
    return shell(line, cwd=tmp_path)


@pytest.fixture(params=[500_000, 20_000])
def max_bytes(request):
    return request.param


@pytest.mark.parametrize("source", ["export.ndjson", "export.json.gz"])
def test_every_input_record_is_accounted_for(tmp_path, max_bytes, source):
    shutil.copy(EXPORT, tmp_path / "export.ndjson")
    (tmp_path / "export.json.gz").write_bytes(gzip.compress(EXPORT.read_bytes()))
    result = run_pipeline(tmp_path, max_bytes, source)
    stderr = result.stderr.decode()
    # import-clean rejected records, so the pipeline exits 1; everything else was written.
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert result.stdout == b""

    exported = records(EXPORT.read_bytes())
    rejects = records((tmp_path / "rejects.ndjson").read_bytes())
    dups = records((tmp_path / "dups.ndjson").read_bytes())
    files = sorted((tmp_path / "import").iterdir())
    assert [file.name for file in files] == [
        f"users-{n:04d}.json" for n in range(1, len(files) + 1)
    ]

    # Each file: a valid, non-empty JSON array within the limit, reported on stderr.
    written: list[dict] = []
    for file in files:
        data = file.read_bytes()
        assert len(data) <= max_bytes
        chunk = json.loads(data)
        assert isinstance(chunk, list) and chunk
        assert f"wrote import/{file.name}: {len(chunk)} records, {len(data)} bytes" in stderr
        written.extend(chunk)
    if max_bytes == 20_000:
        assert len(files) > 20

    # Every written record is importable, and no email is in two of them.
    assert all(check_user(record) == [] for record in written)
    written_emails = [record["email"] for record in written]
    assert len(set(written_emails)) == len(written_emails)

    # Rejects: the original record of the line named, with reasons; only the broken cases.
    assert rejects
    rejected_lines = set()
    for reject in rejects:
        line = reject["line"]
        assert reject["record"] == exported[line - 1]
        assert reject["errors"] and all(
            set(e) == {"code", "path", "message"} for e in reject["errors"]
        )
        metadata = reject["record"].get("user_metadata")
        assert not isinstance(metadata, dict) or metadata["case"].startswith("reject:"), reject
        rejected_lines.add(line)
    assert len(rejected_lines) == len(rejects)
    for number, record in enumerate(exported, 1):
        metadata = record.get("user_metadata")
        if isinstance(metadata, dict) and metadata["case"].startswith("reject:"):
            assert number in rejected_lines, (number, metadata["case"])

    # Duplicates: clean records whose email was already written.
    assert dups
    assert all(check_user(record) == [] for record in dups)
    assert all(record["email"] in set(written_emails) for record in dups)

    # Accounting: input = written + rejected + duplicates, matched email by email.
    assert len(exported) == len(written) + len(rejects) + len(dups)
    kept_lines = [n for n in range(1, len(exported) + 1) if n not in rejected_lines]
    expected = Counter(email_of(exported[n - 1]) for n in kept_lines)
    assert expected == Counter(written_emails) + Counter(record["email"] for record in dups)

    # Written records keep input order: each is the first input line with its email.
    first_line: dict[str | None, int] = {}
    for number in kept_lines:
        first_line.setdefault(email_of(exported[number - 1]), number)
    lines = [first_line[email] for email in written_emails]
    assert lines == sorted(lines)

    read = f"{len(exported)} read, {len(exported) - len(rejects)} passed"
    assert f"ndpipe import-clean: {read}" in stderr
    assert f"{len(rejects)} rejected (written to rejects.ndjson)" in stderr
    assert f"{len(dups)} duplicates dropped (written to dups.ndjson)" in stderr
    assert f"wrote {len(written)} records in {len(files)} files" in stderr or len(files) == 1


def test_then_chaining_writes_the_same_files(tmp_path):
    for name, chained in (("piped", False), ("chained", True)):
        (tmp_path / name).mkdir()
        shutil.copy(EXPORT, tmp_path / name / "export.ndjson")
        result = run_pipeline(tmp_path / name, 20_000, "export.ndjson", chained=chained)
        assert result.returncode == 1, result.stderr
    for name in ("rejects.ndjson", "dups.ndjson"):
        assert (tmp_path / "piped" / name).read_bytes() == (
            tmp_path / "chained" / name
        ).read_bytes()
    piped = sorted((tmp_path / "piped" / "import").iterdir())
    chained = sorted((tmp_path / "chained" / "import").iterdir())
    assert [file.read_bytes() for file in piped] == [file.read_bytes() for file in chained]
