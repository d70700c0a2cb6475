"""Send upload files as Bulk API 2.0 ingest jobs and account for every row (CRM.md §2.3).

Each file becomes one job: create, upload the CSV, close it (UploadComplete), poll it to its
end, then read its results. A job is never left Open: when the upload or the close fails, or
the run is stopped (Ctrl-C, SIGTERM) while a job is Open, the job is aborted before the error
goes on. Jobs are opened only once their file is complete on disk, so bad input further on
never finds a job Open.

One job runs at a time (JobRunner limit 1). Salesforce already splits a job into batches of
10,000 records that it runs in parallel; a second job beside it would add little speed, and
would let a later change to a record (a second line for the same external id, in the next
file) race an earlier one. The next file is cut and spooled while a job is processing.

Results come back in no particular order: successfulResults is only counted (sf__Created says
created or updated), streamed from disk; failedResults and unprocessedrecords are handed to the
caller (`on_failures`) in batches, as (cells, reason) under the upload's column names, for it to
join back to the input records. A job that failed before processing anything has all its rows
handed over at once (`on_job_failed`) without downloading them again. Rows with no result at
all (Salesforce keeps none past the daily batch allocation) are counted as missing.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Protocol

from ndpipe.errors import NdpipeError, Refused, RemoteError
from ndpipe.services.jobs import Active, JobRunner
from ndpipe.services.salesforce.client import TERMINAL, QuotaReached, SalesforceClient

ACTIVE_JOBS = 1
UPLOAD_ATTEMPTS = 3  # jobs tried for one file whose upload keeps breaking
# Failed or unprocessed rows handed to the caller at a time: the caller matches each batch
# against the file on disk, so memory holds this many rows, not a whole job's.
RESULT_BATCH = 20_000
CSV_FIELD_LIMIT = 1 << 26


class Upload(Protocol):
    """A file to send (ndpipe.ops.crm.UploadFile has this shape)."""

    number: int
    header: list[str]
    size: int

    @property
    def count(self) -> int: ...

    def open(self) -> BinaryIO: ...

    def remove(self) -> None: ...


Results = list[tuple[list[str], str]]


@dataclass
class IngestStats:
    jobs: int = 0  # closed with their data
    done: int = 0  # ended, completed or not
    sent: int = 0  # records in closed jobs
    created: int = 0
    updated: int = 0
    failed: int = 0  # rows Salesforce failed
    unprocessed: int = 0  # rows of failed or aborted jobs that were never processed
    missing: int = 0  # rows Salesforce returned no result for
    failed_jobs: int = 0
    processing: int = 0  # records processed so far in the job being polled


class Ingest:
    """Runs upload files as ingest jobs of OBJECT with OPERATION (and EXTERNAL_ID for upsert).

    on_failures(upload, header, results, job_id): failed or unprocessed rows, (cells, reason);
    on_job_failed(upload, reason, job_id): every row of a job that processed none;
    notify(message): one line for stderr; progress(stats): after each step.
    """

    def __init__(
        self,
        client: SalesforceClient,
        *,
        object_name: str,
        operation: str,
        external_id: str | None,
        scratch: str,
        on_failures: Callable[[Upload, list[str], Results, str], None],
        on_job_failed: Callable[[Upload, str, str], None],
        notify: Callable[[str], None],
        progress: Callable[[IngestStats], None] | None = None,
    ) -> None:
        self.client = client
        self.object_name = object_name
        self.operation = operation
        self.external_id = external_id
        self.scratch = scratch
        self.on_failures = on_failures
        self.on_job_failed = on_job_failed
        self.notify = notify
        self.stats = IngestStats()
        self._schedule: tuple[float, float] | None = None
        self._unsettled: int | None = None  # a file whose job ended but whose results were not read
        self._interval = client.poll_interval
        show = progress or (lambda stats: None)
        self.runner: JobRunner[Upload] = JobRunner(
            limit=ACTIVE_JOBS,
            start=self._start,
            check=self._check,
            settle=self._settle,
            pause=self._pause,
            clock=client.now,
            timeout=client.job_timeout,
            name=lambda handle: f"job {handle}",
            progress=lambda: show(self.stats),
        )

    def slow_down(self, first: float, most: float) -> None:
        """Poll a job after FIRST seconds, then half as long again each time, up to MOST
        (instead of the client's fixed poll interval)."""
        self._schedule = (first, most)
        self._interval = first

    def _pause(self) -> None:
        self.client.pause(self._interval)
        if self._schedule is not None:
            self._interval = min(self._interval * 1.5, self._schedule[1])

    def run(self, uploads: Iterable[Upload]) -> None:
        """Send every file and follow every job to its end (see JobRunner.run)."""
        try:
            self.runner.run(uploads, self._resume)
        except RemoteError as error:
            if self._unsettled is not None and "--start-at" not in error.message:
                error.message += "; " + self._resume([])
            raise
        except BaseException:
            # Stopped (Ctrl-C, SIGTERM, bad input past its jobs): a job already closed goes on
            # in Salesforce; say which, and how to go on.
            for job in self.runner.active:
                number = job.work.number
                self.notify(
                    f"job {job.handle} (file {number}) was still processing when the run "
                    "stopped; Salesforce finishes it (its failures: GET "
                    f"{self.client.api}/{job.handle}/failedResults/); the files before it are "
                    f"done: to go on after it, run the same command on the same input with "
                    f"--start-at {number + 1}"
                )
            raise

    def _resume(self, unsettled: list[Upload]) -> str:
        numbers = [upload.number for upload in unsettled]
        first = min(numbers + ([self._unsettled] if self._unsettled is not None else []))
        return (
            f"the files before file {first} are done: to go on, run the same command on the "
            f"same input with --start-at {first}"
        )

    # --- one job ----------------------------------------------------------------------------

    def _start(self, upload: Upload) -> str:
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            job = self.client.create_job(self.object_name, self.operation, self.external_id)
            job_id: str = job["id"]
            try:
                with upload.open() as data:
                    self.client.upload(job_id, data, upload.size)
                self.client.close_job(job_id)
            except BaseException as error:
                # Never leave a job Open: abort it, whatever stopped the upload.
                aborted = self.client.abort_job(job_id)
                retry = (
                    isinstance(error, RemoteError)
                    and not isinstance(error, Refused | QuotaReached)
                    and attempt < UPLOAD_ATTEMPTS
                )
                if retry:
                    done = "aborted it" if aborted else "could not abort it"
                    self.notify(
                        f"job {job_id}: {error}; {done}, sending file {upload.number} again in "
                        "a new job"
                    )
                    continue
                if isinstance(error, NdpipeError):
                    error.message += (
                        f"; job {job_id} was aborted"
                        if aborted
                        else f"; job {job_id} could not be aborted: abort it in Setup, Bulk "
                        "Data Load Jobs (it holds no processed data)"
                    )
                raise
            self.stats.jobs += 1
            self.stats.sent += upload.count
            if self._schedule is not None:
                self._interval = self._schedule[0]
            self.notify(
                f"job {job_id} (file {upload.number}, {upload.count:,} records, "
                f"{upload.size:,} bytes): uploaded, processing"
            )
            return job_id
        raise AssertionError("unreachable")

    def _check(self, job_id: str) -> dict[str, object] | None:
        info = self.client.job_info(job_id)
        self.stats.processing = _number(info.get("numberRecordsProcessed"))
        return info if info.get("state") in TERMINAL else None

    def _settle(self, active: Active[Upload], info: dict[str, object]) -> None:
        upload, job_id = active.work, str(active.handle)
        self.stats.done += 1
        self.stats.processing = 0
        state = str(info.get("state"))
        processed = _number(info.get("numberRecordsProcessed"))
        failed = _number(info.get("numberRecordsFailed"))
        detail = info.get("errorMessage")
        try:
            successes = self._successes(job_id) if processed or state == "JobComplete" else 0
            failures = 0
            if failed or successes < processed:
                failures = self._failures(upload, job_id, "failedResults", None)
            unprocessed = 0
            if state != "JobComplete":
                self.stats.failed_jobs += 1
                reason = f"not processed: job {state}" + (f": {detail}" if detail else "")
                if not processed:
                    self.on_job_failed(upload, reason, job_id)
                    unprocessed = upload.count
                else:
                    unprocessed = self._failures(upload, job_id, "unprocessedrecords", reason)
                self.stats.unprocessed += unprocessed
            self.stats.failed += failures
            accounted = successes + failures + unprocessed
            if accounted < upload.count:
                missing = upload.count - accounted
                self.stats.missing += missing
                self.notify(
                    f"job {job_id}: Salesforce returned results for {accounted:,} of "
                    f"{upload.count:,} records; {missing:,} have none (check the job in "
                    "Salesforce, Setup, Bulk Data Load Jobs)"
                )
            summary = f"{successes:,} succeeded, {failures:,} failed"
            if state != "JobComplete":
                summary = f"{state}" + (f" ({detail})" if detail else "") + f": {summary}, "
                summary += f"{unprocessed:,} not processed"
            self.notify(f"job {job_id} (file {upload.number}): {summary}")
        except RemoteError as error:
            # Its results could not be read, so the file is not settled: resume from it.
            error.message += (
                f"; job {job_id} ended but its results could not all be read (Salesforce keeps "
                "them 7 days)"
            )
            self._unsettled = upload.number
            raise
        finally:
            upload.remove()

    # --- result files -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _result_file(self, job_id: str, kind: str) -> Iterator[IO[str]]:
        path = os.path.join(self.scratch, f"{job_id}-{kind}.csv")
        try:
            with open(path, "w+b") as target:
                self.client.download(job_id, kind, target)
            with open(path, encoding="utf-8-sig", errors="replace", newline="") as text:
                yield text
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _successes(self, job_id: str) -> int:
        """Count the successful rows, created and updated (sf__Created), without keeping them."""
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        count = 0
        with self._result_file(job_id, "successfulResults") as text:
            reader = csv.reader(text)
            header = next(reader, [])
            created = header.index("sf__Created") if "sf__Created" in header else None
            for row in reader:
                if not row:
                    continue
                count += 1
                if created is not None and created < len(row) and row[created] == "true":
                    self.stats.created += 1
                else:
                    self.stats.updated += 1
        return count

    def _failures(self, upload: Upload, job_id: str, kind: str, reason: str | None) -> int:
        """Hand the rows of a failedResults (reason from sf__Error) or unprocessedrecords file
        (REASON) to on_failures in batches; returns how many there were."""
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        count = 0
        with self._result_file(job_id, kind) as text:
            reader = csv.reader(text)
            header = next(reader, [])
            error = header.index("sf__Error") if "sf__Error" in header else None
            keep = [i for i, name in enumerate(header) if not name.startswith("sf__")]
            columns = [header[i] for i in keep]
            batch: Results = []
            for row in reader:
                if not row:
                    continue
                count += 1
                cells = [row[i] if i < len(row) else "" for i in keep]
                why = reason
                if why is None:
                    why = row[error] if error is not None and error < len(row) else "failed"
                batch.append((cells, why))
                if len(batch) >= RESULT_BATCH:
                    self.on_failures(upload, columns, batch, job_id)
                    batch = []
            if batch:
                self.on_failures(upload, columns, batch, job_id)
        return count


def _number(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0
