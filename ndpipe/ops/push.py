"""A push run of the CRM sinks (to-marketo, to-salesforce): records into upload files, each file
through the service, every failed or warned row joined back to its record as read.

The run is the same for both services: read the records (lines of an earlier report as their
records), check them, pack them into files (ndpipe.ops.crm.split_files), skip the files before
--start-at, keep a copy of each when asked (--out), and, unless it is a dry run, hand the files
to the service's runner (ndpipe.services.marketo.bulk, ndpipe.services.salesforce.ingest),
whose per-row results come back here to become report lines (--report, else one line each on
stderr). The summary line and the exit status come from the counts at the end.

`Push` holds all of that; `MarketoPush` and `SalesforcePush` say what differs: the records'
checks, the client and runner, how a result is read, and the summary's counts. Nothing is
opened until the stage runs (`sink`): the command line is checked first.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, BinaryIO

from ndpipe import codec
from ndpipe.errors import NdpipeError, RecordError, RemoteError
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
from ndpipe.ops.crm import (
    Counts,
    UploadFile,
    check_flat,
    check_marketo_names,
    check_marketo_record,
    counted,
    describe_entry,
    is_naive_datetime,
    join_results,
    marketo_datetime,
    parse_rows,
    report_entry,
    split_files,
    summary_line,
    unwrap_reports,
)
from ndpipe.ops.to_json_array import OutputPattern
from ndpipe.output import remove_scratch, scratch_directory
from ndpipe.progress import InputGauge, Progress

if TYPE_CHECKING:
    from ndpipe.services.marketo.bulk import BatchResult, BulkStats
    from ndpipe.services.salesforce.ingest import IngestStats, Results, Upload

Say = Callable[[str], None]
# A value Salesforce reads as "clear this field" (--null-as-na).
NULL = "#N/A"
# Salesforce's job polls start at the first interval and slow down to the second (it prescribes
# none; CRM.md suggests Marketo's 5-30 s); NDPIPE_POLL_INTERVAL fixes one interval instead.
POLL_FIRST, POLL_MOST = 5.0, 30.0


@dataclass
class PushSettings:
    """What every push command is told on its command line.

    - name: the command; files: its FILE arguments (stdin when none);
    - report: the --report path, or None for one stderr line per failure;
    - pattern, dry_run, start_at, max_bytes, quiet: --out, --dry-run, --start-at, --max-bytes,
      --quiet;
    - say(message): a line on stderr, always; notify(message): a notice (nothing when quiet).
    """

    name: str
    files: Sequence[str]
    report: str | None
    pattern: OutputPattern | None
    dry_run: bool
    start_at: int
    max_bytes: int
    quiet: bool
    say: Say
    notify: Say


class Push:
    """One push run: the records of the stage into files, the files through the service.

    KEY is the field that names a record in stderr lines and joins results back; `container`
    what a report line names the service's unit by ("batch" or "job").
    """

    container = "job"

    def __init__(self, settings: PushSettings, *, key: str | None, delimiter: str = ",") -> None:
        self.name = settings.name
        self.files = list(settings.files)
        self.report = settings.report
        self.pattern = settings.pattern
        self.dry_run = settings.dry_run
        self.start_at = settings.start_at
        self.max_bytes = settings.max_bytes
        self.quiet = settings.quiet
        self.say = settings.say
        self.notify = settings.notify
        self.key = key
        self.delimiter = delimiter
        self.counts = Counts()
        self.report_file: SideFile | None = None
        self.gauge: InputGauge | None = None
        self.line: Progress | None = None
        self.position: Position | None = None
        self.skip = False  # --on-error skip: see refusing

    # --- the stage ------------------------------------------------------------------------------

    def source(self, policy: ErrorPolicy, position: Position) -> Records:
        """The records of FILES, in order (the stage's source when files are given)."""
        for path in self.files:
            stream, name = open_input(path)
            if self.gauge is not None:
                self.gauge.opened(stream)
            yield from read_stream(stream, name, policy, position)

    def sink(self, records: Records, out: BinaryIO, encode: Encoder, position: Position) -> None:
        """Run: check and pack the records, send the files (or only keep them, dry)."""
        self.counts = Counts()
        self.position = position
        if self.report:
            self.report_file = SideFile(self.report, "--report")
        spool = scratch_directory(f"ndpipe-{self.name}-")
        try:
            uploads = self.selected(
                split_files(
                    self.checked(
                        self.refusing(self.counted(unwrap_reports(records)), position), position
                    ),
                    delimiter=self.delimiter,
                    max_bytes=self.max_bytes,
                    position=position,
                    spool_dir=spool,
                    encode=self.encoder(encode),
                    convert=self.converter(),
                    notify=self.notify,
                )
            )
            if self.dry_run:
                for upload in uploads:
                    upload.remove()
                return
            self.send(uploads, spool)
        except NdpipeError as error:
            self.stopped(error)
            raise
        finally:
            remove_scratch(spool)

    def summary(self) -> tuple[str, int]:
        """The closing line for stderr, and how many records did not make it."""
        raise NotImplementedError

    # --- what a service changes -----------------------------------------------------------------

    def checked(self, records: Records, position: Position) -> Records:
        """The records to send: each checked for the service (a refused one raises, or is
        reported and left out)."""
        return records

    def check(self, record: Record, position: Position) -> None:
        """Raise a RecordError for a record the service could never take."""
        check_flat(record, position)

    def encoder(self, encode: Encoder) -> Encoder:
        """How a record is kept for the report: as read."""
        return encode

    def converter(self) -> Callable[[str, str], str] | None:
        """How a string value is rewritten for the service (field, text) -> text, if at all."""
        return None

    def send(self, uploads: Iterator[UploadFile], spool: str) -> None:
        """Send the files and follow each to its end, reporting the rows that did not make it."""
        raise NotImplementedError

    def stopped(self, error: NdpipeError) -> None:
        """The run stops with ERROR after files may have been settled."""

    # --- the shared steps -----------------------------------------------------------------------

    def counted(self, records: Records) -> Records:
        for record in records:
            self.counts.read += 1
            yield record

    def refusing(self, records: Records, position: Position) -> Records:
        """With --on-error skip, a record the service could never take (a nested value, a
        name it refuses) goes to the report with its line and the run goes on; without it,
        such a record stops the run (exit 1) where the checks meet it."""
        if not self.skip:
            return records
        return self._refusing(records, position)

    def _refusing(self, records: Records, position: Position) -> Records:
        check = self.check
        for record in records:
            try:
                check(record, position)
            except RecordError as error:
                self.counts.rejected += 1
                self.write_report(report_entry(record, str(position), error.message))
                continue
            yield record

    def selected(self, uploads: Iterator[UploadFile]) -> Iterator[UploadFile]:
        """The files from number --start-at on, counted, each kept as --out when asked (and
        said so, in a dry run)."""
        counts = self.counts
        for upload in uploads:
            if upload.number < self.start_at:
                counts.skipped += upload.count
                upload.remove()
                continue
            counts.files += 1
            counts.chunked += upload.count
            if self.pattern is not None:
                path = self.pattern.path(upload.number)
                upload.save(path)
                if self.dry_run:
                    self.notify(
                        f"wrote {path}: {counted(upload.count, 'record')}, {upload.size:,} bytes"
                    )
            yield upload

    def write_report(self, entry: Record) -> None:
        """A report line to --report, else as one line on stderr (--quiet or not)."""
        if self.report_file is not None:
            self.report_file.write(entry)
        else:
            self.say(describe_entry(entry, key=self.key))

    def report_rows(self, upload: UploadFile, reason: str, unit: Any) -> None:
        """Every record of UPLOAD, with REASON: its batch or job (UNIT) failed whole."""
        for row in upload.rows():
            record = codec.loads(row.record_json)
            self.write_report(report_entry(record, row.input, reason, **{self.container: unit}))

    def report_results(
        self,
        upload: UploadFile,
        header: list[str],
        results: list[tuple[list[str], str]],
        unit: Any,
        *,
        key: str | None,
        warning: bool = False,
        unmatched: str = "",
    ) -> None:
        """The service's result rows (cells under HEADER, and a reason) joined back to the
        records of UPLOAD (see join_results); a row that matches no record is reported as its
        cells, its reason followed by UNMATCHED."""
        where = {self.container: unit}
        for row, cells, reason in join_results(upload, header, results, key=key):
            if row is not None:
                record, read = codec.loads(row.record_json), row.input
            else:
                record, read = dict(zip(header, cells, strict=False)), None
                reason += unmatched
            self.write_report(report_entry(record, read, reason, warning=warning, **where))

    def keep_report(self) -> bool:
        """Commit --report as it is (its lines are complete for the files settled); whether
        there is one."""
        if self.report_file is None:
            return False
        self.report_file.file.commit()
        return True

    @contextlib.contextmanager
    def progress(self) -> Iterator[Progress]:
        """The progress line while files are sent, and the share of the input read."""
        line = self.line = Progress(f"ndpipe {self.name}", enabled=not self.quiet)
        if not self.quiet:
            self.gauge = InputGauge(self.files or ["-"])
            if not self.files and sys.stdin is not None:
                self.gauge.opened(sys.stdin.buffer)
        try:
            yield line
        finally:
            line.close()

    def show(self, text: str) -> None:
        """TEXT as the progress line, saying when all the input has been read."""
        assert self.line is not None
        read = self.gauge.fraction() if self.gauge is not None else None
        if read is not None and read >= 1:
            text += ", all input read"
        self.line.update(text)


class MarketoPush(Push):
    """to-marketo: files as bulk lead import batches (ndpipe.services.marketo.bulk)."""

    container = "batch"

    def __init__(
        self,
        settings: PushSettings,
        *,
        delimiter: str,
        endpoint: str | None,
        client_id: str | None,
        client_secret: str | None,
        poll_interval: float,
        file_format: str,
        lookup_field: str,
        list_id: int | None,
        partition: str | None,
    ) -> None:
        super().__init__(settings, key=lookup_field, delimiter=delimiter)
        self.endpoint = endpoint
        self.client_id = client_id
        self.client_secret = client_secret
        self.poll_interval = poll_interval
        self.file_format = file_format
        self.lookup_field = lookup_field
        self.list_id = list_id
        self.partition = partition
        self.warned_naive = False

    def checked(self, records: Records, position: Position) -> Records:
        return check_marketo_names(records, position)

    def check(self, record: Record, position: Position) -> None:
        check_flat(record, position)
        check_marketo_record(record, position)

    def converter(self) -> Callable[[str, str], str] | None:
        return self.convert

    def convert(self, key: str, text: str) -> str:
        """Auth0's UTC date-times with an explicit offset; one warning for a date-time that
        has none (Marketo would read it as Central Time)."""
        if text[10:11] not in ("T", " "):
            return text
        converted = marketo_datetime(text)
        if converted is text and not self.warned_naive and is_naive_datetime(text):
            self.warned_naive = True
            self.notify(
                f"{self.position}: field {key!r} is a date-time without an offset ({text}); "
                "Marketo reads such values as Central Time (this warning is shown once)"
            )
        return converted

    def send(self, uploads: Iterator[UploadFile], spool: str) -> None:
        from ndpipe.services.marketo.bulk import LeadImport
        from ndpipe.services.marketo.client import MarketoClient

        assert self.endpoint and self.client_id and self.client_secret
        client = MarketoClient(
            self.endpoint,
            self.client_id,
            self.client_secret,
            poll_interval=self.poll_interval,
            notify=self.notify,
        )
        with client, self.progress():
            importer = LeadImport(
                client,
                format=self.file_format,
                lookup_field=self.lookup_field,
                list_id=self.list_id,
                partition=self.partition,
                settle=self.settle,
                notify=self.notify,
                progress=self.shown,
            )
            try:
                importer.run(uploads)
            finally:
                self.counts.jobs = importer.stats.batches
                self.counts.sent = importer.stats.rows

    def shown(self, stats: BulkStats) -> None:
        counts = self.counts
        counts.jobs = stats.batches
        counts.sent = stats.rows
        if self.line is not None and self.line.enabled:
            processed = stats.processed + sum(stats.active.values())
            self.show(
                f"{stats.done}/{stats.batches} batches done, {processed:,} rows processed, "
                f"{counts.failed:,} failed"
            )

    def settle(self, upload: UploadFile, result: BatchResult) -> None:
        """Report the rows of an ended batch that failed or came with a warning."""
        batch, counts = result.batch_id, self.counts
        if result.status == "Failed":
            reason = f"batch {batch} failed: {result.message or 'Marketo gave no message'}"
            self.report_rows(upload, reason, batch)
            counts.failed += upload.count
            counts.lost += upload.count
            self.notify(
                f"file {upload.number}: {reason}; its {upload.count:,} records are in the report"
            )
            upload.remove()
            return
        failed = self.joined(upload, batch, result.failures, warning=False)
        warned = self.joined(upload, batch, result.warnings, warning=True)
        if result.failed > failed:
            # Marketo counted rows that its failures file does not list: they are not
            # accounted for, and the run must not look clean (shown even with --quiet).
            self.say(
                f"batch {batch}: Marketo counted {result.failed:,} failed rows, but its "
                f"failures file lists {failed:,}; the others cannot be named"
            )
            failed = result.failed
        counts.failed += failed
        counts.warned += warned
        rows = f"{upload.count:,} row{'' if upload.count == 1 else 's'}"
        self.notify(
            f"file {upload.number}: batch {batch} complete: {rows}, "
            f"{failed:,} failed, {warned:,} with warnings"
        )
        upload.remove()

    def joined(self, upload: UploadFile, batch: Any, data: bytes | None, *, warning: bool) -> int:
        """Report each row of a failures or warnings file, joined to its record; the count."""
        if not data:
            return 0
        rows = parse_rows(data, self.delimiter)
        header = next(rows, None)
        if not header:
            return 0
        results = [(cells[:-1], cells[-1]) for cells in rows if cells]
        self.report_results(
            upload, header[:-1], results, batch, key=self.lookup_field, warning=warning
        )
        return len(results)

    def stopped(self, error: NdpipeError) -> None:
        # Marketo stopped answering, or a bad input line stopped the run after batches were
        # sent: the failures of the batches that ended are complete, and are kept.
        if self.counts.jobs and self.keep_report():
            kept = f"the failures of the batches that ended are in {self.report}"
            if isinstance(error, RemoteError):
                error.message += f"; {kept} (give --report another name when resuming)"
            else:
                self.say(kept)

    def summary(self) -> tuple[str, int]:
        counts = self.counts
        if self.dry_run:
            counts = replace(counts, sent=counts.chunked)
        line = summary_line(
            counts, job_noun="batch", job_plural="batches", report=self.report,
            dry_run=self.dry_run,
        )  # fmt: skip
        return line, counts.failed + counts.rejected


class SalesforcePush(Push):
    """to-salesforce: each file as one Bulk API 2.0 ingest job (ndpipe.services.salesforce).

    Joining results back. Salesforce returns result rows in no particular order, with the
    columns as uploaded and nothing else, and ndpipe adds nothing to the upload the user did not
    ask for. A failed or unprocessed row is matched to the row sent with exactly the same cells
    first, which works for every operation (two identical rows are the same record, and each
    result takes one of them); failing that, by the key column: the external id for an upsert,
    Id for an update. An insert has no key column, so identical cells are the only match; a
    result row that matches nothing (it would take a Salesforce that rewrites values) is still
    reported, marked so.
    """

    def __init__(
        self,
        settings: PushSettings,
        *,
        instance_url: str | None,
        client_id: str | None,
        client_secret: str | None,
        token: str | None,
        version: str,
        fixed_poll: float | None,
        object_name: str | None,
        operation: str,
        external_id: str | None,
        null_as_na: bool,
    ) -> None:
        key = external_id if operation == "upsert" else "Id" if operation == "update" else None
        super().__init__(settings, key=key)
        self.instance_url = instance_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.token = token
        self.version = version
        self.fixed_poll = fixed_poll
        self.object_name = object_name
        self.operation = operation
        self.external_id = external_id
        self.null_as_na = null_as_na
        self.stats: IngestStats | None = None
        self.as_read: Record | None = None  # the record as read, when --null-as-na changed it

    def checked(self, records: Records, position: Position) -> Records:
        """Records with their key (an upsert's external id, an update's Id), else reported;
        with --null-as-na, nulls sent as #N/A."""
        key = self.key
        for record in records:
            if key is not None and record.get(key) in (None, ""):
                self.counts.rejected += 1
                why = f"{key} is empty" if key in record else f"no {key}"
                self.write_report(report_entry(
                    record, str(position),
                    f"{why}: every record of an {self.operation} needs a value for {key}",
                ))  # fmt: skip
                continue
            if self.null_as_na and None in record.values():
                self.as_read = record
                record = {name: NULL if value is None else value
                          for name, value in record.items()}  # fmt: skip
            else:
                self.as_read = None
            yield record

    def encoder(self, encode: Encoder) -> Encoder:
        def encode_as_read(record: Record) -> bytes:
            return encode(self.as_read if self.as_read is not None else record)

        return encode_as_read

    def send(self, uploads: Iterator[UploadFile], spool: str) -> None:
        from ndpipe.services.salesforce.client import SalesforceClient
        from ndpipe.services.salesforce.ingest import Ingest

        assert self.instance_url is not None and self.object_name is not None
        client = SalesforceClient(
            self.instance_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            token=self.token,
            version=self.version,
            poll_interval=POLL_FIRST if self.fixed_poll is None else self.fixed_poll,
            notify=None if self.quiet else self.notify,
        )
        ingest = Ingest(
            client,
            object_name=self.object_name,
            operation=self.operation,
            external_id=self.external_id,
            scratch=spool,
            on_failures=self.failures,
            on_job_failed=self.job_failed,
            notify=self.notify,
            progress=self.shown,
        )
        if self.fixed_poll is None:
            ingest.slow_down(POLL_FIRST, POLL_MOST)
        self.stats = ingest.stats
        with client, self.progress():
            ingest.run(uploads)

    def shown(self, stats: IngestStats) -> None:
        if self.line is not None and self.line.enabled:
            done = stats.created + stats.updated + stats.failed + stats.unprocessed
            self.show(
                f"{stats.done}/{counted(stats.jobs, 'job')} done, "
                f"{done + stats.processing:,} records processed"
            )

    def failures(self, upload: Upload, header: list[str], results: Results, job: str) -> None:
        assert isinstance(upload, UploadFile)
        # Field names are case-insensitive in Salesforce: read the results' header in the
        # upload's spelling, so that the columns line up whatever case comes back.
        spelled = {name.lower(): name for name in upload.header}
        header = [spelled.get(name.lower(), name) for name in header]
        key = self.key
        column = spelled.get(key.lower(), key) if key is not None else None
        self.report_results(
            upload, header, results, job, key=column,
            unmatched=" (Salesforce returned this row, which matches no record sent)",
        )  # fmt: skip

    def job_failed(self, upload: Upload, reason: str, job: str) -> None:
        assert isinstance(upload, UploadFile)
        self.report_rows(upload, reason, job)

    def stopped(self, error: NdpipeError) -> None:
        if isinstance(error, RemoteError) and "--start-at" in error.message and self.keep_report():
            # The failures of the files that were settled are complete: keep them, since the
            # resumed run does not send those files again.
            error.message += (
                f"; the failures of the files before that are in {self.report} (give the "
                "resumed run another --report file)"
            )

    def summary(self) -> tuple[str, int]:
        counts, stats = self.counts, self.stats
        read = f"{counted(counts.read, 'record')} read"
        if counts.skipped:
            read += f" ({counts.skipped:,} in files before --start-at)"
        rejected = counts.rejected
        report_note = f" (in {self.report})" if self.report else ""
        if self.dry_run or stats is None:
            line = (
                f"{'dry run: ' if self.dry_run else ''}{read}; {counts.chunked:,} in "
                f"{counted(counts.files, 'file')}, {rejected:,} refused"
                f"{report_note if rejected else ''}; nothing was sent"
            )
            return line, rejected
        line = (
            f"{read}, {stats.sent:,} sent in {counted(stats.jobs, 'job')}: "
            f"{stats.created:,} created, {stats.updated:,} updated, {stats.failed:,} failed, "
            f"{stats.unprocessed:,} not processed"
        )
        if stats.missing:
            line += f", {stats.missing:,} without a result"
        line += f"; {rejected:,} refused before sending"
        failed = stats.failed + stats.unprocessed + stats.missing + rejected
        if failed:
            line += f"; {counted(failed, 'record')} to fix{report_note}"
        return line, failed
