"""Time ndpipe against jq, gojq, Miller and DuckDB on generated Auth0 users (`make bench`).

    python bench/run.py [--sizes 200000,1000000] [--only WORKLOAD] [--repeat N] [--check]
                        [--baseline REV]

Input files are generated once into bench/data/ by bench/generate.py and reused while the generator
and its settings are unchanged. Each pipeline runs under `bash -o pipefail -c` in a fresh Python
process that reports the wall time, the CPU time and the max RSS of its children
(getrusage(RUSAGE_CHILDREN): the largest single process of the pipeline). Output goes to /dev/null.
A tool that is not installed is skipped with a note; a command that fails is reported in the table
with the tail of its stderr. The tables are printed and written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / "data"
NDPIPE = REPO / "bin" / "ndpipe"
RESULTS = BENCH / "RESULTS.md"

SEED = 1
DUP_RATE = 0.01
HOSTILE_RATE = 0.02
DEFAULT_SIZES = (200_000, 1_000_000)
MICRO_RECORDS = 50_000

# Placeholders in commands, replaced by shell-quoted values at run time.
ND = "@NDPIPE@"
NDJSON = "@NDJSON@"
ARRAY = "@ARRAY@"
PYTHON = "@PYTHON@"
ND_BEFORE = "@NDPIPE_BEFORE@"  # the ndpipe of --baseline

# The revision whose ndpipe runs next to this one (the "before" rows): the last commit before
# the speed work of issue 12 (decode only what the pipeline reads). `--baseline REV` picks another
# commit, tag or a directory holding an ndpipe package; `--baseline none` runs none.
BASELINE = "f2a5fde"

# The measuring child: run the pipeline, then report what the kernel accounted for its processes.
# RUSAGE_CHILDREN covers every waited-for descendant (bash waits for each pipeline stage), and its
# ru_maxrss is the largest of them; the measuring process itself is not included. The pipeline runs
# in its own session, so a watchdog can end all of it on a timeout or when its processes together
# hold more memory than the machine can spare (jq -s and Miller hold several times the input).
MEASURE = r"""
import hashlib, json, os, resource, signal, subprocess, sys, threading, time
command, mode, stderr_path = sys.argv[1:4]
timeout, memory_limit_kb = float(sys.argv[4]), int(sys.argv[5])
page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
start = time.perf_counter()
process = subprocess.Popen(
    ["bash", "-o", "pipefail", "-c", command],
    stdin=subprocess.DEVNULL,
    stdout=subprocess.PIPE if mode == "count" else subprocess.DEVNULL,
    stderr=open(stderr_path, "wb"),
    start_new_session=True,
)
done = threading.Event()
killed = None

def group_rss_kb():
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == process.pid:
                total += int(fields[21]) * page_kb
    return total

def watch():
    global killed
    while not done.wait(0.2):
        if time.perf_counter() - start > timeout:
            killed = f"timeout after {timeout:g} s"
        elif group_rss_kb() > memory_limit_kb:
            killed = f"killed: its processes held over {memory_limit_kb / 1024 ** 2:.1f} GB"
        if killed:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return

threading.Thread(target=watch, daemon=True).start()
out_bytes = out_lines = 0
digest = hashlib.sha256()
if mode == "count":
    while chunk := process.stdout.read(1 << 20):
        out_bytes += len(chunk)
        out_lines += chunk.count(b"\n")
        digest.update(chunk)
returncode = process.wait()
wall = time.perf_counter() - start
done.set()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "returncode": returncode,
    "killed": killed,
    "wall": wall,
    "cpu": usage.ru_utime + usage.ru_stime,
    "max_rss_kb": usage.ru_maxrss,
    "out_bytes": out_bytes,
    "out_lines": out_lines,
    "out_sha256": digest.hexdigest(),
}))
"""


def sh(*argv: str) -> str:
    """A shell command line from arguments, each quoted as needed."""
    return " ".join(shlex.quote(arg) for arg in argv)


# --- the workloads

SELECT_FIELDS = ("email", "name", "created_at", "logins_count")
SALESFORCE_SPECS = (
    "Email Address=email",
    "Created At=created_at",
    "First Name=given_name",
    "Last Name=family_name",
)
# escape-csv's default (OWASP formula) style, written in each peer's own language.
JQ_ESCAPE = (
    'def esc: if type == "string" and (.[0:1] | . == "=" or . == "+" or . == "-" '
    'or . == "@" or . == "\\t" or . == "\\r") then "\'" + . else . end; '
)
JQ_SALESFORCE = (
    JQ_ESCAPE + '["Email Address","Created At","First Name","Last Name"], '
    "(inputs | [.email, .created_at, .given_name, .family_name] | map(esc)) | @csv"
)
MLR_ESCAPE = 'for (k, v in $*) { if (is_string(v) && v =~ "^[-=+@\\t\\r]") { $[k] = "\'" . v } }'
MLR_FALLBACK = (
    'n = is_map($user_metadata) ? $user_metadata["name"] : ""; '
    '$* = {"name": is_string(n) && n != "" ? n : $name, "email": $email}'
)
DUCKDB_ESCAPE = (
    "CREATE MACRO esc(s) AS CASE WHEN left(s, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
    "THEN '''' || s ELSE s END"
)
# Columns are declared so DuckDB keeps dates as the strings they are (auto-detection would turn
# created_at into a TIMESTAMP and print it differently) and never trips on a rare nested shape.
DUCKDB_SELECT = (
    "COPY (SELECT email, name, created_at, logins_count FROM read_json('@PATH@', "
    "format='newline_delimited', columns={email: 'VARCHAR', name: 'VARCHAR', "
    "created_at: 'VARCHAR', logins_count: 'BIGINT'})) TO '/dev/stdout' (FORMAT JSON)"
)
DUCKDB_FALLBACK = (
    "COPY (SELECT coalesce(nullif(user_metadata->>'name', ''), name) AS name, email "
    "FROM read_json('@PATH@', format='newline_delimited', columns={user_metadata: 'JSON', "
    "name: 'VARCHAR', email: 'VARCHAR'})) TO '/dev/stdout' (FORMAT JSON)"
)
DUCKDB_SALESFORCE = (
    'COPY (SELECT esc(email) AS "Email Address", created_at AS "Created At", '
    'esc(given_name) AS "First Name", esc(family_name) AS "Last Name" '
    "FROM read_json('@PATH@', format='newline_delimited', columns={email: 'VARCHAR', "
    "created_at: 'VARCHAR', given_name: 'VARCHAR', family_name: 'VARCHAR'})) "
    "TO '/dev/stdout' (FORMAT CSV, HEADER)"
)
# Whole records come out as the text DuckDB read (read_json_objects keeps each object's text),
# one per line: the same bytes ndpipe writes for a record it passes on unchanged. The JSON
# values are read only where the query needs them, as an Auth0 user would write it.
DUCKDB_LINES = "TO '/dev/stdout' (FORMAT CSV, HEADER false, QUOTE '', DELIMITER '\t')"
DUCKDB_OBJECTS = "read_json_objects('@PATH@', format='newline_delimited')"
# JMESPath's `>` compares numbers only: a string or a missing value is not greater than 10.
DUCKDB_FILTER = (
    f"COPY (SELECT json FROM {DUCKDB_OBJECTS} "
    "WHERE json_type(json, '$.logins_count') IN ('BIGINT', 'UBIGINT', 'DOUBLE') "
    "AND TRY_CAST(json_extract_string(json, '$.logins_count') AS DOUBLE) > 10) "
    f"{DUCKDB_LINES}"
)
# ndpipe sorts null and missing last (SQL's NULLS LAST); ties keep their input order.
DUCKDB_SORT = (
    f"COPY (SELECT json FROM {DUCKDB_OBJECTS} WITH ORDINALITY AS t(json, n) "
    "ORDER BY json_extract_string(json, '$.created_at') NULLS LAST, n) "
    f"{DUCKDB_LINES}"
)
# The first record of each email, in input order; a record without an email (null or missing)
# has no key and is always kept, as ndpipe dedupe does.
DUCKDB_DEDUPE = (
    f"COPY (SELECT json FROM {DUCKDB_OBJECTS} WITH ORDINALITY AS t(json, n) "
    "QUALIFY coalesce(json_type(json, '$.email'), 'NULL') = 'NULL' "
    "OR row_number() OVER (PARTITION BY json_extract(json, '$.email') ORDER BY n) = 1 "
    f"ORDER BY n) {DUCKDB_LINES}"
)
DUCKDB_FROM_ARRAY = (
    f"COPY (SELECT json FROM read_json_objects('@PATH@', format='array')) {DUCKDB_LINES}"
)
# jq keeps the first record of each email (its key as JSON text, so 1 and "1" differ), and
# every record without one. The state is only the set of keys seen, with the verdict on the
# record in hand under the key "" (no JSON text is empty): jq copies a state that its output
# still refers to, which made keeping the record itself in the state quadratic.
JQ_DEDUPE = (
    "foreach inputs as $r ({}; ($r.email | tojson) as $k | "
    'if $r.email == null then .[""] = true elif .[$k] then .[""] = false '
    'else .[$k] = true | .[""] = true end; if .[""] then $r else empty end)'
)
DUCKDB_SCRIPT = "import duckdb, sys\nfor statement in sys.argv[1:]:\n    duckdb.sql(statement)"


@dataclass(frozen=True)
class Contender:
    tool: str  # the row label
    needs: str  # what must be installed: ndpipe, jq, gojq, mlr or duckdb (or ndpipe-before)
    command: str
    shown: str = ""  # how RESULTS.md shows the command, when the shell form is hard to read
    before: str = ""  # for an ndpipe row: the row of the same command run by the --baseline ndpipe


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    contenders: tuple[Contender, ...]
    baseline: str = "jq"  # the row whose wall time the "vs jq" column divides


def duckdb(*statements: str, source: str = NDJSON) -> Contender:
    sql = [s.replace("@PATH@", source) for s in statements]
    shown = "; ".join(sql).replace(NDJSON, "users.ndjson").replace(ARRAY, "users.json")
    return Contender("duckdb", "duckdb", sh(PYTHON, "-c", DUCKDB_SCRIPT, *sql), shown)


def jq_family(program: str, *options: str, source: str = NDJSON) -> tuple[Contender, ...]:
    return tuple(
        Contender(tool, tool, sh(tool, *options, program, source)) for tool in ("jq", "gojq")
    )


WORKLOADS = (
    Workload(
        "select",
        "select of 4 fields",
        (
            Contender("ndpipe", "ndpipe", sh(ND, "select", *SELECT_FIELDS) + f" < {NDJSON}"),
            *jq_family("{email,name,created_at,logins_count}", "-c"),
            Contender(
                "mlr",
                "mlr",
                sh(
                    "mlr", "--ijsonl", "--ojsonl", "template", "-f", ",".join(SELECT_FIELDS), NDJSON
                ),
            ),
            duckdb(DUCKDB_SELECT),
        ),
    ),
    Workload(
        "fallback",
        "select with a || fallback",
        (
            Contender(
                "ndpipe",
                "ndpipe",
                sh(ND, "select", "name=user_metadata.name || name", "email") + f" < {NDJSON}",
            ),
            *jq_family("{name: (.user_metadata.name // .name), email}", "-c"),
            Contender("mlr", "mlr", sh("mlr", "--ijsonl", "--ojsonl", "put", MLR_FALLBACK, NDJSON)),
            duckdb(DUCKDB_FALLBACK),
        ),
    ),
    Workload(
        "salesforce",
        "Salesforce CSV recipe (select, escape-csv, csv)",
        (
            Contender(
                "ndpipe piped",
                "ndpipe",
                sh(ND, "select", *SALESFORCE_SPECS)
                + f" < {NDJSON} | {sh(ND, 'escape-csv')} | {sh(ND, 'csv')}",
            ),
            Contender(
                "ndpipe chained",
                "ndpipe",
                sh(ND, "select", *SALESFORCE_SPECS, "then", "escape-csv", "then", "csv")
                + f" < {NDJSON}",
            ),
            *jq_family(JQ_SALESFORCE, "-rn"),
            Contender(
                "mlr",
                "mlr",
                sh(
                    "mlr",
                    "--ijsonl",
                    "--ocsv",
                    "template",
                    "-f",
                    "email,created_at,given_name,family_name",
                    "then",
                    "rename",
                    "email,Email Address,created_at,Created At,"
                    "given_name,First Name,family_name,Last Name",
                    "then",
                    "put",
                    MLR_ESCAPE,
                    NDJSON,
                ),
            ),
            duckdb(DUCKDB_ESCAPE, DUCKDB_SALESFORCE),
        ),
    ),
    Workload(
        "filter",
        "filter logins_count > 10",
        (
            Contender("ndpipe", "ndpipe", sh(ND, "filter", "logins_count > `10`") + f" < {NDJSON}"),
            *jq_family("select(.logins_count > 10)", "-c"),
            Contender(
                "mlr",
                "mlr",
                sh(
                    "mlr",
                    "--ijsonl",
                    "--ojsonl",
                    "filter",
                    "is_present($logins_count) && $logins_count > 10",
                    NDJSON,
                ),
            ),
            duckdb(DUCKDB_FILTER),
        ),
    ),
    Workload(
        "to-json-array",
        "NDJSON to one JSON array",
        (
            Contender("ndpipe", "ndpipe", sh(ND, "to-json-array") + f" < {NDJSON}"),
            *jq_family(".", "-s", "-c"),
            Contender(
                "mlr", "mlr", sh("mlr", "--ijsonl", "--ojson", "--no-jvstack", "cat", NDJSON)
            ),
        ),
    ),
    Workload(
        "from-json-array",
        "JSON array to NDJSON (jq: --stream; jq .[]: whole array in memory)",
        (
            Contender("ndpipe", "ndpipe", sh(ND, "fetch", ARRAY)),
            *jq_family("fromstream(1|truncate_stream(inputs))", "-cn", "--stream", source=ARRAY),
            Contender("jq .[]", "jq", sh("jq", "-c", ".[]", ARRAY)),
            Contender("mlr", "mlr", sh("mlr", "--ijson", "--ojsonl", "cat", ARRAY)),
            duckdb(DUCKDB_FROM_ARRAY, source=ARRAY),
        ),
    ),
    Workload(
        "sort",
        "sort by created_at",
        (
            Contender("ndpipe", "ndpipe", sh(ND, "sort", "-k", "created_at") + f" < {NDJSON}"),
            # null and missing last, as ndpipe (and SQL's NULLS LAST) sorts them
            *jq_family("sort_by(.created_at == null, .created_at)[]", "-s", "-c"),
            Contender(
                "mlr", "mlr", sh("mlr", "--ijsonl", "--ojsonl", "sort", "-f", "created_at", NDJSON)
            ),
            duckdb(DUCKDB_SORT),
        ),
    ),
    Workload(
        "dedupe",
        "dedupe by email (the first record of each)",
        (
            Contender("ndpipe", "ndpipe", sh(ND, "dedupe", "-k", "email") + f" < {NDJSON}"),
            *jq_family(JQ_DEDUPE, "-cn"),
            duckdb(DUCKDB_DEDUPE),
        ),
    ),
)
WORKLOAD_NAMES = [w.name for w in WORKLOADS] + ["jmespath"]


# --- measuring


@dataclass
class Result:
    wall: float | None = None
    cpu: float | None = None
    max_rss_mb: float | None = None
    out_lines: int | None = None
    out_mb: float | None = None
    out_sha256: str | None = None
    note: str = ""  # why there is no measurement: skipped, failed or timed out


def tail(text: str, limit: int = 160) -> str:
    """The end of a stderr text on one line, safe inside a markdown table cell."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    flat = " / ".join(lines[-2:])
    if len(flat) > limit:
        flat = "…" + flat[-limit:]
    return flat.replace("|", "\\|").replace("`", "'")


def measure(command: str, *, count: bool, timeout: float, memory_limit_mb: int) -> Result:
    """Run a shell pipeline once in a fresh measuring process."""
    argv = [
        sys.executable,
        "-c",
        MEASURE,
        command,
        "count" if count else "time",
        "",  # the stderr file, filled in below
        str(timeout),
        str(memory_limit_mb * 1024),
    ]
    with tempfile.NamedTemporaryFile(prefix="ndpipe-bench-", suffix=".stderr") as stderr_file:
        argv[5] = stderr_file.name
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
        try:
            # The child enforces the timeout; this is only a backstop should it hang itself.
            out, _ = child.communicate(timeout=timeout + 120)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return Result(note=f"timeout after {timeout:g} s (measuring process hung)")
        stderr = Path(stderr_file.name).read_text(errors="replace")
    if child.returncode != 0:
        return Result(note=f"failed: measuring process exited {child.returncode}")
    report = json.loads(out)
    if report["killed"]:
        return Result(note=report["killed"])
    if report["returncode"] != 0:
        return Result(note=f"failed (exit {report['returncode']}): {tail(stderr)}")
    return Result(
        wall=report["wall"],
        cpu=report["cpu"],
        max_rss_mb=report["max_rss_kb"] / 1024,
        out_lines=report["out_lines"] if count else None,
        out_mb=report["out_bytes"] / 1e6 if count else None,
        out_sha256=report["out_sha256"] if count else None,
    )


def best_of(command: str, *, repeat: int, timeout: float, memory_limit_mb: int) -> Result:
    best: Result | None = None
    for _ in range(repeat):
        result = measure(command, count=False, timeout=timeout, memory_limit_mb=memory_limit_mb)
        if result.wall is None:
            return result  # a failure or timeout will not improve by repeating
        if best is None or result.wall < (best.wall or 0.0):
            best = result
    assert best is not None
    return best


# --- input data


def generator_fingerprint(n: int) -> dict[str, Any]:
    source = (BENCH / "generate.py").read_bytes()
    return {
        "n": n,
        "seed": SEED,
        "dup_rate": DUP_RATE,
        "hostile_rate": HOSTILE_RATE,
        "generator_sha256": hashlib.sha256(source).hexdigest(),
    }


def ensure_data(n: int, log: Callable[[str], None]) -> tuple[Path, Path, float | None]:
    """The NDJSON and JSON-array files for n users, generated unless cached; and the seconds that
    generating the NDJSON took (None when cached)."""
    sys.path.insert(0, str(BENCH))
    import generate

    DATA.mkdir(parents=True, exist_ok=True)
    ndjson = DATA / f"users-{n}.ndjson"
    array = DATA / f"users-{n}.json"
    stamp = DATA / f"users-{n}.meta.json"
    fingerprint = generator_fingerprint(n)
    if (
        ndjson.exists()
        and array.exists()
        and stamp.exists()
        and json.loads(stamp.read_text()) == fingerprint
    ):
        return ndjson, array, None

    log(f"generating {n:,} users into {ndjson.relative_to(REPO)} ...")
    stamp.unlink(missing_ok=True)
    partial = ndjson.with_suffix(".ndjson.partial")
    start = time.perf_counter()
    with partial.open("wb") as out:
        records = generate.users(n, seed=SEED, dup_rate=DUP_RATE, hostile_rate=HOSTILE_RATE)
        generate.write(records, out)
    seconds = time.perf_counter() - start
    partial.replace(ndjson)
    log(f"  {seconds:.1f} s, {ndjson.stat().st_size / 1e6:,.0f} MB")

    # The array holds the same records, one per line, so both inputs carry identical data.
    partial = array.with_suffix(".json.partial")
    with ndjson.open("rb") as source, partial.open("wb") as out:
        out.write(b"[\n")
        first = True
        for line in source:
            if not first:
                out.write(b",\n")
            out.write(line.rstrip(b"\n"))
            first = False
        out.write(b"\n]\n")
    partial.replace(array)
    stamp.write_text(json.dumps(fingerprint))
    return ndjson, array, seconds


def warm_cache(paths: Iterable[Path]) -> None:
    """Read the inputs once, so the first timed tool does not pay for the disk alone."""
    for path in paths:
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass


# --- the ndpipe of another revision (--baseline)


@dataclass(frozen=True)
class Baseline:
    label: str  # how its rows are named: "ndpipe (LABEL)"
    launcher: Path  # runs that ndpipe, as bin/ndpipe runs this one


def prepare_baseline(revision: str, directory: Path, repo: Path = REPO) -> Baseline:
    """The ndpipe package of `revision` (a git revision of `repo`, or a directory that holds an
    ndpipe package) in `directory`, with a launcher that runs it on this checkout's interpreter.

    Raises RuntimeError with the reason when it cannot be had.
    """
    root = directory / "baseline"
    root.mkdir(parents=True)
    given = Path(revision)
    if (given / "ndpipe" / "__init__.py").is_file():
        shutil.copytree(given / "ndpipe", root / "ndpipe")
        label = given.resolve().name
    else:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", revision, "ndpipe"],
            capture_output=True,
        )
        if archive.returncode != 0:
            reason = tail(archive.stderr.decode(errors="replace")) or "git archive failed"
            raise RuntimeError(f"cannot read ndpipe at {revision}: {reason}")
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
        label = revision
    venv_python = repo / ".venv" / "bin" / "python"
    python = str(venv_python) if os.access(venv_python, os.X_OK) else sys.executable
    launcher = directory / "ndpipe-before"
    launcher.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}} "
        # -P: not the current directory first on the path, which in a checkout is this ndpipe
        f'exec {shlex.quote(python)} -P -m ndpipe "$@"\n'
    )
    launcher.chmod(0o755)
    version = subprocess.run([str(launcher), "--version"], capture_output=True, text=True)
    if version.returncode != 0:
        raise RuntimeError(f"the ndpipe of {revision} does not run: {tail(version.stderr)}")
    return Baseline(label, launcher)


def with_baseline(workloads: Iterable[Workload], baseline: Baseline) -> list[Workload]:
    """Each workload with a "before" row after each ndpipe row: the same command, run by the
    baseline's ndpipe."""
    expanded = []
    for workload in workloads:
        contenders: list[Contender] = []
        for contender in workload.contenders:
            if contender.needs != "ndpipe":
                contenders.append(contender)
                continue
            before = Contender(
                f"{contender.tool} ({baseline.label})",
                "ndpipe-before",
                contender.command.replace(ND, ND_BEFORE),
                contender.shown,
            )
            contenders += [dataclasses.replace(contender, before=before.tool), before]
        expanded.append(dataclasses.replace(workload, contenders=tuple(contenders)))
    return expanded


# --- the machine and the tools


def tool_available(needs: str) -> bool:
    if needs == "ndpipe":
        return NDPIPE.exists()
    if needs == "ndpipe-before":
        return True  # its rows exist only once the --baseline ndpipe is built
    if needs == "duckdb":
        return importlib.util.find_spec("duckdb") is not None
    return shutil.which(needs) is not None


def first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def tool_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    if tool_available("ndpipe"):
        versions["ndpipe"] = first_line([str(NDPIPE), "--version"])
    for tool in ("jq", "gojq", "mlr"):
        versions[tool] = (
            first_line([tool, "--version"]) if tool_available(tool) else "not installed"
        )
    if tool_available("duckdb"):
        versions["duckdb"] = (
            "DuckDB "
            + first_line([sys.executable, "-c", "import duckdb; print(duckdb.__version__)"])
            + " (Python package)"
        )
    else:
        versions["duckdb"] = "not installed (optional: pip install duckdb)"
    versions["python"] = f"Python {platform.python_version()}"
    try:
        import orjson

        versions["orjson"] = f"orjson {orjson.__version__}"
    except ImportError:
        pass
    return versions


def total_memory_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def default_memory_limit_mb() -> int:
    total = total_memory_mb()
    return total * 3 // 4 if total else 8192


def machine() -> str:
    cpu = "unknown CPU"
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpus} CPUs ({cpu}){memory}, {platform.system()} {platform.release()}"


# --- the JMESPath micro-benchmark (in process: it times evaluation only, no parsing or writing)

MICRO_EXPRESSIONS = (
    "{email: email, name: user_metadata.name || name}",
    "user_metadata.name || name",
    "email",
    "logins_count > `10`",
    "identities[0].connection",
    "app_metadata.roles[?@ == 'admin']",
)


def jmespath_micro(ndjson: Path, repeat: int) -> list[tuple[str, float, float]] | str:
    """Per expression: microseconds per record for jmespath's interpreter and for ndpipe's
    compiled form; or a note saying why it could not run."""
    sys.path.insert(0, str(REPO))
    try:
        import jmespath
        import orjson

        from ndpipe.jmespath_compiler import compile_expression  # type: ignore[import-not-found]
    except ImportError as error:
        return f"skipped: {error}"

    records = []
    with ndjson.open("rb") as f:
        for line in f:
            records.append(orjson.loads(line))
            if len(records) >= MICRO_RECORDS:
                break

    def best_seconds(search: Callable[[Any], Any]) -> float:
        best = float("inf")
        for _ in range(max(repeat, 3)):
            start = time.perf_counter()
            for record in records:
                search(record)
            best = min(best, time.perf_counter() - start)
        return best

    rows = []
    for expression in MICRO_EXPRESSIONS:
        interpreted = best_seconds(jmespath.compile(expression).search)
        compiled = best_seconds(compile_expression(expression))
        per_record = 1e6 / len(records)
        rows.append((expression, interpreted * per_record, compiled * per_record))
    return rows


# --- reporting


def code(text: str) -> str:
    """A markdown code span that may itself hold backticks (JMESPath literals do)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(numerator: Result | None, denominator: Result | None) -> str:
    """numerator's wall time divided by denominator's, as `0.42×`, or – when either is missing."""
    if numerator is None or denominator is None or not numerator.wall or not denominator.wall:
        return "–"
    return f"{numerator.wall / denominator.wall:.2f}×"


def size_table(
    results: dict[tuple[str, str], Result], workloads: Iterable[Workload], check: bool
) -> str:
    header = "| workload | tool | wall s | vs jq | ÷ DuckDB | after ÷ before | CPU s | max RSS MB |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if check:
        header += " out lines | out MB | same output as ndpipe |"
        rule += "---:|---:|---|"
    rows = [header, rule]
    for workload in workloads:
        baseline = results.get((workload.name, workload.baseline))
        duck = results.get((workload.name, "duckdb"))
        reference = results.get((workload.name, workload.contenders[0].tool))
        for contender in workload.contenders:
            result = results.get((workload.name, contender.tool))
            if result is None:
                continue
            if result.wall is None:
                row = f"| {workload.name} | {contender.tool} | {result.note} | | | | | |"
                rows.append(row + (" | | |" if check else ""))
                continue
            before = results.get((workload.name, contender.before)) if contender.before else None
            row = (
                f"| {workload.name} | {contender.tool} | {fmt(result.wall)} "
                f"| {ratio(baseline, result)} | {ratio(result, duck)} | {ratio(result, before)} "
                f"| {fmt(result.cpu)} | {fmt(result.max_rss_mb, 0)} |"
            )
            if check:
                row += f" {result.out_lines if result.out_lines is not None else '–'} "
                row += f"| {fmt(result.out_mb, 1)} | {same_output(result, reference)} |"
            rows.append(row)
    return "\n".join(rows)


def same_output(result: Result, reference: Result | None) -> str:
    """Whether a row wrote the very bytes the workload's first ndpipe row wrote, else how its
    line count compares."""
    if reference is None or reference.out_sha256 is None or result.out_sha256 is None:
        return "–"
    if result.out_sha256 == reference.out_sha256:
        return "identical"
    if result.out_lines == reference.out_lines:
        return "same line count, other bytes"
    return f"differs ({result.out_lines} vs {reference.out_lines} lines)"


def target_rows(
    all_results: dict[int, dict[tuple[str, str], Result]], workloads: Iterable[Workload] = ()
) -> list[str]:
    """The targets of issues 6 and 12, checked against the measurements that exist."""
    rows = []
    workloads = list(workloads)

    def speedup(
        results: dict[tuple[str, str], Result], workload: str, tool: str, base: str
    ) -> float | None:
        mine, theirs = results.get((workload, tool)), results.get((workload, base))
        if mine is None or theirs is None or mine.wall is None or theirs.wall is None:
            return None
        return theirs.wall / mine.wall

    checks = (
        ("select 4 fields ≥ 3× jq", "select", "ndpipe", "jq", 3.0),
        ("select with || ≥ 3× jq", "fallback", "ndpipe", "jq", 3.0),
        ("Salesforce piped ≥ 3× jq", "salesforce", "ndpipe piped", "jq", 3.0),
        ("Salesforce chained ≥ 3× jq", "salesforce", "ndpipe chained", "jq", 3.0),
        ("to-json-array ≥ 10× jq -s", "to-json-array", "ndpipe", "jq", 10.0),
        ("JSON array to NDJSON ≥ 20× jq --stream", "from-json-array", "ndpipe", "jq", 20.0),
    )
    for size, results in sorted(all_results.items()):
        for label, workload, tool, base, goal in checks:
            value = speedup(results, workload, tool, base)
            if value is None:
                continue
            met = "yes" if value >= goal else "no"
            rows.append(f"| {label} | {size:,} | {value:.2f}× | {met} |")
        chained = results.get(("salesforce", "ndpipe chained"))
        duck = results.get(("salesforce", "duckdb"))
        if chained and duck and chained.wall and duck.wall:
            times = chained.wall / duck.wall
            met = "yes" if times <= 2.0 else "no"
            met += " (aim ≤ 1.5×: yes)" if times <= 1.5 else " (aim ≤ 1.5×: no)"
            rows.append(
                f"| Salesforce chained wall ≤ 2× DuckDB | {size:,} | {times:.2f}× | {met} |"
            )
            if chained.max_rss_mb and duck.max_rss_mb:
                share = chained.max_rss_mb / duck.max_rss_mb
                met = "yes" if share <= 0.25 else "no"
                rows.append(
                    f"| Salesforce chained RSS ≤ ¼ DuckDB | {size:,} | {share:.2f}× "
                    f"({chained.max_rss_mb:.0f} vs {duck.max_rss_mb:.0f} MB) | {met} |"
                )
        # Issue 12: at least 2× faster than the ndpipe before it, and nothing slower.
        for workload_name, tool in (
            ("filter", "ndpipe"),
            ("sort", "ndpipe"),
            ("dedupe", "ndpipe"),
            ("from-json-array", "ndpipe"),
        ):
            contender = next(
                (
                    c
                    for w in workloads
                    if w.name == workload_name
                    for c in w.contenders
                    if c.tool == tool
                ),
                None,
            )
            if contender is None or not contender.before:
                continue
            value = speedup(results, workload_name, tool, contender.before)
            if value is not None:
                met = "yes" if value >= 2.0 else "no"
                rows.append(
                    f"| {workload_name} ≥ 2× faster than before | {size:,} | {value:.2f}× | {met} |"
                )
        slowest = None
        for w in workloads:
            for c in w.contenders:
                if c.before:
                    value = speedup(results, w.name, c.before, c.tool)  # after ÷ before
                    if value is not None and (slowest is None or value > slowest[0]):
                        slowest = (value, f"{w.name} / {c.tool}")
        if slowest is not None:
            met = "yes" if slowest[0] <= 1.0 else "no"
            rows.append(
                f"| nothing slower than before (largest after ÷ before: {slowest[1]}) "
                f"| {size:,} | {slowest[0]:.2f}× | {met} |"
            )
    # Flat memory: the max RSS at the largest size against the smallest (5 MB of slack for noise).
    for workload, label in (("to-json-array", "to-json-array"), ("from-json-array", "JSON array")):
        measured = [
            (size, result.max_rss_mb)
            for size, results in sorted(all_results.items())
            if (result := results.get((workload, "ndpipe"))) and result.max_rss_mb
        ]
        if len(measured) >= 2:
            (small, small_mb), (large, large_mb) = measured[0], measured[-1]
            met = "yes" if large_mb <= small_mb * 1.25 + 5 else "no"
            rows.append(
                f"| {label} flat memory | {small:,} → {large:,} | "
                f"{small_mb:.0f} → {large_mb:.0f} MB | {met} |"
            )
    return rows


def report(
    *,
    args: argparse.Namespace,
    sizes: list[int],
    workloads: list[Workload],
    all_results: dict[int, dict[tuple[str, str], Result]],
    inputs: dict[int, tuple[Path, Path, float | None]],
    versions: dict[str, str],
    micro: list[tuple[str, float, float]] | str | None,
) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# ndpipe benchmark",
        "",
        f"Written by `python bench/run.py{' ' + argv if argv else ''}` on {today}.",
        "",
        f"- Machine: {machine()}.",
        "- Tools: " + "; ".join(versions.values()) + ".",
        f"- Input: Auth0-shaped users from `bench/generate.py --seed {SEED} "
        f"--dup-rate {DUP_RATE} --hostile-rate {HOSTILE_RATE}`, as NDJSON and as a JSON array "
        "with one record per line; every command's output goes to /dev/null "
        "(DuckDB's COPY writes to /dev/stdout, which is /dev/null).",
        f"- wall: best of {args.repeat} run(s). vs jq: jq's wall time divided by the tool's "
        "(above 1 is faster than jq; for the JSON array the jq row is `jq --stream`). "
        "÷ DuckDB: the tool's wall time divided by DuckDB's (below 1 is faster than DuckDB). "
        "after ÷ before: an ndpipe row's wall time divided by that of the row below it, the same "
        f"command run by the ndpipe of `{args.baseline}` (below 1 is faster than before). "
        "CPU: user + system time of all the pipeline's processes. "
        "max RSS: the largest single process of the pipeline.",
        "",
    ]
    for size in sizes:
        ndjson, array, generated = inputs[size]
        lines.append(f"## {size:,} users")
        lines.append("")
        note = (
            f"Input {ndjson.stat().st_size / 1e6:,.0f} MB NDJSON, "
            f"{array.stat().st_size / 1e6:,.0f} MB JSON array"
        )
        if generated is not None:
            note += f"; generating the NDJSON took {generated:.1f} s"
        lines += [note + ".", "", size_table(all_results[size], workloads, args.check), ""]

    targets = target_rows(all_results, workloads)
    if targets:
        lines += [
            "## Targets (issues 6 and 12)",
            "",
            "| target | users | measured | met |",
            "|---|---:|---:|---|",
            *targets,
            "",
        ]
    if micro is not None:
        lines += ["## JMESPath: compiled closures vs jmespath's interpreter", ""]
        if isinstance(micro, str):
            lines += [micro, ""]
        else:
            lines += [
                f"Evaluation only, in one process, over the first {MICRO_RECORDS:,} generated "
                "users; best of at least 3 passes.",
                "",
                "| expression | jmespath µs/record | compiled µs/record | speedup |",
                "|---|---:|---:|---:|",
            ]
            for expression, interpreted, compiled in micro:
                shown = code(expression).replace("|", "\\|")
                lines.append(
                    f"| {shown} | {interpreted:.2f} | {compiled:.2f} | "
                    f"{interpreted / compiled:.2f}× |"
                )
            lines.append("")
    lines += ["## Commands", ""]
    for workload in workloads:
        lines.append(f"- **{workload.name}**: {workload.title}")
        for contender in workload.contenders:
            shown = contender.shown or contender.command.replace(ND, "ndpipe")
            shown = shown.replace(ND_BEFORE, "ndpipe")
            shown = shown.replace(NDJSON, "users.ndjson").replace(ARRAY, "users.json")
            lines.append(f"  - {contender.tool}: {code(shown)}")
    lines.append("")
    return "\n".join(lines)


# --- main


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark ndpipe against jq, gojq, Miller and DuckDB.",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated user counts (default 200000,1000000)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=WORKLOAD_NAMES,
        help="run only this workload (repeatable); 'jmespath' is the in-process micro-benchmark",
    )
    parser.add_argument("--tools", help="comma-separated tools to run (ndpipe,jq,gojq,mlr,duckdb)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per command; the best counts")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds per run (default 1800)"
    )
    parser.add_argument(
        "--memory-limit",
        type=int,
        default=default_memory_limit_mb(),
        help="MB a pipeline's processes may hold together before it is killed "
        "(default: 3/4 of RAM)",
    )
    parser.add_argument(
        "--check", action="store_true", help="also run each command once counting its output"
    )
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        metavar="REV",
        help=f"also run the ndpipe of this git revision (or of a directory holding an ndpipe "
        f"package) as the 'before' rows; 'none' for no such rows (default {BASELINE})",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=RESULTS,
        help="markdown file (default bench/RESULTS.md)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    selected = set(args.only or WORKLOAD_NAMES)
    tools = set(args.tools.split(",")) if args.tools else None
    workloads = [w for w in WORKLOADS if w.name in selected]
    versions = tool_versions()
    with tempfile.TemporaryDirectory(prefix="ndpipe-bench-") as scratch:
        substitutions = {ND: sh(str(NDPIPE)), PYTHON: sh(sys.executable)}
        if args.baseline != "none" and (tools is None or "ndpipe" in tools):
            try:
                baseline = prepare_baseline(args.baseline, Path(scratch))
            except RuntimeError as error:
                log(f"note: no 'before' rows: {error}")
            else:
                workloads = with_baseline(workloads, baseline)
                substitutions[ND_BEFORE] = sh(str(baseline.launcher))
                versions["ndpipe-before"] = f"ndpipe of {args.baseline} as 'before'"
        return run_all(args, workloads, tools, versions, substitutions, log)


def run_all(
    args: argparse.Namespace,
    workloads: list[Workload],
    tools: set[str] | None,
    versions: dict[str, str],
    substitutions: dict[str, str],
    log: Callable[[str], None],
) -> int:
    selected = set(args.only or WORKLOAD_NAMES)
    for needs in ("jq", "gojq", "mlr", "duckdb", "ndpipe"):
        if not tool_available(needs):
            log(f"note: {needs} is not available; its rows are skipped")

    all_results: dict[int, dict[tuple[str, str], Result]] = {}
    inputs: dict[int, tuple[Path, Path, float | None]] = {}
    for size in args.sizes:
        inputs[size] = ndjson, array, _ = ensure_data(size, log)
        warm_cache((ndjson, array))
        paths = {NDJSON: sh(str(ndjson)), ARRAY: sh(str(array))}
        results: dict[tuple[str, str], Result] = {}
        all_results[size] = results
        for workload in workloads:
            for contender in workload.contenders:
                if tools is not None and contender.needs.split("-")[0] not in tools:
                    continue
                label = f"[{size:,}] {workload.name} / {contender.tool}"
                if not tool_available(contender.needs):
                    results[(workload.name, contender.tool)] = Result(
                        note=f"skipped: {contender.needs} not installed"
                    )
                    continue
                command = contender.command
                for placeholder, value in {**substitutions, **paths}.items():
                    command = command.replace(placeholder, value)
                log(f"{label} ...")
                limits = {"timeout": args.timeout, "memory_limit_mb": args.memory_limit}
                result = best_of(command, repeat=args.repeat, **limits)
                if args.check and result.wall is not None:
                    counted = measure(command, count=True, **limits)
                    result.out_lines, result.out_mb = counted.out_lines, counted.out_mb
                    result.out_sha256 = counted.out_sha256
                results[(workload.name, contender.tool)] = result
                if result.wall is None:
                    log(f"{label}: {result.note}")
                else:
                    log(f"{label}: {result.wall:.2f} s, {result.max_rss_mb:.0f} MB")
        print(f"\n## {size:,} users\n\n{size_table(results, workloads, args.check)}\n", flush=True)

    micro = None
    if "jmespath" in selected:
        log("JMESPath micro-benchmark ...")
        micro = jmespath_micro(inputs[min(args.sizes)][0], args.repeat)
    text = report(
        args=args,
        sizes=args.sizes,
        workloads=workloads,
        all_results=all_results,
        inputs=inputs,
        versions=versions,
        micro=micro,
    )
    args.output.write_text(text)
    targets = target_rows(all_results, workloads)
    if targets:
        print("## Targets (issues 6 and 12)\n")
        print("| target | users | measured | met |\n|---|---:|---:|---|")
        print("\n".join(targets) + "\n")
    if isinstance(micro, list):
        print(text[text.index("## JMESPath") : text.index("## Commands")])
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
