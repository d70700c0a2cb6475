"""Every file ndpipe writes goes through here, so each one is complete or absent.

A file (a side file such as --dups, an --out file, a chunk) is written under a hidden temporary
name in its own directory, then flushed, synced and renamed into place when it is complete. On
an error, Ctrl-C or SIGTERM the temporary file is removed: no half-written file ever stands
under a final name. An I/O failure (a full disk, an unwritable path, a directory in the way) is
an OutputError that names the file, never a traceback and never blamed on an input line.

Files still open when a run ends are committed by the pipeline if the run succeeded
(`commit_all`) and removed if it did not (`abort_all`). stdout cannot be renamed, so it gets
the clear errors only (`Stdout`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable
from typing import BinaryIO

from ndpipe.errors import OutputError, UsageError

# The temporary file gets the permissions a plain open() would give the final file.
_UMASK = os.umask(0)
os.umask(_UMASK)
WRITE_BUFFER_BYTES = 256 * 1024

_open_files: set[AtomicFile] = set()
# Outputs (by option) whose missing directories are created: the --out files of to-json-array
# and import. Side files (--dups, --report, ...) need an existing directory.
MAKES_DIRECTORIES = frozenset({"--out"})
# (device, inode) of every input file, which no output may replace.
_inputs: dict[tuple[int, int], str] = {}


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


class AtomicFile:
    """A file written under a temporary name and renamed to `path` by `commit`."""

    def __init__(self, path: str, label: str, *, make_directories: bool = False) -> None:
        self.path = path
        self.label = label  # how messages name it: "--dups dups.ndjson", "import/users-1.json"
        if os.path.isdir(path):
            raise OutputError(f"cannot write {label}: it is a directory")
        directory = os.path.dirname(path) or "."
        import tempfile  # here: most runs write no file, and it is slow to import

        try:
            if make_directories:
                os.makedirs(directory, exist_ok=True)
            descriptor, self.temporary = tempfile.mkstemp(
                prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory
            )
        except OSError as error:
            raise OutputError(f"cannot write {label}: {_reason(error)}") from None
        _open_files.add(self)
        os.fchmod(descriptor, 0o666 & ~_UMASK)
        self.handle = os.fdopen(descriptor, "wb", buffering=WRITE_BUFFER_BYTES)

    def failed(self, error: OSError) -> OutputError:
        return OutputError(f"cannot write {self.label}: {_reason(error)}")

    def write(self, data: bytes | bytearray) -> None:
        try:
            self.handle.write(data)
        except OSError as error:
            raise self.failed(error) from None

    def commit(self) -> None:
        """Flush, sync and rename into place; on failure the temporary file is removed."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            _refuse_input(self.path, self.label)
            os.replace(self.temporary, self.path)
        except OSError as error:
            self.abort()
            raise self.failed(error) from None
        except BaseException:
            self.abort()
            raise
        _open_files.discard(self)

    def abort(self) -> None:
        """Close and remove the temporary file, quietly: this runs while handling an error."""
        _open_files.discard(self)
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temporary)


def commit_all() -> None:
    """Commit the files still open, in the order they were opened (the run succeeded)."""
    for file in sorted(_open_files, key=lambda file: file.temporary):
        file.commit()


def abort_all() -> None:
    """Remove every file not yet committed and every scratch directory (the run failed or was
    stopped, or it is over)."""
    for file in list(_open_files):
        file.abort()
    for path in list(_scratch):
        remove_scratch(path)


# --- scratch directories ----------------------------------------------------------------------

_scratch: set[str] = set()


def scratch_directory(prefix: str, parent: str | None = None) -> str:
    """A new private directory for temporary files (sort's runs), removed by `remove_scratch`,
    or by `abort_all` when the run fails or is stopped."""
    import tempfile

    try:
        path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError as error:
        where = parent or tempfile.gettempdir()
        raise OutputError(
            f"cannot create a temporary directory in {where}: {_reason(error)}"
        ) from None
    _scratch.add(path)
    return path


def remove_scratch(path: str) -> None:
    import shutil

    _scratch.discard(path)
    shutil.rmtree(path, ignore_errors=True)


# --- inputs that outputs must not replace --------------------------------------------------


def _identity(path: str | int) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return (status.st_dev, status.st_ino)


def protect_input(path: str, label: str | None = None) -> None:
    """Record an input file ('-' is stdin when it is a file) that no output may replace."""
    identity = _identity(0 if path == "-" else path)
    if identity is not None and (path != "-" or _is_regular(0)):
        _inputs[identity] = label or ("stdin" if path == "-" else path)


def _is_regular(descriptor: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(descriptor).st_mode)
    except OSError:
        return False


def _refuse_input(path: str, label: str) -> None:
    identity = _identity(path)
    if identity is not None and identity in _inputs:
        raise OutputError(f"cannot write {label}: it is the input {_inputs[identity]}")


# How many names of a numbered output (`--out 'users-{n}.json'`) are checked against the inputs
# before the run; later ones are checked when they are written.
NUMBERED_CHECKED = 1000
Target = str | Callable[[int], str]


def check_files(inputs: list[str], outputs: list[tuple[str, Target]]) -> None:
    """Refuse (exit 2) outputs that are an input, stdout's file, each other, or a directory.

    Called once the whole command line is parsed and before anything is opened for writing.
    `inputs` are paths ('-' for stdin); `outputs` are (label, path) pairs, where the path of
    numbered files is a function from the file number to the name.
    """
    for path in inputs:
        protect_input(path)
    stdout = _identity(1) if _is_regular(1) else None
    if stdout is not None and stdout in _inputs:
        raise UsageError(
            f"stdout is the input {_inputs[stdout]}: the shell has already truncated it; "
            "write to another file"
        )
    seen: dict[str, str] = {}
    for label, target in outputs:
        if isinstance(target, str):
            paths = [target]
        else:
            paths = [target(number) for number in range(1, NUMBERED_CHECKED + 1)]
        first = paths[0]
        if os.path.isdir(first):
            raise UsageError(f"{label} {first} is a directory; give a file name")
        problem = _unwritable(first, make_directories=label in MAKES_DIRECTORIES)
        if problem:
            raise UsageError(f"cannot write {label} {first}: {problem}")
        for path in paths:
            identity = _identity(path)
            if identity is None:
                continue
            if identity in _inputs:
                raise UsageError(
                    f"{label} {path} is the input ({_inputs[identity]}); writing it would "
                    "destroy the input: give another file"
                )
            if identity == stdout:
                raise UsageError(f"{label} {path} is the file stdout goes to; give another file")
        key = os.path.realpath(first)
        if key in seen:
            raise UsageError(f"{label} and {seen[key]} are the same file, {first}; give two names")
        seen[key] = label


def _unwritable(path: str, *, make_directories: bool) -> str | None:
    """Why a file could not be created at `path`, or None: its directory is missing (unless it
    is to be made), is not a directory, or is not writable."""
    directory = os.path.dirname(os.path.abspath(path))
    if not make_directories and not os.path.exists(directory):
        return f"no directory {directory}"
    while not os.path.exists(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    if not os.path.isdir(directory):
        return f"{directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"no permission to write in {directory}"
    return None


# --- stdout ------------------------------------------------------------------------------------


class Stdout:
    """Binary stdout whose failures are OutputErrors (a closed pipe stays a BrokenPipeError)."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer

    def write(self, data: bytes | bytearray) -> int:
        try:
            return self.stream.write(data)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise OutputError(f"cannot write to stdout: {_reason(error)}") from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as error:
            raise OutputError(f"cannot write to stdout: {_reason(error)}") from None
