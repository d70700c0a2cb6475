"""Error types and the exit codes they map to.

Exit codes (documented in the README):

    0  success
    1  bad input data, a record that could not be processed, or Auth0 said no: credentials
       refused, a job failed or expired, users rejected
    2  usage: a bad option, field spec or expression (nothing was read)
    3  Auth0 or the network could not be reached or kept failing: retries exhausted, a broken
       download (running the command again may work)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_REMOTE = 3
EXIT_INTERRUPTED = 130


class NdpipeError(Exception):
    """Base class: an error with a message meant for the user and an exit code."""

    exit_code = EXIT_DATA

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(NdpipeError):
    """A bad option, field spec or expression, detected before any input is read."""

    exit_code = EXIT_USAGE


class DataError(NdpipeError):
    """Bad input: malformed JSON, a line that is not an object, invalid UTF-8, an unreadable file.

    `where` is filled in by the streaming core (`stdin:12`, `users.json: record 7`) when the
    raiser does not know the position itself.
    """

    exit_code = EXIT_DATA

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class RecordError(DataError):
    """A record that an op cannot process (an expression fails on it, a value has the wrong type).

    Ops raise it without a position; the core adds the input position of the record being processed.
    """


class RemoteError(NdpipeError):
    """Auth0 or the network kept failing: connection errors, 5xx or 429 past the retries."""

    exit_code = EXIT_REMOTE


class Refused(RemoteError):
    """Auth0 answered, and the answer is no: credentials refused, a 4xx, a failed or expired job.

    Running the same command again will not help, so it exits 1 like other bad input.
    """

    exit_code = EXIT_DATA
