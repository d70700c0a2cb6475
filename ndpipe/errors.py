"""Error types and the exit codes they map to.

Exit codes (documented in the README):

    0  success
    1  bad input data, a record that could not be processed, an output that could not be
       written (full disk), or Auth0 said no: credentials refused, a job failed or expired,
       users rejected
    2  usage: a bad option, field spec or expression, or an output that is an input (nothing
       was read or written)
    3  Auth0 or the network could not be reached or kept failing: retries exhausted, a broken
       download (running the command again may work)
   70  an internal error: a bug in ndpipe (the message says how to report it)
  130  interrupted (Ctrl-C, SIGINT)
  143  terminated (SIGTERM, as `timeout` and service managers send); 129 for SIGHUP
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_REMOTE = 3
EXIT_INTERNAL = 70
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


class OutputError(NdpipeError):
    """A file (or stdout) that could not be written: a full disk, a missing permission.

    Not a DataError: the input is not to blame, so no input position is added.
    """

    exit_code = EXIT_DATA


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (removing partial files), exit 128 + N."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.exit_code = 128 + signal_number


class RemoteError(NdpipeError):
    """Auth0 or the network kept failing: connection errors, 5xx or 429 past the retries."""

    exit_code = EXIT_REMOTE


class Refused(RemoteError):
    """Auth0 answered, and the answer is no: credentials refused, a 4xx, a failed or expired job.

    Running the same command again will not help, so it exits 1 like other bad input.
    """

    exit_code = EXIT_DATA


# --- secrets ----------------------------------------------------------------------------------

# Every credential ndpipe is given or obtains (client secrets, tokens) is registered here as soon
# as it is known, and every message ndpipe prints passes through `redact`, so no exception text
# (ours or a library's, which may quote a header or a URL) can show one.
_SECRETS: set[str] = set()
# Shorter values are not secrets worth hiding, and replacing them would mangle messages.
MIN_SECRET_LENGTH = 6
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Remember a credential so that `redact` hides it (and its stripped form) everywhere."""
    if not value:
        return
    for form in (value, value.strip()):
        if len(form) >= MIN_SECRET_LENGTH:
            _SECRETS.add(form)


def redact(text: str) -> str:
    """`text` with every registered secret replaced, longest first."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
