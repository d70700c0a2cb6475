"""upsert-patch: merge edits into a fresh export, so an upsert changes exactly what was meant.

Auth0's bulk import with upsert=true replaces app_metadata and user_metadata whole, and resets
email_verified to false when a record does not carry it (../shared/AUTH0.md section 2.4). A
partial record such as {"email": ..., "user_metadata": {"plan": "gold"}} would wipe every other
user_metadata key and un-verify the user. So this op joins the edits with the current users and
emits, for each user the edits change, a record with the full merged object.

Pieces:
- `check_patch`: one line of the patch file, checked before any user is read.
- `PatchIndex`: the patch file by lower-cased email, in memory up to a budget, beyond it in an
  on-disk sqlite index; it remembers which emails matched, and lists the rest in file order.
- `PathEdit`: `--set PATH=JSON` / `--unset PATH`, applied to every user `--where` selects.
- `upsert_patch`: the op.

What a written record carries: email (as the export has it), email_verified (the current value
unless an edit sets it), and every other upsertable field whose value the edits change, with
app_metadata and user_metadata as full merged objects. A metadata object that the edits leave
as it was is not sent, because the import leaves attributes it is not sent unchanged (only
email_verified is reset); this keeps the records small and does not overwrite changes made in
Auth0 after the export. With `keep_all`, every user is written, with both metadata objects.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ndpipe import codec, output
from ndpipe.errors import DataError, OutputError, RecordError, UsageError
from ndpipe.expr import EvaluationError, Expression, truthy
from ndpipe.io import ErrorPolicy, Position, Record, Records, read_records
from ndpipe.ops.map import parse_path
from ndpipe.ops.sort import serialise
from ndpipe.services.auth0.schema import (
    EXPORT_ONLY_FIELDS,
    FORBIDDEN_APP_METADATA_KEYS,
    SCHEMA_FIELDS,
    UPSERTABLE_FIELDS,
    UPSERTABLE_ORDER,
    check_user,
)

METADATA = ("app_metadata", "user_metadata")
MERGE_MODES = ("deep", "shallow")
REQUIRED_INPUT = ("email", "email_verified", "app_metadata", "user_metadata")
# Database-connection users have ids with this prefix; only they can be upserted by an import.
DATABASE_PREFIX = "auth0|"

DEFAULT_MEMORY_BUDGET = 64 * 1000 * 1000
# Estimated bytes per patch held in memory beyond its JSON: the (line, bytes) tuple, the bytes
# header and the list slot; and per distinct email: the key string, its list and the dict entry.
PATCH_OVERHEAD = 120
EMAIL_OVERHEAD = 200
SPILL_BATCH = 10_000
# sqlite's page cache, in KiB (a negative cache_size is KiB).
SQLITE_CACHE_KIB = 32 * 1024
LISTED_PROBLEMS = 10


def email_key(email: str) -> str:
    """How emails are matched: Auth0 stores them lower-cased; stray spaces are a spreadsheet's."""
    return email.strip().lower()


# --- merging -----------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch, without modifying either argument.

    Objects merge key by key, recursively; null deletes a key; anything else (arrays included)
    replaces. Unchanged branches of `target` are shared with the result, not copied.
    """
    if type(patch) is not dict:
        return patch
    result = dict(target) if type(target) is dict else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def shallow_merge(target: Any, patch: Any) -> Any:
    """Auth0's PATCH /users/{id} for metadata: first-level keys replace, null deletes a key."""
    if type(patch) is not dict:
        return patch
    result = dict(target) if type(target) is dict else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


MERGES: dict[str, Callable[[Any, Any], Any]] = {"deep": merge_patch, "shallow": shallow_merge}


def same_json(left: Any, right: Any) -> bool:
    """Equal as JSON values: unlike ==, true is not 1 (1 and 1.0 are the same number)."""
    if left != right:
        return False
    kind = type(left)
    if kind is bool or type(right) is bool:
        return kind is type(right)
    if kind is dict:
        return all(same_json(value, right[key]) for key, value in left.items())
    if kind is list:
        return all(same_json(a, b) for a, b in zip(left, right, strict=True))
    return True


# --- checking patches --------------------------------------------------------------------------


def _not_upsertable(key: str) -> str:
    if key in SCHEMA_FIELDS:
        return (
            f"{key!r} cannot be changed by an import upsert (Auth0 updates only "
            f"{', '.join(sorted(UPSERTABLE_FIELDS))})"
        )
    if key in EXPORT_ONLY_FIELDS:
        return f"{key!r} is read-only in Auth0 (an export-only attribute)"
    return f"{key!r} is not a field of Auth0's import schema"


def _check_value(key: str, value: Any, *, deleting: bool) -> str | None:
    """Why `value` cannot be sent for the upsertable field `key`, or None."""
    if key in METADATA:
        if value is None:
            return None if deleting else f"{key} must be an object"
        if type(value) is not dict:
            return f"{key} must be an object{' or null' if deleting else ''}"
        if key == "app_metadata":
            forbidden = sorted(
                name
                for name, item in value.items()
                if name in FORBIDDEN_APP_METADATA_KEYS and (item is not None or not deleting)
            )
            if forbidden:
                return f"app_metadata must not contain {', '.join(forbidden)} (Auth0 refuses them)"
        return None
    if value is None:
        return (
            f"{key} is null, but an import cannot remove {key}: it leaves fields it is not sent "
            "unchanged and refuses null"
        )
    problems = [p for p in check_user({"email": "x@example.com", key: value}) if p.path != "email"]
    if problems:
        return "; ".join(str(problem) for problem in problems)
    return None


def check_patch(patch: Record) -> str:
    """The match key (lower-cased email) of a patch; ValueError saying why if it is invalid."""
    email = patch.get("email")
    if type(email) is not str or not email.strip():
        raise ValueError('a patch needs "email", a string: the user to change')
    for key, value in patch.items():
        if key == "email":
            continue
        if key not in UPSERTABLE_FIELDS:
            raise ValueError(_not_upsertable(key))
        problem = _check_value(key, value, deleting=True)
        if problem:
            raise ValueError(problem)
    return email_key(email)


# --- the patch index ---------------------------------------------------------------------------


class AlreadyMatched(Exception):
    """An earlier user with the same (lower-cased) email already took these patches."""


class PatchIndex:
    """Patches by lower-cased email, in file order; in memory up to a budget, then in sqlite.

    Bodies are kept as JSON bytes and parsed again for each match, so the patches a user gets
    are never shared with another user.
    """

    def __init__(
        self, *, memory_budget: int = DEFAULT_MEMORY_BUDGET, temp_dir: str | None = None
    ) -> None:
        self.memory_budget = memory_budget
        self.temp_dir = temp_dir
        # Unmatched emails map to a list of (line, body); matched ones to a tuple.
        self.memory: dict[str, list[tuple[int, bytes]] | tuple[tuple[int, bytes], ...]] = {}
        self.used = 0
        self.patches = 0
        self.matched_patches = 0
        self.directory: str | None = None
        self.database: sqlite3.Connection | None = None
        self.pending: list[tuple[int, str, bytes]] = []

    @property
    def spilled(self) -> bool:
        return self.database is not None

    def add(self, key: str, line: int, body: bytes) -> None:
        """Add a patch; `line` must grow from call to call."""
        self.patches += 1
        if self.database is not None:
            self.pending.append((line, key, body))
            if len(self.pending) >= SPILL_BATCH:
                self._flush()
            return
        patches = self.memory.get(key)
        if patches is None:
            patches = self.memory[key] = []
            self.used += len(key) + EMAIL_OVERHEAD
        assert type(patches) is list
        patches.append((line, body))
        self.used += len(body) + PATCH_OVERHEAD
        if self.used > self.memory_budget:
            self._spill()

    def _spill(self) -> None:
        # Removed by close(), and by the CLI on any error, Ctrl-C or SIGTERM.
        self.directory = output.scratch_directory("ndpipe-upsert-patch-", self.temp_dir)
        path = os.path.join(self.directory, "patches.sqlite")
        database = sqlite3.connect(path, isolation_level=None)
        database.execute("PRAGMA journal_mode = OFF")
        database.execute("PRAGMA synchronous = OFF")
        database.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        # The index build sorts through temporary files next to the database, not in memory.
        database.execute("PRAGMA temp_store = FILE")
        database.execute(
            "CREATE TABLE patch (line INTEGER PRIMARY KEY, email TEXT NOT NULL, body BLOB NOT NULL)"
        )
        database.execute("CREATE TABLE matched (email TEXT PRIMARY KEY) WITHOUT ROWID")
        database.execute("BEGIN")
        self.database = database
        # Rows go in by line, so the table (keyed by line) is written in order.
        rows = sorted(
            (line, key, body) for key, patches in self.memory.items() for line, body in patches
        )
        self.memory = {}
        self.used = 0
        self.pending = rows
        self._flush()

    def _flush(self) -> None:
        assert self.database is not None
        try:
            self.database.executemany(
                "INSERT INTO patch (line, email, body) VALUES (?, ?, ?)", self.pending
            )
        except sqlite3.Error as error:
            raise self._failed(error) from None
        self.pending = []

    def _failed(self, error: sqlite3.Error) -> OutputError:
        where = self.directory or "?"
        return OutputError(f"the on-disk patch index in {where} failed: {error}")

    def seal(self) -> None:
        """Done adding: build the lookup index."""
        if self.database is None:
            return
        self._flush()
        try:
            self.database.execute("CREATE INDEX patch_email ON patch (email)")
            self.database.execute("COMMIT")
            self.database.execute("BEGIN")
        except sqlite3.Error as error:
            raise self._failed(error) from None

    def match(self, key: str) -> Sequence[tuple[int, bytes]]:
        """The patches for `key`, in file order; marks the email as matched.

        Raises AlreadyMatched when an earlier user already matched these patches.
        """
        if self.database is None:
            found = self.memory.get(key)
            if not found:
                return ()
            if type(found) is tuple:
                raise AlreadyMatched(key)
            # A tuple marks a matched email, without keeping a second copy of the key.
            self.memory[key] = matched = tuple(found)
            self.matched_patches += len(matched)
            return matched
        try:
            rows = self.database.execute(
                "SELECT line, body FROM patch WHERE email = ? ORDER BY line", (key,)
            ).fetchall()
            if not rows:
                return ()
            self.database.execute("INSERT INTO matched (email) VALUES (?)", (key,))
        except sqlite3.IntegrityError:
            raise AlreadyMatched(key) from None
        except sqlite3.Error as error:
            raise self._failed(error) from None
        self.matched_patches += len(rows)
        return rows

    def unmatched(self) -> Iterator[tuple[int, bytes]]:
        """The patches whose email no user matched, in file order."""
        if self.database is None:
            rows = [
                entry
                for patches in self.memory.values()
                if type(patches) is list
                for entry in patches
            ]
            yield from sorted(rows)
            return
        try:
            yield from self.database.execute(
                "SELECT line, body FROM patch WHERE email NOT IN (SELECT email FROM matched) "
                "ORDER BY line"
            )
        except sqlite3.Error as error:
            raise self._failed(error) from None

    def emails(self) -> int:
        """How many distinct emails the patches are for."""
        if self.database is None:
            return len(self.memory)
        row = self.database.execute("SELECT COUNT(DISTINCT email) FROM patch").fetchone()
        return int(row[0])

    def close(self) -> None:
        if self.database is not None:
            self.database.close()
            self.database = None
        if self.directory is not None:
            output.remove_scratch(self.directory)
            self.directory = None
        self.memory = {}


def load_patches(
    path: str, *, memory_budget: int = DEFAULT_MEMORY_BUDGET, temp_dir: str | None = None
) -> PatchIndex:
    """Read and check a patch file (NDJSON or a JSON array, gzip or not) into an index.

    The first bad line stops with a DataError naming the file and line.
    """
    index = PatchIndex(memory_budget=memory_budget, temp_dir=temp_dir)
    position = Position(path)
    try:
        for patch in read_records(path, ErrorPolicy("fail"), position):
            try:
                key = check_patch(patch)
            except ValueError as error:
                raise DataError(f"bad patch: {error}", where=str(position)) from None
            index.add(key, position.number, serialise(patch))
        index.seal()
    except BaseException:
        index.close()
        raise
    return index


# --- --set and --unset -------------------------------------------------------------------------


@dataclass(frozen=True)
class PathEdit:
    """--set PATH=JSON or --unset PATH, on an upsertable field or inside a metadata object."""

    kind: str  # "set" or "unset"
    path: tuple[str, ...]
    value: bytes = b"null"  # JSON, parsed for each use so users never share the value

    def apply(self, state: dict[str, Any], record: Record) -> None:
        name, rest = self.path[0], self.path[1:]
        if not rest:
            state[name] = codec.loads(self.value) if self.kind == "set" else {}
            return
        base = state[name] if name in state else current_metadata(record, name)
        if self.kind == "set":
            state[name] = _set_in(base, rest, codec.loads(self.value))
        else:
            state[name] = _unset_in(base, rest)


def _set_in(target: Any, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    # As a merge patch would: a parent that is not an object is replaced by one.
    result = dict(target) if type(target) is dict else {}
    if len(path) == 1:
        result[path[0]] = value
    else:
        result[path[0]] = _set_in(result.get(path[0]), path[1:], value)
    return result


def _unset_in(target: Any, path: tuple[str, ...]) -> Any:
    if type(target) is not dict or path[0] not in target:
        return target
    result = dict(target)
    if len(path) == 1:
        del result[path[0]]
    else:
        result[path[0]] = _unset_in(result[path[0]], path[1:])
    return result


def _edit_path(text: str, option: str) -> tuple[str, ...]:
    path = parse_path(text)
    name = path[0]
    if name == "email":
        raise UsageError(f"{option} {text!r}: email is how users are matched; it cannot change")
    if name not in UPSERTABLE_FIELDS:
        raise UsageError(f"{option} {text!r}: {_not_upsertable(name)}")
    if len(path) > 1 and name not in METADATA:
        raise UsageError(f"{option} {text!r}: {name} is not an object")
    if len(path) == 2 and name == "app_metadata" and path[1] in FORBIDDEN_APP_METADATA_KEYS:
        raise UsageError(f"{option} {text!r}: Auth0 refuses app_metadata.{path[1]}")
    return path


def parse_set(text: str) -> PathEdit:
    """--set PATH=JSON: the value is JSON text (strings in double quotes)."""
    path_text, equals, value_text = text.partition("=")
    if not equals:
        raise UsageError(f"--set {text!r}: expected PATH=JSON, e.g. 'user_metadata.plan=\"gold\"'")
    path = _edit_path(path_text, "--set")
    try:
        value = codec.loads(value_text)
    except codec.DecodeError:
        raise UsageError(
            f"--set {text!r}: {value_text.strip()!r} is not JSON; write strings in double "
            f"quotes: --set '{path_text.strip()}=\"{value_text.strip()}\"'"
        ) from None
    if len(path) == 1:
        problem = _check_value(path[0], value, deleting=False)
        if problem:
            raise UsageError(f"--set {text!r}: {problem}")
    return PathEdit("set", path, codec.dumps(value))


def parse_unset(text: str) -> PathEdit:
    path = _edit_path(text, "--unset")
    if path[0] not in METADATA:
        raise UsageError(
            f"--unset {text!r}: an import cannot remove {path[0]}; it leaves fields it is not "
            "sent unchanged"
        )
    return PathEdit("unset", path)


# --- the op ------------------------------------------------------------------------------------


@dataclass
class UpsertStats:
    read: int = 0
    without_email: int = 0
    changed: int = 0
    unchanged: int = 0
    written: int = 0
    patched_users: int = 0
    # Filled in once the input has ended.
    patches: int = 0
    patch_emails: int = 0
    matched_patches: int = 0
    unmatched_patches: int = 0
    not_database: int = 0
    # Written users whose input had no such key, so the edits started from {}; and the
    # metadata keys that at least one input user had (if none had one, the export lacks it).
    assumed_empty: Counter[str] = field(default_factory=Counter)
    metadata_seen: set[str] = field(default_factory=set)
    # Users left out because their record cannot be imported safely, by reason.
    left_out: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def leave_out(self, reason: str, email: str, detail: str) -> None:
        self.left_out[reason] += 1
        if len(self.examples) < LISTED_PROBLEMS:
            self.examples.append(f"input record {self.read} ({email}): {detail}")


# Reasons a changed user is left out.
NO_EMAIL_VERIFIED = "no email_verified"
DUPLICATE = "duplicate email"
REFUSED = "refused by the import schema"


def current_metadata(record: Record, name: str) -> dict[str, Any]:
    """The user's metadata object; missing or null is a user who has none: {}."""
    value = record.get(name)
    if value is None:
        return {}
    if type(value) is not dict:
        raise RecordError(f"{name} is not an object: {codec.dumps(value).decode()[:60]}")
    return value


def missing_fields_error(record: Record) -> RecordError:
    """The first user has no usable email_verified: most likely the export lacks the field."""
    if "email_verified" in record:
        value = codec.dumps(record["email_verified"]).decode()[:60]
        what = f"email_verified is {value}, not true or false"
    else:
        what = "the first user has no email_verified"
    others = [name for name in REQUIRED_INPUT if name not in record and name != "email_verified"]
    if others:
        what += f" (nor {', '.join(others)})"
    return RecordError(
        f"{what}. The import resets email_verified to false unless it is sent, so upsert-patch "
        f"needs the current value: export the users with {', '.join(REQUIRED_INPUT)}. (If only "
        "some users lack it, give it to them in the patch, or leave them out with "
        "ndpipe filter 'email_verified != `null`'.)"
    )


def upsert_patch(
    records: Iterable[Record],
    *,
    stats: UpsertStats,
    patches: PatchIndex | None = None,
    edits: Sequence[PathEdit] = (),
    where: Expression | None = None,
    merge: str = "deep",
    keep_all: bool = False,
    on_unmatched: Callable[[Record], None] | None = None,
    policy: ErrorPolicy | None = None,
) -> Records:
    """Yield an import-ready record for each user the edits change (every user with keep_all).

    Patches apply first, in file order, then the edits, if `where` (evaluated on the user as
    read) is true. A changed user that cannot be imported safely is left out and counted in
    `stats` (no email_verified, a second user with an email already patched, a record the
    import schema refuses), except that a first user without email_verified stops the run:
    the export most likely lacks the field. After the last user, the patches that matched no
    user are counted and passed to `on_unmatched`, in file order. A user on which `where`
    fails is a RecordError, which `policy` may skip.
    """
    merge_values = MERGES[merge]
    loads = codec.loads
    first = True
    for record in records:
        stats.read += 1
        email = record.get("email")
        if type(email) is not str or not email:
            stats.without_email += 1
            continue
        if len(stats.metadata_seen) < len(METADATA):
            stats.metadata_seen.update(name for name in METADATA if name in record)
        verified = record.get("email_verified")
        state: dict[str, Any] = {}
        duplicate = False
        if patches is not None:
            try:
                found = patches.match(email_key(email))
            except AlreadyMatched:
                found = ()
                duplicate = True
            if found:
                stats.patched_users += 1
            for _, body in found:
                for name, value in loads(body).items():
                    if name == "email":
                        continue
                    if name in METADATA:
                        base = state[name] if name in state else current_metadata(record, name)
                        state[name] = {} if value is None else merge_values(base, value)
                    else:
                        state[name] = value
        if edits:
            try:
                selected = where is None or truthy(where.search(record))
            except EvaluationError as error:
                assert where is not None
                if policy is None:
                    raise where.failed(error) from None
                policy.bad_record(where.failed(error))
                continue
            if selected:
                for edit in edits:
                    edit.apply(state, record)

        verified = state.get("email_verified", verified)
        if first:
            first = False
            if type(verified) is not bool:
                raise missing_fields_error(record)
        changed = []
        for name, value in state.items():
            if name in METADATA:
                before: Any = current_metadata(record, name)
            else:
                before = record.get(name)
            if not same_json(value, before):
                changed.append(name)
        if duplicate:
            stats.leave_out(
                DUPLICATE,
                email,
                "an earlier user has this email too and took its patches (the same email in "
                "two connections?)",
            )
            continue
        if changed:
            stats.changed += 1
        else:
            stats.unchanged += 1
            if not keep_all:
                continue
        if type(verified) is not bool:
            stats.leave_out(
                NO_EMAIL_VERIFIED,
                email,
                "no email_verified, which the import would reset to false: set it in a patch",
            )
            continue

        out: Record = {"email": email, "email_verified": verified}
        for name in UPSERTABLE_ORDER[1:]:
            if name in changed:
                out[name] = state[name]
            elif keep_all and name in METADATA and (name in state or name in record):
                out[name] = state[name] if name in state else current_metadata(record, name)
        problems = check_user(out)
        if problems:
            stats.leave_out(REFUSED, email, "; ".join(str(problem) for problem in problems))
            continue
        for name in METADATA:
            if name in out and name not in record:
                stats.assumed_empty[name] += 1
        user_id = record.get("user_id")
        if type(user_id) is str and not user_id.startswith(DATABASE_PREFIX):
            stats.not_database += 1
        stats.written += 1
        yield out

    if patches is not None:
        for _, body in patches.unmatched():
            stats.unmatched_patches += 1
            if on_unmatched is not None:
                on_unmatched(loads(body))
        stats.patches = patches.patches
        stats.patch_emails = patches.emails()
        stats.matched_patches = patches.matched_patches


def upsert_patch_file(
    records: Iterable[Record],
    *,
    patch_file: str | None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    **settings: Any,
) -> Records:
    """`upsert_patch` with the patches of `patch_file`, read and checked before the first user
    is (the index is closed at the end, on errors too). `settings` are upsert_patch's."""
    index = load_patches(patch_file, memory_budget=memory_budget) if patch_file else None
    try:
        yield from upsert_patch(records, patches=index, **settings)
    finally:
        if index is not None:
            index.close()
