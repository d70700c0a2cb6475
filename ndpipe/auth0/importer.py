"""Run import jobs for a stream of chunks, within Auth0's limits (AUTH0.md §2).

At most two jobs are active at once (a tenant's limit); a chunk that shares an email with an
active job waits for that job to end, so no email is ever in two running jobs. Each finished
job's summary is added up and its /errors become report lines holding the user as it was sent
(Auth0's copy has password hashes redacted). A job that fails puts all its users in the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ndpipe.auth0.client import JOB_FAILED, Auth0Client
from ndpipe.errors import NdpipeError, RemoteError
from ndpipe.io import Record
from ndpipe.ops.import_users import Chunk, report_entry
from ndpipe.pipeline import plural

ACTIVE_JOBS = 2  # per tenant (AUTH0.md §2.2)
SUMMARY_KEYS = ("inserted", "updated", "failed", "total")


@dataclass
class ImportStats:
    users: int = 0  # sent to Auth0
    jobs: int = 0  # sent
    done: int = 0  # ended, completed or not
    failed_jobs: int = 0
    lost: int = 0  # users of jobs that failed
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUMMARY_KEYS, 0))


@dataclass
class Running:
    chunk: Chunk
    job_id: str
    external_id: str
    submitted: float


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
        report: Callable[[Record], None],
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
        self.progress = progress or (lambda stats: None)
        self.active: list[Running] = []
        self.stats = ImportStats()

    def run(self, chunks: Iterable[Chunk]) -> None:
        """Send every chunk and wait for every job to end.

        Bad input (raised by `chunks` after its last good chunk) waits for the jobs already
        sent, so their failures are reported, then stops the run. When Auth0 or the network
        fails, the message names the jobs whose outcome is unknown and the first chunk that
        was not settled, from which `--start-at` resumes.
        """
        pending: Chunk | None = None
        try:
            try:
                for pending in chunks:
                    self._submit(pending)
                    pending = None
            except RemoteError:
                raise
            except NdpipeError:
                self._drain()
                raise
            self._drain()
        except RemoteError as error:
            unsettled = [job.chunk.number for job in self.active]
            if pending is not None:
                unsettled.append(pending.number)
            if self.active:
                running = ", ".join(job.job_id for job in self.active)
                error.message += (
                    f"; import jobs {running} were still running: their users may be imported "
                    "(GET /api/v2/jobs/ID/errors lists the failures)"
                )
            if unsettled:
                error.message += (
                    f"; the chunks before chunk {min(unsettled)} are done: to go on, run the "
                    f"same command on the same input with --start-at {min(unsettled)}"
                )
            raise

    def _drain(self) -> None:
        while self.active:
            self._wait_for_one()

    def _submit(self, chunk: Chunk) -> None:
        while len(self.active) >= ACTIVE_JOBS or any(
            job.chunk.emails & chunk.emails for job in self.active
        ):
            self._wait_for_one()
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
        self.active.append(Running(chunk, job["id"], external_id, self.client.now()))
        self.notify(f"job {job['id']} ({external_id}, {plural(chunk.count, 'user')}): submitted")
        self.progress(self.stats)

    def _wait_for_one(self) -> None:
        """Read the active jobs until one has ended, and settle it."""
        while True:
            for running in self.active:
                job = self.client.get_job(running.job_id)
                status = job.get("status")
                if status == "completed" or status in JOB_FAILED:
                    self.active.remove(running)
                    self._settle(running, job)
                    self.stats.done += 1
                    self.progress(self.stats)
                    return
                waited = self.client.now() - running.submitted
                if waited > self.client.job_timeout:
                    raise RemoteError(
                        f"import job {running.job_id} is still {status!r} after "
                        f"{waited / 3600:.1f} h; stopped waiting (it may still finish)"
                    )
            self.progress(self.stats)
            self.client.pause()

    def _settle(self, running: Running, job: dict[str, Any]) -> None:
        label = f"job {running.job_id} ({running.external_id})"
        if job.get("status") != "completed":
            details = job.get("status_details") or "Auth0 gave no details"
            self.stats.failed_jobs += 1
            self._lose(running.chunk, "JOB_FAILED", f"import job {job.get('status')}: {details}",
                       job=running.job_id)  # fmt: skip
            self.notify(f"{label} {job.get('status')}: {details}; its "
                        f"{plural(running.chunk.count, 'user')} are in the report")  # fmt: skip
            return
        summary = _object(job.get("summary"))
        for key in SUMMARY_KEYS:
            value = summary.get(key)
            self.stats.totals[key] += value if isinstance(value, int) else 0
        failures = self.client.job_errors(running.job_id) if summary.get("failed", 1) else []
        if failures:
            sent = {user["email"].lower(): user for user in running.chunk.users()}
            for failure in failures:
                echoed = _object(failure.get("user"))
                email = echoed.get("email")
                user = sent.get(email.lower(), echoed) if isinstance(email, str) else echoed
                errors = failure.get("errors")
                self.report(report_entry(user, errors if isinstance(errors, list) else [],
                                         job=running.job_id))  # fmt: skip
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


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
