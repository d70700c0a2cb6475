"""An export job, from start to the last user: start it (or take an existing one), follow it to
its end with its progress on stderr, and stream its file as it downloads (AUTH0.md §1).

The file's bytes are handed to a reader the caller gives (`ExportJob.users`), which turns them
into users; this module counts them and shows the download's progress, and never reads a
record itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, TypeVar

from ndpipe.errors import Refused, RemoteError, UsageError
from ndpipe.progress import CHECK_EVERY, DownloadProgress, duration
from ndpipe.text import plural

if TYPE_CHECKING:
    from ndpipe.services.auth0.client import Auth0Client

T = TypeVar("T")
# What turns the export file (a binary stream, and its name for messages) into users.
Reader = Callable[[BinaryIO, str], Iterable[T]]
SAMPLE_SIZE = 10  # the Dashboard's "Export as Sample"
CSV_MAX_FIELDS = 30  # AUTH0.md §1.5
FIELD_TEXT_MAX = 100  # name and export_as, AUTH0.md §1.2
WHOLE_METADATA = ("app_metadata", "user_metadata")


def check_export_fields(entries: Iterable[Mapping[str, Any]], source: str) -> None:
    """What Auth0 checks of an export job's `fields` besides their names' syntax: only name
    and export_as, each 1 to 100 characters. SOURCE says where they came from, for the
    UsageError."""
    for entry in entries:
        for key in ("name", "export_as"):
            value = entry.get(key)
            if value is not None and not 1 <= len(value) <= FIELD_TEXT_MAX:
                raise UsageError(f"{source}: {key} {value!r} must be 1 to 100 characters")
        extra = set(entry) - {"name", "export_as"}
        if extra:
            raise UsageError(f"{source}: unknown key {sorted(extra)[0]!r} (only name, export_as)")


def csv_problems(fields: Sequence[Mapping[str, str]]) -> list[str]:
    """Why Auth0 would refuse or empty a csv export of these fields (AUTH0.md §1.5)."""
    problems = []
    if len(fields) > CSV_MAX_FIELDS:
        problems.append(
            f"Auth0 limits csv exports to {CSV_MAX_FIELDS} fields; this asks for {len(fields)} "
            "(use --format json)"
        )
    for entry in fields:
        if entry["name"] in WHOLE_METADATA:
            problems.append(
                f"a csv export cannot hold {entry['name']} as a whole object; name its fields "
                f"({entry['name']}.plan, ...) or use --format json"
            )
    return problems


class JobProgress:
    """A job's progress on stderr: one redrawn bar on a terminal, else a line per change.

    Fed every reading of the job (GET /api/v2/jobs/{id}): status, percentage_done and
    time_left_seconds, which Auth0 gives while an export is processing.
    """

    WIDTH = 30

    def __init__(self, command: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.command = command
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.last = ""
        self.drawn = False

    def __call__(self, job: dict[str, Any]) -> None:
        if not self.enabled:
            return
        status = str(job.get("status", "?"))
        done = job.get("percentage_done")
        left = job.get("time_left_seconds")
        if status == "completed":
            done = 100
        text = status
        if isinstance(done, int | float) and status != "completed":
            text += f", {done:g}% done"
        if isinstance(left, int | float) and left > 0 and status != "completed":
            text += f", about {duration(left)} left"
        label = f"ndpipe {self.command}: job {job.get('id')}"
        if self.live:
            filled = int(self.WIDTH * min(max(float(done or 0), 0.0), 100.0) / 100)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r{label} [{bar}] {text}\x1b[K")
            self.stream.flush()
            self.drawn = True
        elif text != self.last:
            self.stream.write(f"{label}: {text}\n")
            self.stream.flush()
        self.last = text

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


class ExportJob:
    """Start (or reuse) an export job, wait for it, stream its file.

    `client` makes the Auth0Client when the run starts (so that nothing is opened while the
    command line is checked); `notify` gets the notices (the job started, the users counted);
    `progress` shows the job's progress and the download's on stderr, labelled with COMMAND.
    """

    def __init__(
        self,
        client: Callable[[], Auth0Client],
        *,
        job_id: str | None,
        connection: str | None,
        fields: Sequence[Mapping[str, str]],
        limit: int | None,
        format: str,
        command: str = "fetch",
        notify: Callable[[str], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.make_client = client
        self.job_id = job_id
        self.connection = connection
        self.fields = fields
        self.limit = limit
        self.format = format
        self.command = command
        self.notify = notify or (lambda message: None)
        self.progress = progress
        self.count = 0  # users read so far

    def users(self, read: Reader[T]) -> Iterator[T]:
        """What READ makes of the job's file, counted as users, as the file downloads.

        A download that fails for good raises RemoteError saying how to download the same file
        again, since Auth0 keeps it for 24 hours.
        """
        progress = JobProgress(self.command, enabled=self.progress)
        client = self.make_client()
        try:
            job_id = self.job_id or self._start(client)
            try:
                client.poll_job(job_id, progress)
            finally:
                progress.close()
            label = f"ndpipe {self.command}: job {job_id}"
            download = DownloadProgress(label, enabled=self.progress)
            client.watch_downloads(download.response)
            stream = client.open_export(job_id)
            try:
                yield from self._counted(download, read(stream, f"export job {job_id}"))
            except RemoteError as error:
                if isinstance(error, Refused):
                    raise
                error.message += (
                    f" (Auth0 keeps the file for 24 hours: `ndpipe {self.command} --job "
                    f"{job_id}` downloads it again)"
                )
                raise
            finally:
                download.close(self.count)
                stream.close()
            self.notify(f"export job {job_id}: {plural(self.count, 'user')}")
        finally:
            client.close()

    def _counted(self, download: DownloadProgress, users: Iterable[T]) -> Iterator[T]:
        for user in users:
            self.count += 1
            if not self.count % CHECK_EVERY:  # the clock is read only every CHECK_EVERY users
                download.update(self.count)
            yield user

    def _start(self, client: Auth0Client) -> str:
        connection_id = None
        if self.connection:
            connection_id = client.resolve_connection(self.connection)
        job = client.start_export(
            connection_id, format=self.format, fields=self.fields or None, limit=self.limit
        )
        what = f"connection {self.connection}" if self.connection else "all connections"
        self.notify(f"started export job {job['id']} ({what}, {self.format})")
        return str(job["id"])
