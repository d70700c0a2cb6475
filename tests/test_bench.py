"""The benchmark harness: its peers compute what ndpipe computes, and its "before" rows run the
ndpipe of another revision."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run as bench
from bench.generate import users
from ndpipe import codec
from tests.conftest import ROOT

# The workloads whose peers promise ndpipe's very output bytes (bench/README.md).
SAME_OUTPUT = ("filter", "sort", "dedupe", "from-json-array")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Generated users with many hostile values and duplicate emails, as NDJSON and as an array;
    plus records without an email, with a null one, without a date, with equal dates."""
    directory = tmp_path_factory.mktemp("bench")
    records = list(users(300, seed=5, dup_rate=0.2, hostile_rate=0.5))
    records[10].pop("email", None)
    records[11]["email"] = None
    records[13]["logins_count"] = 10.5
    records[14].pop("created_at", None)
    records[15]["created_at"] = records[16]["created_at"]
    lines = [codec.dumps(record) for record in records]
    ndjson = directory / "users.ndjson"
    ndjson.write_bytes(b"".join(line + b"\n" for line in lines))
    array = directory / "users.json"
    array.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    return {
        bench.ND: bench.sh(str(ROOT / "bin" / "ndpipe")),
        bench.PYTHON: bench.sh(sys.executable),
        bench.NDJSON: bench.sh(str(ndjson)),
        bench.ARRAY: bench.sh(str(array)),
    }


def output(command: str, substitutions: dict[str, str]) -> bytes:
    for placeholder, value in substitutions.items():
        command = command.replace(placeholder, value)
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def peers() -> list[tuple[str, str]]:
    found = []
    for workload in bench.WORKLOADS:
        if workload.name not in SAME_OUTPUT:
            continue
        for contender in workload.contenders:
            if contender.tool in ("jq", "duckdb"):
                found.append((workload.name, contender.tool))
    return found


@pytest.mark.parametrize(("workload", "tool"), peers())
def test_peers_write_what_ndpipe_writes(inputs, workload, tool):
    if tool == "duckdb" and importlib.util.find_spec("duckdb") is None:
        pytest.skip("duckdb is not installed")
    if tool == "jq" and shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    if (workload, tool) == ("from-json-array", "jq"):
        pytest.skip("jq --stream is correct but slow; `jq .[]` is the same program whole")
    (found,) = [w for w in bench.WORKLOADS if w.name == workload]
    commands = {contender.tool: contender.command for contender in found.contenders}
    expected = output(commands["ndpipe"], inputs)
    assert expected
    assert output(commands[tool], inputs) == expected


def test_before_rows_follow_each_ndpipe_row(tmp_path):
    """The "before" ndpipe runs each ndpipe command as a package copied from elsewhere (here a
    directory; in `make bench` a git revision), and each ndpipe row names its before row."""
    source = tmp_path / "old"
    shutil.copytree(ROOT / "ndpipe", source / "ndpipe")
    init = source / "ndpipe" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "0.0.0-old-'))
    baseline = bench.prepare_baseline(str(source), tmp_path / "scratch")
    assert baseline.label == "old"
    # Run from the checkout, as the bench does: the old package, not the checkout's, answers.
    found = subprocess.run(
        [str(baseline.launcher), "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert found.returncode == 0, found.stderr
    assert "0.0.0-old-" in found.stdout

    workloads = bench.with_baseline(bench.WORKLOADS, baseline)
    for before, after in zip(bench.WORKLOADS, workloads, strict=True):
        ndpipe_rows = [c for c in before.contenders if c.needs == "ndpipe"]
        assert len(after.contenders) == len(before.contenders) + len(ndpipe_rows)
        for contender in after.contenders:
            if contender.needs == "ndpipe":
                (twin,) = [c for c in after.contenders if c.tool == contender.before]
                assert twin.tool == f"{contender.tool} (old)"
                assert twin.command == contender.command.replace(bench.ND, bench.ND_BEFORE)
                assert bench.ND not in twin.command


def test_a_revision_that_cannot_be_read_is_named(tmp_path):
    with pytest.raises(RuntimeError, match="cannot read ndpipe at no-such-revision"):
        bench.prepare_baseline("no-such-revision", tmp_path, repo=tmp_path)


def test_the_table_divides_by_duckdb_and_by_before():
    (workload,) = [w for w in bench.WORKLOADS if w.name == "filter"]
    baseline = bench.Baseline("old", Path("/nonexistent"))
    (workload,) = bench.with_baseline([workload], baseline)
    results = {
        ("filter", "ndpipe"): bench.Result(wall=1.0, cpu=1.0, max_rss_mb=20),
        ("filter", "ndpipe (old)"): bench.Result(wall=4.0, cpu=4.0, max_rss_mb=20),
        ("filter", "jq"): bench.Result(wall=8.0, cpu=8.0, max_rss_mb=10),
        ("filter", "duckdb"): bench.Result(wall=2.0, cpu=3.0, max_rss_mb=200),
    }
    table = bench.size_table(results, [workload], check=False)
    rows = {line.split("|")[2].strip(): line for line in table.splitlines()[2:]}
    assert "| 1.00 | 8.00× | 0.50× | 0.25× |" in rows["ndpipe"]
    assert "| 4.00 | 2.00× | 2.00× | – |" in rows["ndpipe (old)"]
    targets = bench.target_rows({1000: results}, [workload])
    assert "| filter ≥ 2× faster than before | 1,000 | 4.00× | yes |" in targets
