"""Auth0's bulk import format: the users files an import job takes, and its failure reports.

A users file is one JSON array (AUTH0.md §2.2): at most 500,000 bytes, so that the request,
multipart framing included, stays under Auth0's 512,000, and no email twice, since Auth0 fails
a file that holds one user twice (§2.4). The array is framed as to-json-array writes it (one
user a line), so `import --out` files and to-json-array's are the same bytes.

A failed user is reported in the shape of an item of GET /api/v2/jobs/{id}/errors, plus where
the failure was found; such a line read back is its user, so a fixed report can be sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ndpipe import codec

OPEN = b"[\n"
SEPARATOR = b",\n"
CLOSE = b"\n]\n"
EMPTY = b"[]\n"
# The bytes a one-user file adds around its user.
FRAME = len(OPEN) + len(CLOSE)
# Auth0 takes requests of up to 512,000 bytes; this leaves room for the multipart framing.
MAX_BYTES = 500_000
# The keys of a report line (report_entry).
REPORT_KEYS = frozenset({"user", "errors", "job", "input"})


@dataclass
class Chunk:
    """One users file being built: the JSON array's bytes, its users' emails, its count."""

    number: int
    body: bytearray = field(default_factory=bytearray)
    emails: set[str] = field(default_factory=set)
    count: int = 0

    def size_with(self, size: int) -> int:
        """The array's size if a user of `size` bytes were added as its last."""
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

    def users(self) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = codec.loads(self.array())
        return users


def report_entry(
    user: dict[str, Any], errors: list[dict[str, Any]], **where: Any
) -> dict[str, Any]:
    """A report line: Auth0's /errors item shape, plus where the failure was found (`job` or
    `input`)."""
    return {"user": user, "errors": errors, **where}


def unwrap_report(record: dict[str, Any]) -> dict[str, Any]:
    """A report line (report_entry) is read as its user; any other record as itself."""
    if (
        "email" not in record
        and "errors" in record
        and isinstance(record.get("user"), dict)
        and record.keys() <= REPORT_KEYS
    ):
        user: dict[str, Any] = record["user"]
        return user
    return record
