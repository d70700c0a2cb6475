"""One job runner for every service: Auth0 imports, Marketo batches, Salesforce ingest jobs.

A service sends work (a chunk of users, a file of leads) as a job, which runs on the service's
side; the runner keeps at most `limit` jobs active, polls them until one ends, hands it to
`settle` (which reads its per-record results), and sends the next piece of work. So a run of
any length stays within the service's concurrency limit and accounts for every piece of work:
when the service or the network fails for good, the RemoteError names the jobs whose outcome is
unknown and what to run to resume (`resume`).

The runner knows nothing of HTTP or of records; the service module gives it functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ndpipe.errors import NdpipeError, RemoteError
from ndpipe.services.settings import seconds

W = TypeVar("W")  # a piece of work: what one job is sent
# Seconds between two reads of a job when NDPIPE_POLL_INTERVAL is not set: each read counts
# against the Auth0 tenant's Management API rate limit (AUTH0.md §1.3).
DEFAULT_POLL_INTERVAL = 2.0


def poll_interval(default: float = DEFAULT_POLL_INTERVAL) -> float:
    """Seconds between job reads: NDPIPE_POLL_INTERVAL (0 to 3600), else DEFAULT; a bad
    value is a UsageError, so commands call this while the command line is parsed."""
    return seconds("NDPIPE_POLL_INTERVAL", default, 3600)


@dataclass
class Active(Generic[W]):
    """A job on the service's side: its work, the service's handle (an id) and when it began."""

    work: W
    handle: Any
    started: float


class JobRunner(Generic[W]):
    """Runs work as jobs, at most `limit` at a time.

    - start(work) -> handle: send the work (waiting out the service's own "too many jobs"
      answers is start's business, since only the service knows how it says so);
    - check(handle) -> ended job or None: one poll; None while the job is still running;
    - settle(active, ended): read the ended job's results (and report its failures);
    - clash(work, active): True when WORK must not run beside that active job (the same users
      in two concurrent Auth0 imports race);
    - pause(): wait one poll interval; clock(): now, in seconds;
    - progress(): called after each job sent, ended, and each round of polling;
    - timeout: seconds a job may stay active before the run stops waiting (it may still end);
    - name(handle): the job as messages name it ("import job job_abc").
    """

    def __init__(
        self,
        *,
        limit: int,
        start: Callable[[W], Any],
        check: Callable[[Any], Any | None],
        settle: Callable[[Active[W], Any], None],
        pause: Callable[[], None],
        clock: Callable[[], float],
        timeout: float,
        name: Callable[[Any], str] = lambda handle: f"job {handle}",
        clash: Callable[[W, Active[W]], bool] | None = None,
        progress: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self._start = start
        self._check = check
        self._settle = settle
        self._pause = pause
        self._clock = clock
        self.timeout = timeout
        self._name = name
        self._clash = clash
        self._progress = progress or (lambda: None)
        self.active: list[Active[W]] = []

    def run(self, work: Iterable[W], resume: Callable[[list[W]], str] | None = None) -> None:
        """Send every piece of work and wait for every job to end.

        Bad input (an NdpipeError raised by `work` after its last good piece) waits for the
        jobs already sent, so their results are read, then stops the run. When the service
        fails for good, the RemoteError gets the active jobs' names and `resume(unsettled)`,
        the instruction to go on from the first piece of work that was not settled.
        """
        pending: list[W] = []
        try:
            try:
                for piece in work:
                    pending = [piece]
                    self.submit(piece)
                    pending = []
            except RemoteError:
                raise
            except NdpipeError:
                self.drain()
                raise
            self.drain()
        except RemoteError as error:
            if self.active:
                running = ", ".join(self._name(job.handle) for job in self.active)
                error.message += (
                    f"; {running} {'was' if len(self.active) == 1 else 'were'} still running: "
                    "its records may be imported"
                )
            unsettled = [job.work for job in self.active] + pending
            if unsettled and resume is not None:
                error.message += "; " + resume(unsettled)
            raise

    def submit(self, work: W) -> None:
        """Send WORK once a slot is free (and no active job clashes with it)."""
        while len(self.active) >= self.limit or (
            self._clash is not None and any(self._clash(work, job) for job in self.active)
        ):
            self.wait_for_one()
        handle = self._start(work)
        self.active.append(Active(work, handle, self._clock()))
        self._progress()

    def drain(self) -> None:
        while self.active:
            self.wait_for_one()

    def wait_for_one(self) -> None:
        """Poll the active jobs until one has ended, and settle it."""
        while True:
            for job in self.active:
                ended = self._check(job.handle)
                if ended is not None:
                    self.active.remove(job)
                    self._settle(job, ended)
                    self._progress()
                    return
                waited = self._clock() - job.started
                if waited > self.timeout:
                    raise RemoteError(
                        f"{self._name(job.handle)} is still running after {waited / 3600:.1f} h; "
                        "stopped waiting (it may still finish)"
                    )
            self._progress()
            self._pause()
