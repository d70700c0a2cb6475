"""A bulk import run, within Auth0's limits (AUTH0.md §2): chunks of users sent as import jobs,
each followed to its end, every failed user reported, and the counts for the summary.

At most two jobs are active at once (a tenant's limit); a chunk that shares an email with an
active job waits for that job to end, so no email is ever in two running jobs. Each finished
job's summary is added up and its /errors become report lines holding the user as it was sent
(Auth0's copy has password hashes redacted). A job that fails puts all its users in the report.

The chunks come from the caller (ndpipe.ops.import_users packs them), and so do the report's
writer and the notices' destination: this module reads no input and writes no stream itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ndpipe.output import AtomicFile
from ndpipe.progress import Progress, duration
from ndpipe.services.auth0.import_format import Chunk, report_entry
from ndpipe.services.auth0.schema import Problem
from ndpipe.services.jobs import Active, JobRunner
from ndpipe.text import plural

if TYPE_CHECKING:
    from ndpipe.services.auth0.client import Auth0Client

T = TypeVar("T")
Report = Callable[[dict[str, Any]], None]
ACTIVE_JOBS = 2  # per tenant (AUTH0.md §2.2)
SUMMARY_KEYS = ("inserted", "updated", "failed", "total")


@dataclass
class ImportStats:
    """What Auth0 did with the jobs sent."""

    users: int = 0  # sent to Auth0
    jobs: int = 0  # sent
    done: int = 0  # ended, completed or not
    failed_jobs: int = 0
    lost: int = 0  # users of jobs that failed
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUMMARY_KEYS, 0))


@dataclass
class ImportCounts:
    """What the run did before sending: users read, rejected, and packed into chunks."""

    read: int = 0
    rejected: int = 0  # failed the import schema, or too large for a file
    chunks: int = 0  # from --start-at on
    chunked: int = 0  # users in those chunks
    skipped: int = 0  # users in the chunks before --start-at


class ImportRun:
    """One run of bulk import: count the users, report those rejected before sending, send the
    chunks from number START_AT on (or, dry, only write them), and sum it all up.

    - report(entry): a failed user's report line (see import_format.report_entry);
    - notify(message): a notice (a job submitted, a job ended, a file written);
    - keep(number) -> path: where to keep a copy of chunk NUMBER, if anywhere.

    `send` sends the chunks; `write`, a dry run, only keeps and counts them.
    """

    def __init__(
        self,
        *,
        report: Report,
        notify: Callable[[str], None],
        start_at: int = 1,
        keep: Callable[[int], str] | None = None,
    ) -> None:
        self.report = report
        self.notify = notify
        self.start_at = start_at
        self.keep = keep
        self.counts = ImportCounts()
        self.stats: ImportStats | None = None  # once sending starts

    def counted(self, users: Iterable[T]) -> Iterator[T]:
        """USERS as they are read, counted."""
        for user in users:
            self.counts.read += 1
            yield user

    def reject(self, user: dict[str, Any], problems: list[Problem], *, input: str) -> None:
        """USER, read at INPUT, is not sent: report it with PROBLEMS."""
        self.counts.rejected += 1
        self.report(report_entry(user, [problem.as_dict() for problem in problems], input=input))

    def selected(self, chunks: Iterable[Chunk], *, dry_run: bool = False) -> Iterator[Chunk]:
        """The chunks from number START_AT on, counted, each kept as a file when asked (and
        said so, in a DRY_RUN)."""
        for chunk in chunks:
            if chunk.number < self.start_at:
                self.counts.skipped += chunk.count
                continue
            self.counts.chunks += 1
            self.counts.chunked += chunk.count
            if self.keep is not None:
                path = self.keep(chunk.number)
                write_chunk(path, chunk)
                if dry_run:
                    size = len(chunk.array())
                    self.notify(f"wrote {path}: {plural(chunk.count, 'user')}, {size} bytes")
            yield chunk

    def write(self, chunks: Iterable[Chunk]) -> None:
        """A dry run: the selected chunks counted and kept, nothing sent."""
        for _ in self.selected(chunks, dry_run=True):
            pass

    def send(
        self,
        chunks: Iterable[Chunk],
        client: Auth0Client,
        *,
        connection: str,
        upsert: bool,
        send_completion_email: bool,
        external_id: Callable[[int], str],
        progress: Progress,
        read: Callable[[], float | None] = lambda: None,
    ) -> None:
        """Send the selected chunks as import jobs into CONNECTION (a name or a con_ id) and
        wait for every job to end. PROGRESS shows the run (`progress_text`); READ is the share
        of the input read so far, when known, for the time left. Closes the client."""

        def show(stats: ImportStats) -> None:
            if progress.enabled:
                progress.update(progress_text(stats, progress.elapsed, read()))

        with client:
            importer = Importer(
                client,
                connection_id=client.resolve_connection(connection),
                upsert=upsert,
                send_completion_email=send_completion_email,
                external_id=external_id,
                report=self.report,
                notify=self.notify,
                progress=show,
            )
            self.stats = importer.stats
            try:
                importer.run(self.selected(chunks))
            finally:
                progress.close()

    def summary(self, report: str | None) -> tuple[str, int]:
        """The closing line, and how many users did not make it; REPORT names the report file,
        if there is one."""
        counts, stats = self.counts, self.stats
        read, rejected = counts.read, counts.rejected
        report_note = f" (in {report})" if report else ""
        read_text = f"{plural(read, 'user')} read"
        if counts.skipped:
            read_text += f" ({counts.skipped} in chunks before --start-at)"
        if stats is None:
            rejects = f"{rejected} rejected{report_note if rejected else ''}"
            line = (
                f"dry run: {read_text}; {counts.chunked} in "
                f"{plural(counts.chunks, 'file')}, {rejects}; nothing was sent"
            )
            return line, rejected
        totals = stats.totals
        line = (
            f"{read_text}, {stats.users} sent in {plural(stats.jobs, 'job')}: "
            f"{totals['inserted']} inserted, {totals['updated']} updated, "
            f"{totals['failed']} failed"
        )
        if stats.lost:
            line += f", {stats.lost} in failed jobs"
        line += f"; {rejected} rejected before sending"
        failed = totals["failed"] + stats.lost + rejected
        if failed:
            line += f"; {plural(failed, 'user')} to fix{report_note}"
        return line, failed


def write_chunk(path: str, chunk: Chunk) -> None:
    """A chunk's JSON array to PATH, complete or not at all (see ndpipe.output)."""
    file = AtomicFile(path, path, make_directories=True)
    try:
        file.write(chunk.array())
        file.commit()
    except BaseException:
        file.abort()
        raise


def describe(entry: dict[str, Any]) -> str:
    """A report line as one line of text, for runs without a report file."""
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


class Importer:
    """Sends chunks as import jobs and follows them to the end; `report` gets failed users.

    `progress`, if given, gets the stats after each job sent, each job ended and each round of
    polling, to show how the run is going.
    """

    def __init__(
        self,
        client: Auth0Client,
        *,
        connection_id: str,
        upsert: bool,
        send_completion_email: bool,
        external_id: Callable[[int], str],
        report: Report,
        notify: Callable[[str], None],
        progress: Callable[[ImportStats], None] | None = None,
    ) -> None:
        self.client = client
        self.connection_id = connection_id
        self.upsert = upsert
        self.send_completion_email = send_completion_email
        self.external_id = external_id
        self.report = report
        self.notify = notify
        self.stats = ImportStats()
        show = progress or (lambda stats: None)
        self.runner: JobRunner[Chunk] = JobRunner(
            limit=ACTIVE_JOBS,
            start=self._start,
            check=self._check,
            settle=self._settle,
            pause=client.pause,
            clock=client.now,
            timeout=client.job_timeout,
            name=lambda handle: f"import job {handle[0]}",
            # The same user in two concurrent jobs races (AUTH0.md §2.2).
            clash=lambda chunk, job: bool(chunk.emails & job.work.emails),
            progress=lambda: show(self.stats),
        )

    def run(self, chunks: Iterable[Chunk]) -> None:
        """Send every chunk and wait for every job to end.

        Bad input (raised by `chunks` after its last good chunk) waits for the jobs already
        sent, so their failures are reported, then stops the run. When Auth0 or the network
        fails, the message names the jobs whose outcome is unknown and the first chunk that
        was not settled, from which `--start-at` resumes.
        """
        self.runner.run(chunks, _resume)

    def _start(self, chunk: Chunk) -> tuple[str, str]:
        external_id = self.external_id(chunk.number)
        job = self.client.start_import(
            self.connection_id,
            chunk.array(),
            upsert=self.upsert,
            external_id=external_id,
            send_completion_email=self.send_completion_email,
        )
        self.stats.jobs += 1
        self.stats.users += chunk.count
        self.notify(f"job {job['id']} ({external_id}, {plural(chunk.count, 'user')}): submitted")
        return job["id"], external_id

    def _check(self, handle: tuple[str, str]) -> dict[str, Any] | None:
        job = self.client.get_job(handle[0])
        if self.client.ended(job):
            self.stats.done += 1
            return job
        return None

    def _settle(self, running: Active[Chunk], job: dict[str, Any]) -> None:
        job_id, external_id = running.handle
        label = f"job {job_id} ({external_id})"
        if job.get("status") != "completed":
            details = job.get("status_details") or "Auth0 gave no details"
            self.stats.failed_jobs += 1
            self._lose(running.work, "JOB_FAILED", f"import job {job.get('status')}: {details}",
                       job=job_id)  # fmt: skip
            self.notify(f"{label} {job.get('status')}: {details}; its "
                        f"{plural(running.work.count, 'user')} are in the report")  # fmt: skip
            return
        summary = _object(job.get("summary"))
        for key in SUMMARY_KEYS:
            value = summary.get(key)
            self.stats.totals[key] += value if isinstance(value, int) else 0
        failures = self.client.job_errors(job_id) if summary.get("failed", 1) else []
        if failures:
            sent = {user["email"].lower(): user for user in running.work.users()}
            for failure in failures:
                echoed = _object(failure.get("user"))
                email = echoed.get("email")
                user = sent.get(email.lower(), echoed) if isinstance(email, str) else echoed
                errors = failure.get("errors")
                self.report(report_entry(user, errors if isinstance(errors, list) else [],
                                         job=job_id))  # fmt: skip
        if not isinstance(summary.get("failed"), int):
            # No summary to count from: count what /errors listed.
            self.stats.totals["failed"] += len(failures)
        counts = ", ".join(f"{summary.get(key, '?')} {key}" for key in SUMMARY_KEYS[:3])
        self.notify(f"{label}: completed: {counts}")

    def _lose(self, chunk: Chunk, code: str, message: str, **where: Any) -> None:
        error = {"code": code, "message": message, "path": ""}
        for user in chunk.users():
            self.report(report_entry(user, [error], **where))
        self.stats.lost += chunk.count


def _resume(unsettled: list[Chunk]) -> str:
    first = min(chunk.number for chunk in unsettled)
    return (
        "GET /api/v2/jobs/ID/errors lists the failures of a job that was running; the chunks "
        f"before chunk {first} are done: to go on, run the same command on the same input "
        f"with --start-at {first}"
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
