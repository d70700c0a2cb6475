"""The local half of `import`: check users against the import schema and pack them into chunks.

A chunk is one JSON array for one import job: at most `max_bytes` bytes (brackets and
separators counted, as to-json-array writes them), and no email twice, since Auth0 fails a
file that holds one user twice (AUTH0.md §2.4). Memory is one chunk at a time. The format
itself (Chunk, report lines) is Auth0's: ndpipe.services.auth0.import_format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ndpipe.errors import NdpipeError
from ndpipe.io import Encoder, Record, dump_json
from ndpipe.services.auth0.import_format import FRAME, MAX_BYTES, Chunk, unwrap_report
from ndpipe.services.auth0.schema import Problem, check_user


def chunk_users(
    records: Iterable[Record],
    *,
    on_invalid: Callable[[Record, list[Problem]], None],
    encode: Encoder = dump_json,
    max_bytes: int = MAX_BYTES,
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
