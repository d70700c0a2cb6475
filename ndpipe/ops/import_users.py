"""The local half of `import`: check users against the import schema and pack them into chunks.

A chunk is one JSON array for one import job: at most `max_bytes` bytes (brackets and
separators counted, as to-json-array writes them), and no email twice, since Auth0 fails a
file that holds one user twice (AUTH0.md §2.4). Memory is one chunk at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ndpipe import codec
from ndpipe.errors import NdpipeError
from ndpipe.io import Encoder, Record, dump_json
from ndpipe.ops.to_json_array import AUTH0_MAX_BYTES, CLOSE, EMPTY, FRAME, OPEN, SEPARATOR
from ndpipe.services.auth0.schema import Problem, check_user

# The keys of a line of an earlier --report: such a line is read as its user, so failures
# can be fixed and sent again.
REPORT_KEYS = frozenset({"user", "errors", "job", "input"})


@dataclass
class Chunk:
    """One import file being built: the JSON array's bytes, its users' emails, its count."""

    number: int
    body: bytearray = field(default_factory=bytearray)
    emails: set[str] = field(default_factory=set)
    count: int = 0

    def size_with(self, size: int) -> int:
        """The array's size if a record of `size` bytes were added as its last."""
        if not self.count:
            return size + FRAME
        return len(self.body) + len(SEPARATOR) + size + len(CLOSE)

    def add(self, line: bytes, email: str) -> None:
        self.body += SEPARATOR if self.count else OPEN
        self.body += line
        self.emails.add(email)
        self.count += 1

    def array(self) -> bytes:
        """The complete JSON array."""
        return bytes(self.body + CLOSE) if self.count else EMPTY

    def users(self) -> list[Record]:
        users: list[Record] = codec.loads(self.array())
        return users


def unwrap_report(record: Record) -> Record:
    """A line of an earlier --report is read as its user; any other record as itself."""
    if (
        "email" not in record
        and "errors" in record
        and isinstance(record.get("user"), dict)
        and record.keys() <= REPORT_KEYS
    ):
        user: Record = record["user"]
        return user
    return record


def chunk_users(
    records: Iterable[Record],
    *,
    on_invalid: Callable[[Record, list[Problem]], None],
    encode: Encoder = dump_json,
    max_bytes: int = AUTH0_MAX_BYTES,
) -> Iterator[Chunk]:
    """Valid users packed into chunks in input order; the others go to `on_invalid`.

    A user whose JSON alone is over the limit is invalid too (Auth0 would refuse the file).
    A user whose email is already in the current chunk starts the next one. When the input
    fails (a bad line), the chunk in hand is yielded before the error is raised.
    """
    number = 1
    chunk = Chunk(number)
    try:
        for record in records:
            user = unwrap_report(record)
            problems = check_user(user)
            if problems:
                on_invalid(user, problems)
                continue
            line = encode(user)
            if len(line) + FRAME > max_bytes:
                on_invalid(user, [_too_large(len(line), max_bytes)])
                continue
            email: str = user["email"].lower()
            if chunk.count and (email in chunk.emails or chunk.size_with(len(line)) > max_bytes):
                yield chunk
                number += 1
                chunk = Chunk(number)
            chunk.add(line, email)
    except NdpipeError:
        # Bad input stops the run, as everywhere: the users before it still go out first.
        if chunk.count:
            yield chunk
        raise
    if chunk.count:
        yield chunk


def _too_large(size: int, max_bytes: int) -> Problem:
    return Problem(
        "TOO_LARGE",
        "",
        f"the user is {size} bytes as JSON; an import file holding only it would be "
        f"{size + FRAME} bytes, over the {max_bytes}-byte limit",
    )


def report_entry(user: Record, errors: list[dict[str, Any]], **where: Any) -> Record:
    """A --report line: Auth0's /errors item shape, plus where the failure was found."""
    return {"user": user, "errors": errors, **where}
