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

from ndpipe.io import Record
from ndpipe.ops.import_users import Chunk, report_entry
from ndpipe.pipeline import plural
from ndpipe.services.auth0.client import JOB_FAILED, Auth0Client
from ndpipe.services.jobs import Active, JobRunner

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
        status = job.get("status")
        if status == "completed" or status in JOB_FAILED:
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
