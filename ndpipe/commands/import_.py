from __future__ import annotations

import sys
import time
from typing import BinaryIO

import click

from ndpipe.commands import usage, verb
from ndpipe.commands.tenant import notices, tenant_options
from ndpipe.errors import EXIT_DATA
from ndpipe.io import Encoder, ErrorPolicy, Position, Records, SideFile, open_input, read_stream
from ndpipe.ops.import_users import chunk_users
from ndpipe.ops.to_json_array import FRAME, OutputPattern, parse_size
from ndpipe.output import Target
from ndpipe.pipeline import Stage, warn
from ndpipe.progress import InputGauge, Progress
from ndpipe.services.auth0.import_format import MAX_BYTES
from ndpipe.services.auth0.importer import ImportRun, describe
from ndpipe.services.auth0.tenant import Tenant, check_tenant, open_client

NAME = "import"


def _max_bytes(text: str) -> int:
    size = parse_size(text)
    if not FRAME + 2 <= size <= MAX_BYTES:
        raise click.BadParameter(
            f"must be between {FRAME + 2} and {MAX_BYTES} bytes (Auth0 refuses requests "
            "over 512,000 bytes, multipart framing included)"
        )
    return size


def _pattern(text: str | None) -> OutputPattern | None:
    if text is None:
        return None
    pattern = OutputPattern(text)
    if not pattern.numbered:
        raise click.BadParameter("needs {n} to number the files, e.g. 'import/users-{n:04d}.json'")
    return pattern


@verb(NAME)
@click.argument("files", nargs=-1, metavar="[FILE]...")
@tenant_options
@click.option(
    "--connection",
    metavar="NAME|ID",
    help="The database connection to import into (a name, or its con_ id). Required, "
    "except with --dry-run.",
)
@click.option(
    "--upsert",
    is_flag=True,
    help="Update users that exist (matched on email) instead of failing them. Auth0 replaces "
    "app_metadata and user_metadata whole and resets email_verified when it is absent: "
    "send merged records (upsert-patch makes them).",
)
@click.option(
    "--send-completion-email",
    is_flag=True,
    help="Let Auth0 email every tenant owner when each job ends (off: one email per chunk).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help='Write each user that failed as NDJSON: {"user": {...as sent...}, "errors": '
    '[{"code", "message", "path"}], "job" or "input": where}. Give the file back to '
    "ndpipe import (after fixing the users) to send them again. Without it, failures go to "
    "stderr.",
)
@click.option(
    "--external-id",
    "external_prefix",
    metavar="PREFIX",
    help="Each job's external_id is PREFIX-0001, PREFIX-0002, ... in input order. "
    "Default: ndpipe-<UTC time of the run>.",
)
@click.option(
    "--max-bytes",
    metavar="N",
    default=str(MAX_BYTES),
    show_default=True,
    callback=lambda ctx, param, text: _max_bytes(text),
    help="The largest users file to send (a JSON array); at most 500000.",
)
@click.option(
    "--out",
    "pattern",
    metavar="PATTERN",
    callback=usage(_pattern),
    help="Also keep each chunk as a file: 'import/users-{n:04d}.json' ({n} is the chunk "
    "number, from 1). Required with --dry-run.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check and chunk the users and write the --out files, sending nothing; needs no "
    "credentials.",
)
@click.option(
    "--start-at",
    metavar="N",
    type=click.IntRange(min=1),
    default=1,
    help="Send chunks from number N on: with the same input and --max-bytes, the chunks are the "
    "same, so this resumes a run that stopped (its error names N).",
)
@click.option("--quiet", is_flag=True, help="No job log or notices on stderr; only the summary.")
def command(
    files: tuple[str, ...],
    tenant: Tenant,
    connection: str | None,
    upsert: bool,
    send_completion_email: bool,
    report: str | None,
    external_prefix: str | None,
    max_bytes: int,
    pattern: OutputPattern | None,
    dry_run: bool,
    start_at: int,
    quiet: bool,
    on_error: str,
) -> Stage:
    """Import users into an Auth0 database connection through bulk import jobs.

    Reads import-ready users (import-clean or upsert-patch output) as NDJSON on
    stdin, or from FILEs (NDJSON or JSON arrays, gzip or not). Every user is
    checked against Auth0's import schema first: an invalid one goes to the
    report, not to Auth0. The others are sent in files of at most 500,000 bytes,
    never with one email twice in a file or in two jobs running at once, with at
    most 2 jobs active (the tenant's limit: a third waits), and with
    send_completion_email false. Each job is followed to its end and the users
    it failed (GET /api/v2/jobs/ID/errors) go to the report. The summary goes
    to stderr; the exit status is 1 if any user failed or was rejected. The
    application needs create:users, read:users and read:connections.

    \b
    Examples:
      ndpipe import-clean < export.ndjson \\
        | ndpipe import --connection Username-Password-Authentication --report failed.ndjson
      ndpipe import --connection Username-Password-Authentication --upsert failed.ndjson
      ndpipe import-clean < fixtures/users.ndjson \\
        | ndpipe import --dry-run --out 'import/users-{n:04d}.json'
    """
    if dry_run and pattern is None:
        raise click.UsageError("--dry-run writes the chunks it would send: give --out PATTERN")
    if not dry_run and not connection:
        raise click.UsageError("give --connection NAME|ID: the database connection to import into")
    if not dry_run:
        check_tenant(tenant)
    prefix = external_prefix or time.strftime("ndpipe-%Y%m%dT%H%M%SZ", time.gmtime())
    # Made when the run starts, after the whole command line has been checked (a later `then`
    # segment may still be wrong): the report file, the client, the run.
    runs: list[ImportRun] = []
    gauge: InputGauge | None = None

    def source(policy: ErrorPolicy, position: Position) -> Records:
        for path in files:
            stream, name = open_input(path)
            if gauge is not None:
                gauge.opened(stream)
            yield from read_stream(stream, name, policy, position)

    # Without --report, each failed user is a line on stderr, --quiet or not.
    stderr = notices(NAME)

    def sink(records: Records, out: BinaryIO, encode: Encoder, position: Position) -> None:
        nonlocal gauge
        report_file = SideFile(report, "--report") if report else None
        run = ImportRun(
            report=report_file.write if report_file else lambda entry: stderr(describe(entry)),
            notify=notices(NAME, quiet),
            start_at=start_at,
            keep=pattern.path if pattern else None,
        )
        runs.append(run)
        chunks = chunk_users(
            run.counted(records),
            on_invalid=lambda user, problems: run.reject(user, problems, input=str(position)),
            encode=encode,
            max_bytes=max_bytes,
        )
        if dry_run:
            run.write(chunks)
            return
        client = open_client(tenant, notify=notices(NAME, quiet))
        if not quiet:
            # The share of the input read so far gives the time left, when the input is files
            # (or stdin is one); piped input has no known size, and then no estimate.
            gauge = InputGauge(list(files) or ["-"])
            if not files and sys.stdin is not None:
                gauge.opened(sys.stdin.buffer)
        run.send(
            chunks,
            client,
            connection=connection or "",
            upsert=upsert,
            send_completion_email=send_completion_email,
            external_id=lambda number: f"{prefix}-{number:04d}",
            progress=Progress(f"ndpipe {NAME}", enabled=not quiet),
            read=gauge.fraction if gauge is not None else lambda: None,
        )

    def finish() -> int | None:
        line, failed = runs[-1].summary(report)
        warn(NAME, line)
        return EXIT_DATA if failed else None

    outputs: list[tuple[str, Target]] = [("--report", report)] if report else []
    if pattern is not None:
        outputs.append(("--out", pattern.path))
    return Stage(
        NAME,
        source=source if files else None,
        sink=sink,
        finish=finish,
        on_error=on_error,
        inputs=list(files),
        outputs=outputs,
    )
