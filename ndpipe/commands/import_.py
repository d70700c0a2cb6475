from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from ndpipe.commands import usage, verb
from ndpipe.commands.tenant import Tenant, check_tenant, open_client, tenant_options
from ndpipe.errors import EXIT_DATA
from ndpipe.io import (
    Encoder,
    ErrorPolicy,
    Position,
    Record,
    Records,
    SideFile,
    open_input,
    read_stream,
)
from ndpipe.ops.import_users import Chunk, chunk_users, report_entry
from ndpipe.ops.to_json_array import (
    AUTH0_MAX_BYTES,
    FRAME,
    OutputPattern,
    parse_size,
)
from ndpipe.output import AtomicFile, Target
from ndpipe.pipeline import Stage, plural, warn
from ndpipe.progress import InputGauge, Progress, clear_line, duration
from ndpipe.services.auth0.schema import Problem

if TYPE_CHECKING:
    from ndpipe.services.auth0.importer import ImportStats

NAME = "import"


def _max_bytes(text: str) -> int:
    size = parse_size(text)
    if not FRAME + 2 <= size <= AUTH0_MAX_BYTES:
        raise click.BadParameter(
            f"must be between {FRAME + 2} and {AUTH0_MAX_BYTES} bytes (Auth0 refuses requests "
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


def write_chunk(path: str, chunk: Chunk) -> None:
    """A chunk's JSON array to PATH, complete or not at all (see ndpipe.output)."""
    file = AtomicFile(path, path, make_directories=True)
    try:
        file.write(chunk.array())
        file.commit()
    except BaseException:
        file.abort()
        raise


def describe(entry: Record) -> str:
    """A --report line as one line of stderr, for runs without --report."""
    user = entry["user"]
    who = user.get("email") if isinstance(user, dict) else None
    where = entry.get("input") or f"job {entry.get('job')}"
    reasons = "; ".join(
        f"{e.get('code')} {e.get('path') or '(user)'}: {e.get('message')}"
        for e in entry["errors"]
        if isinstance(e, dict)
    )
    return f"{where}: {who or 'user'} failed: {reasons}"


def progress_text(stats: ImportStats, elapsed: float, read: float | None) -> str:
    """The progress line: jobs, users imported so far, the rate, and the time left when the
    share READ of the input is known."""
    imported = sum(stats.totals[key] for key in ("inserted", "updated", "failed"))
    rate = imported / elapsed if elapsed > 0 else 0.0
    text = (
        f"{stats.done}/{plural(stats.jobs, 'job')} done, {imported:,} "
        f"user{'' if imported == 1 else 's'} imported, {rate:,.{1 if rate < 10 else 0}f} users/s"
    )
    if read is not None and read >= 1:
        text += ", all input read"
    elif read:
        text += f", about {duration(elapsed * (1 - read) / read)} left"
    return text


def summary(
    counts: dict[str, int], stats: ImportStats | None, report: str | None
) -> tuple[str, int]:
    """The closing line on stderr, and how many users did not make it (None stats: dry run)."""
    read, rejected = counts["read"], counts["rejected"]
    report_note = f" (in {report})" if report else ""
    if counts["skipped"]:
        skipped = counts["skipped"]
        read_text = f"{plural(read, 'user')} read ({skipped} in chunks before --start-at)"
    else:
        read_text = f"{plural(read, 'user')} read"
    if stats is None:
        rejects = f"{rejected} rejected{report_note if rejected else ''}"
        line = (
            f"dry run: {read_text}; {counts['chunked']} in "
            f"{plural(counts['chunks'], 'file')}, {rejects}; nothing was sent"
        )
        return line, rejected
    totals = stats.totals
    line = (
        f"{read_text}, {stats.users} sent in {plural(stats.jobs, 'job')}: "
        f"{totals['inserted']} inserted, {totals['updated']} updated, {totals['failed']} failed"
    )
    if stats.lost:
        line += f", {stats.lost} in failed jobs"
    line += f"; {rejected} rejected before sending"
    failed = totals["failed"] + stats.lost + rejected
    if failed:
        line += f"; {plural(failed, 'user')} to fix{report_note}"
    return line, failed


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
    default=str(AUTH0_MAX_BYTES),
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
    counts = {"read": 0, "rejected": 0, "chunks": 0, "chunked": 0, "skipped": 0}
    outcome: dict[str, Any] = {}

    def note(message: str) -> None:
        if not quiet:
            clear_line()
            warn(NAME, message)

    # The report and the client are opened when the run starts, after the whole command line
    # has been checked (a later `then` segment may still be wrong).
    opened: dict[str, Any] = {}

    def write_report(entry: Record) -> None:
        handle = opened.get("report")
        if handle is not None:
            handle.write(entry)
        else:
            clear_line()
            warn(NAME, describe(entry))

    def source(policy: ErrorPolicy, position: Position) -> Records:
        for path in files:
            stream, name = open_input(path)
            gauge = opened.get("gauge")
            if gauge is not None:
                gauge.opened(stream)
            yield from read_stream(stream, name, policy, position)

    def sink(records: Records, out: BinaryIO, encode: Encoder, position: Position) -> None:
        if report:
            opened["report"] = SideFile(report, "--report")
        client = None if dry_run else open_client(NAME, tenant, quiet=quiet)
        if client is not None and not quiet:
            # The share of the input read so far gives the time left, when the input is files
            # (or stdin is one); piped input has no known size, and then no estimate.
            gauge = opened["gauge"] = InputGauge(list(files) or ["-"])
            if not files and sys.stdin is not None:
                gauge.opened(sys.stdin.buffer)

        def counted() -> Iterator[Record]:
            for record in records:
                counts["read"] += 1
                yield record

        def invalid(user: Record, problems: list[Problem]) -> None:
            counts["rejected"] += 1
            errors = [problem.as_dict() for problem in problems]
            write_report(report_entry(user, errors, input=str(position)))

        def chunks() -> Iterator[Chunk]:
            for chunk in chunk_users(
                counted(), on_invalid=invalid, encode=encode, max_bytes=max_bytes
            ):
                if chunk.number < start_at:
                    counts["skipped"] += chunk.count
                    continue
                counts["chunks"] += 1
                counts["chunked"] += chunk.count
                if pattern is not None:
                    path = pattern.path(chunk.number)
                    write_chunk(path, chunk)
                    if dry_run:
                        note(f"wrote {path}: {plural(chunk.count, 'user')}, "
                             f"{len(chunk.array())} bytes")  # fmt: skip
                yield chunk

        if client is None:
            for _ in chunks():
                pass
            return
        from ndpipe.services.auth0.importer import Importer

        line = Progress(f"ndpipe {NAME}", enabled=not quiet)

        def show(stats: ImportStats) -> None:
            if line.enabled:
                read = opened["gauge"].fraction()
                line.update(progress_text(stats, line.elapsed, read))

        with client:
            importer = Importer(
                client,
                connection_id=client.resolve_connection(connection or ""),
                upsert=upsert,
                send_completion_email=send_completion_email,
                external_id=lambda number: f"{prefix}-{number:04d}",
                report=write_report,
                notify=note,
                progress=show,
            )
            outcome["stats"] = importer.stats
            try:
                importer.run(chunks())
            finally:
                line.close()

    def finish() -> int | None:
        stats = outcome.get("stats")
        line, failed = summary(counts, stats, report)
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
