"""Bulk lead import runs: files sent as batches, at most two at a time, each polled to its end.

Marketo processes two imports at once per instance and queues up to ten (CRM.md §1.3); ndpipe
keeps at most ACTIVE_BATCHES of its own batches queued or importing, so it never has more than
two importing and leaves the queue to other integrations. Each batch is polled until it is
Complete or Failed; then its failures and warnings files (when Marketo counted any) are read
and handed, with the batch, to `settle`, which joins them back to the records. A Failed batch
is handed over with its message: all its rows failed.

This module knows files (anything with `number`, `count` and `open()`), not records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from ndpipe.errors import Refused
from ndpipe.services.jobs import Active, JobRunner
from ndpipe.services.marketo.client import BATCH_ENDED, MarketoClient, QuotaReached

ACTIVE_BATCHES = 2
# How long one batch may stay queued or importing before the run stops waiting for it.
BATCH_TIMEOUT = 12 * 3600.0
CREATE = "POST /bulk/v1/leads.json"


class Upload(Protocol):
    """What a batch is made from: a numbered file of `count` rows."""

    number: int

    @property
    def count(self) -> int: ...

    def open(self) -> IO[bytes]: ...


@dataclass
class BatchResult:
    """An ended batch: its status and message, Marketo's counts, and its result files."""

    batch_id: Any
    status: str
    message: str
    processed: int | None
    failed: int
    warned: int
    failures: bytes | None = None
    warnings: bytes | None = None


@dataclass
class BulkStats:
    batches: int = 0  # created
    done: int = 0  # ended, complete or failed
    failed_batches: int = 0
    rows: int = 0  # sent
    processed: int = 0  # numOfLeadsProcessed of ended batches
    active: dict[Any, int] = field(default_factory=dict)  # batch id -> rows processed so far


class LeadImport:
    """Sends upload files as bulk lead import batches and follows each to its end."""

    def __init__(
        self,
        client: MarketoClient,
        *,
        format: str,
        lookup_field: str | None,
        list_id: int | None,
        partition: str | None,
        settle: Callable[[Any, BatchResult], None],
        notify: Callable[[str], None],
        progress: Callable[[BulkStats], None] | None = None,
    ) -> None:
        self.client = client
        self.format = format
        self.lookup_field = lookup_field
        self.list_id = list_id
        self.partition = partition
        self._settle_file = settle
        self.notify = notify
        self.stats = BulkStats()
        show = progress or (lambda stats: None)
        self.runner: JobRunner[Any] = JobRunner(
            limit=ACTIVE_BATCHES,
            start=self._start,
            check=self._check,
            settle=self._settle,
            pause=client.pause,
            clock=client.now,
            timeout=BATCH_TIMEOUT,
            name=lambda handle: f"batch {handle}",
            progress=lambda: show(self.stats),
        )

    def run(self, uploads: Iterable[Upload]) -> None:
        """Send every file and wait for every batch; a RemoteError (exit 3) says how to resume."""
        self.runner.run(uploads, _resume)

    def _start(self, upload: Upload) -> Any:
        try:
            with upload.open() as handle:
                result = self.client.create_batch(
                    handle,
                    filename=f"leads-{upload.number}.{self.format}",
                    format=self.format,
                    lookup_field=self.lookup_field,
                    list_id=self.list_id,
                    partition=self.partition,
                )
        except Refused as error:
            header = getattr(upload, "header", None)
            if error.message.startswith(f"Marketo {CREATE} failed: 1006") and header:
                named = [
                    n for n in header if f"'{n}'" in error.message or f'"{n}"' in error.message
                ]
                which = "the column" if named else "its columns"
                error.message += f" (file {upload.number}; {which}: {', '.join(named or header)})"
            raise
        batch_id = result.get("batchId")
        self.stats.batches += 1
        self.stats.rows += upload.count
        self.stats.active[batch_id] = 0
        rows = f"{upload.count:,} row{'' if upload.count == 1 else 's'}"
        self.notify(
            f"file {upload.number} ({rows}): batch {batch_id} "
            f"{str(result.get('status', 'created')).lower()}"
        )
        return batch_id

    def _check(self, batch_id: Any) -> dict[str, Any] | None:
        batch = self.client.batch(batch_id)
        processed = batch.get("numOfLeadsProcessed")
        if isinstance(processed, int):
            self.stats.active[batch_id] = processed
        if batch.get("status") in BATCH_ENDED:
            self.stats.done += 1
            return batch
        return None

    def _settle(self, running: Active[Any], batch: dict[str, Any]) -> None:
        batch_id = running.handle
        self.stats.active.pop(batch_id, None)
        processed = _count(batch.get("numOfLeadsProcessed"))
        failed = _count(batch.get("numOfRowsFailed"))
        warned = _count(batch.get("numOfRowsWithWarning"))
        status = str(batch.get("status"))
        result = BatchResult(
            batch_id=batch_id,
            status=status,
            message=str(batch.get("message") or ""),
            processed=processed,
            failed=failed,
            warned=warned,
        )
        if status == "Failed":
            self.stats.failed_batches += 1
        else:
            self.stats.processed += processed or 0
            if failed:
                result.failures = self.client.batch_rows(batch_id, "failures")
            if warned:
                result.warnings = self.client.batch_rows(batch_id, "warnings")
        self._settle_file(running.work, result)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _resume(unsettled: list[Any]) -> str:
    first = min(upload.number for upload in unsettled)
    if first == 1:
        return "no file was done: run the same command again from the start"
    return (
        f"the files before file {first} are done: to go on, run the same command on the same "
        f"input with --start-at {first}"
    )


__all__ = ["ACTIVE_BATCHES", "BatchResult", "BulkStats", "LeadImport", "QuotaReached"]
