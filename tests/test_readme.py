"""Every ndpipe pipeline in the README runs, and gives the same bytes piped and chained with `then`.

Each pipeline runs twice, in two fresh directories that hold the fixtures and stand-ins for the
files the README names (export.json.gz, changes.ndjson, ...): once as written, with pipes, and
once as one `ndpipe A then B then C` process. Their stdout, exit codes and the files they write
must be identical. Pipelines that need a tenant (fetch with no source, import) are run against
the loopback servers instead (tests/test_recipes.py, test_to_marketo.py, test_to_salesforce.py).
"""

from __future__ import annotations

import itertools
import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, shell

# The files README examples name, and the fixture that stands in for each.
STAND_INS = {
    "export.json.gz": FIXTURES / "users.json.gz",
    "current.json.gz": FIXTURES / "users.json.gz",
    "export.ndjson": FIXTURES / "users.ndjson",
    "import.ndjson": FIXTURES / "users.ndjson",
    "changes.ndjson": FIXTURES / "upsert-patch" / "changes.ndjson",
    "fields.json": FIXTURES / "csv" / "auth0-export.fields.json",
}
REDIRECTS = ("<", ">")


def readme_pipelines() -> list[str]:
    """The indented code lines that run ndpipe, with `\\` continuations joined."""
    pipelines: list[str] = []
    pending = ""
    for line in (ROOT / "README.md").read_text().splitlines():
        if not line.startswith("    ") and not pending:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1].rstrip() + " "
            continue
        pending = ""
        text = re.sub(r"\s+#\s.*$", "", text)  # a trailing comment
        if text.startswith("ndpipe ") and not re.match(r"ndpipe [a-z-]+:", text):
            pipelines.append(text)
    return pipelines


# Sinks that send to a service; their README pipelines run against the loopback fakes in
# tests/test_recipes.py, tests/test_to_marketo.py and tests/test_to_salesforce.py.
SERVICE_SINKS = ("import", "to-marketo", "to-salesforce")
# fetch options that only an export job takes.
EXPORT_JOB_OPTIONS = ("--connection", "--field", "--fields-file", "--limit", "--sample", "--job")


def needs_tenant(stages: list[list[str]]) -> bool:
    first = stages[0]
    options = [token.split("=")[0] for token in first[2:] if token.startswith("-")]
    sources = [token for token in first[2:] if not token.startswith("-")]
    reads_tenant = first[1] == "fetch" and (
        not sources or any(option in EXPORT_JOB_OPTIONS for option in options)
    )
    verbs = [
        token
        for stage in stages
        for before, token in itertools.pairwise(stage)
        if before in ("ndpipe", "then")
    ]
    return reads_tenant or any(verb in SERVICE_SINKS for verb in verbs)


def split(pipeline: str) -> tuple[list[list[str]], list[str]]:
    """The pipeline's stages (without redirections), and the redirections."""
    tokens = shlex.split(pipeline)
    stages: list[list[str]] = [[]]
    redirects: list[str] = []
    items = iter(tokens)
    for token in items:
        if token == "|":
            stages.append([])
        elif token in REDIRECTS:
            redirects += [token, next(items)]
        else:
            stages[-1].append(token)
    return stages, redirects


def chained(stages: list[list[str]], redirects: list[str]) -> str:
    words = ["ndpipe"]
    for index, stage in enumerate(stages):
        words += (["then"] if index else []) + stage[1:]
    pairs = zip(redirects[::2], redirects[1::2], strict=True)
    targets = " ".join(f"{op} {shlex.quote(name)}" for op, name in pairs)
    return f"{shlex.join(words)} {targets}"


CASES = [
    pipeline
    for pipeline in readme_pipelines()
    if "&&" not in pipeline
    and all(stage[:1] == ["ndpipe"] for stage in split(pipeline)[0])
    and not needs_tenant(split(pipeline)[0])
]


def workspace(path: Path) -> Path:
    path.mkdir()
    (path / "fixtures").symlink_to(FIXTURES)
    for name, source in STAND_INS.items():
        shutil.copy(source, path / name)
    (path / "import").mkdir()
    shutil.copy(FIXTURES / "to-json-array" / "records.json", path / "import" / "users-0001.json")
    return path


def written_files(path: Path) -> dict[str, bytes]:
    return {
        str(file.relative_to(path)): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file() and "fixtures" not in file.relative_to(path).parts
    }


def test_the_readme_has_pipelines_to_check():
    assert len(CASES) >= 40
    assert any(" | ndpipe " in case for case in CASES)


@pytest.mark.parametrize("pipeline", CASES)
def test_readme_pipeline_piped_equals_chained(pipeline, tmp_path):
    if "--seed" not in pipeline:  # an unseeded sample differs between any two runs
        pipeline = pipeline.replace("ndpipe sample ", "ndpipe sample --seed 7 ")
    stages, redirects = split(pipeline)
    piped_dir = workspace(tmp_path / "piped")
    chained_dir = workspace(tmp_path / "chained")
    piped = shell(pipeline, cwd=piped_dir)
    one_process = shell(chained(stages, redirects), cwd=chained_dir)
    assert piped.returncode in (0, 1), piped.stderr
    assert b"Traceback" not in piped.stderr + one_process.stderr
    if not any(stage[1] == "head" for stage in stages[1:]):
        # Chained, head ends the stages before it; piped, they run on until the pipe closes,
        # and may see (and reject) records after the head's last, or may not: that is timing.
        assert one_process.returncode == piped.returncode, one_process.stderr
    assert one_process.stdout == piped.stdout
    assert written_files(chained_dir) == written_files(piped_dir)
    if piped.returncode == 1:
        # Only the commands that report rejected users exit 1 on the fixtures.
        assert any(stage[1] in ("import-clean", "upsert-patch") for stage in stages), piped.stderr
