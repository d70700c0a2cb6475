"""import-clean: turn exported users into records Auth0's bulk import accepts.

Each record is cleaned (dotted `app_metadata.*`/`user_metadata.*` keys nested, extension
column names renamed back, export-only and unknown keys dropped, `auth0|` stripped from user_id,
email lower-cased, forbidden app_metadata keys, nulls (also inside metadata) and empty strings
dropped, boolean fields written as spreadsheets write them (TRUE, yes, 1...) made booleans,
email_verified written explicitly), then checked against the import schema
(ndpipe.services.auth0.schema). A record that still fails is handed to `on_reject` with its
original content and the reasons, and is not yielded: nothing disappears without a report.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ndpipe.io import Record, Records
from ndpipe.services.auth0.schema import (
    BOOLEAN_FIELDS,
    E164,
    EXTENSION_COLUMNS,
    FORBIDDEN_APP_METADATA_KEYS,
    SCHEMA_FIELDS,
    STRING_FIELDS,
    Problem,
    check_user,
)

EMAIL_VERIFIED_MODES = ("keep", "true", "false")
# The prefix Auth0 adds to the ids of database-connection users; the import adds it again.
DATABASE_PREFIX = "auth0|"
# Distinct dropped-key names are counted up to this many; the rest are counted together, so
# hostile input with random keys cannot grow the counters without bound.
COUNTED_KEY_NAMES = 200
OTHER_KEYS = "(other keys)"

_SCHEMA = frozenset(SCHEMA_FIELDS)
_OPTIONAL_STRINGS = STRING_FIELDS - {"email"}
_PHONE_SEPARATORS = re.compile(r"[\s\-.()/]")
# How spreadsheets and the people filling them write booleans (compared lower-cased, trimmed).
BOOLEAN_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
METADATA_FIELDS = ("app_metadata", "user_metadata")
COLLISION = "DOTTED_KEY_COLLISION"


@dataclass
class CleanStats:
    """Counts for the summary: records, what was fixed, what was dropped, why records failed."""

    read: int = 0
    passed: int = 0
    changed: int = 0
    rejected: int = 0
    dropped_keys: Counter[str] = field(default_factory=Counter)
    fixes: Counter[str] = field(default_factory=Counter)
    reject_codes: Counter[str] = field(default_factory=Counter)

    def drop(self, key: str) -> None:
        if key in self.dropped_keys or len(self.dropped_keys) < COUNTED_KEY_NAMES:
            self.dropped_keys[key] += 1
        else:
            self.dropped_keys[OTHER_KEYS] += 1


@dataclass(frozen=True)
class Rejected:
    """A record the import would refuse: its number in the input, as read, and why."""

    line: int
    record: Record
    problems: list[Problem]

    def as_record(self) -> Record:
        return {
            "line": self.line,
            "record": self.record,
            "errors": [problem.as_dict() for problem in self.problems],
        }


def _user_id(value: Any, out: Record, stats: CleanStats, drop_user_id: bool) -> None:
    if drop_user_id:
        stats.fixes["user_id dropped (--drop-user-id)"] += 1
        return
    if type(value) is int:
        value = str(value)
        stats.fixes["user_id number written as a string"] += 1
    if isinstance(value, str):
        if value.startswith(DATABASE_PREFIX):
            value = value[len(DATABASE_PREFIX) :]
            stats.fixes["user_id 'auth0|' prefix removed"] += 1
        elif "|" in value:
            # A social or enterprise id (google-oauth2|..., samlp|...): a database connection
            # cannot keep it, so the user is imported with a new id.
            stats.fixes["user_id of another connection dropped"] += 1
            return
        if value == "":
            stats.fixes["empty or null values dropped"] += 1
            return
    out["user_id"] = value


def nest_dotted_metadata(record: Record) -> tuple[Record, list[Problem]]:
    """`record` with its `app_metadata.a.b` style keys nested into the metadata objects.

    Such keys arrive from a CSV read with flat titles, or any NDJSON. A null value (an empty
    cell) is dropped. A key whose path runs into a value that is not an object, or that names an
    object already there, collides: nothing is guessed, and the reasons are returned instead
    (the record is then returned unchanged). Keys with an empty part stay as they are.
    """
    dotted = [
        key
        for key in record
        if key.partition(".")[0] in METADATA_FIELDS and all(key.split(".")) and "." in key
    ]
    if not dotted:
        return record, []
    out: Record = {key: value for key, value in record.items() if key not in dotted}
    copied: set[int] = set()
    problems: list[Problem] = []
    for key in dotted:
        value = record[key]
        if value is None:
            continue
        parts = key.split(".")
        target = out
        for depth, part in enumerate(parts[:-1]):
            inner = target.get(part)
            if inner is None:
                inner = target[part] = {}
                copied.add(id(inner))
            elif not isinstance(inner, dict):
                where = ".".join(parts[: depth + 1])
                problems.append(
                    Problem(
                        COLLISION,
                        key,
                        f"the key {key!r} needs {where} to be an object, but it holds {inner!r}",
                    )
                )
                break
            elif id(inner) not in copied:
                # Nest into a copy, so that the record as read is reported unchanged.
                inner = target[part] = dict(inner)
                copied.add(id(inner))
            target = inner
        else:
            last = parts[-1]
            if target.get(last) is not None:
                problems.append(
                    Problem(
                        COLLISION,
                        key,
                        f"the key {key!r} and the nested value {key} are both given "
                        f"({target[last]!r}); keep one",
                    )
                )
            else:
                target[last] = value
    return (record, problems) if problems else (out, [])


def _drop_nulls(value: dict[str, Any], stats: CleanStats) -> dict[str, Any]:
    """A copy of a metadata object without null members, at any depth; objects that only held
    nulls go too (an empty cell under user_metadata.address.city leaves no address)."""
    kept: dict[str, Any] = {}
    for key, inner in value.items():
        if inner is None:
            stats.fixes["empty or null values dropped"] += 1
            continue
        if isinstance(inner, dict) and inner:
            inner = _drop_nulls(inner, stats)
            if not inner:
                continue
        kept[key] = inner
    return kept


def clean_user(
    record: Record, *, email_verified: str, drop_user_id: bool, stats: CleanStats
) -> Record:
    """A new record holding what the import schema allows; `record` itself is not modified."""
    out: Record = {}
    for key, value in record.items():
        target = key
        if key in EXTENSION_COLUMNS:
            renamed = EXTENSION_COLUMNS[key]
            if renamed is None or record.get(renamed) is not None:
                # Export-only column, or the schema-named key is present too and wins.
                stats.drop(key)
                continue
            target = renamed
            stats.fixes[f"renamed {key!r} to {target}"] += 1
        elif key not in _SCHEMA:
            stats.drop(key)
            continue
        if value is None:
            stats.fixes["empty or null values dropped"] += 1
            continue
        if target == "user_id":
            _user_id(value, out, stats, drop_user_id)
            continue
        out[target] = value

    email = out.get("email")
    if isinstance(email, str):
        normal = email.strip().lower()
        if normal != email:
            out["email"] = normal
            stats.fixes["email lower-cased or trimmed"] += 1

    for name in BOOLEAN_FIELDS:
        value = out.get(name)
        if isinstance(value, str) and value.strip().lower() in BOOLEAN_TEXT:
            out[name] = BOOLEAN_TEXT[value.strip().lower()]
            stats.fixes[f"{name} text made a boolean"] += 1

    for name in METADATA_FIELDS:
        value = out.get(name)
        if isinstance(value, dict) and value:
            out[name] = _drop_nulls(value, stats)
            if not out[name]:
                del out[name]

    for name in _OPTIONAL_STRINGS:
        if out.get(name) == "":
            del out[name]
            stats.fixes["empty or null values dropped"] += 1
    factors = out.get("mfa_factors")
    if isinstance(factors, list):
        # Auth0's schema lets an empty factor {} through, but it enrolls nothing.
        enrolled = [factor for factor in factors if factor != {}]
        if not enrolled:
            del out["mfa_factors"]
            stats.fixes["empty or null values dropped"] += 1
        elif len(enrolled) < len(factors):
            out["mfa_factors"] = enrolled
            stats.fixes["empty mfa_factors entries dropped"] += 1

    phone = out.get("phone_number")
    if isinstance(phone, str) and not E164.fullmatch(phone):
        compact = _PHONE_SEPARATORS.sub("", phone)
        if E164.fullmatch(compact):
            out["phone_number"] = compact
            stats.fixes["phone_number spaces and dashes removed"] += 1

    metadata = out.get("app_metadata")
    if isinstance(metadata, dict) and not FORBIDDEN_APP_METADATA_KEYS.isdisjoint(metadata):
        kept = {}
        for key, value in metadata.items():
            if key in FORBIDDEN_APP_METADATA_KEYS:
                stats.drop(f"app_metadata.{key}")
            else:
                kept[key] = value
        out["app_metadata"] = kept

    if email_verified != "keep":
        wanted = email_verified == "true"
        if out.get("email_verified") is not wanted:
            out["email_verified"] = wanted
            stats.fixes[f"email_verified set to {email_verified} (--email-verified)"] += 1
    elif "email_verified" not in out:
        # The import would reset it to false anyway; writing it makes the file say so.
        out["email_verified"] = False
        stats.fixes["email_verified missing, set to false"] += 1
    return out


def import_clean(
    records: Iterable[Record],
    *,
    stats: CleanStats,
    on_reject: Callable[[Rejected], None],
    email_verified: str = "keep",
    drop_user_id: bool = False,
    check_only: bool = False,
) -> Records:
    """Yield the cleaned records that pass the import schema; report the others to `on_reject`.

    With `check_only`, records are checked as they are and all passed through unchanged.
    Records are numbered from 1 in the order they arrive (`Rejected.line`).
    """
    for number, record in enumerate(records, 1):
        stats.read += 1
        if check_only:
            problems = check_user(record)
            if problems:
                stats.rejected += 1
                stats.reject_codes.update({problem.code for problem in problems})
                on_reject(Rejected(number, record, problems))
            else:
                stats.passed += 1
            yield record
            continue
        nested, problems = nest_dotted_metadata(record)
        if problems:
            stats.rejected += 1
            stats.reject_codes.update({problem.code for problem in problems})
            on_reject(Rejected(number, record, problems))
            continue
        cleaned = clean_user(
            nested, email_verified=email_verified, drop_user_id=drop_user_id, stats=stats
        )
        problems = check_user(cleaned)
        if problems:
            stats.rejected += 1
            stats.reject_codes.update({problem.code for problem in problems})
            on_reject(Rejected(number, record, problems))
            continue
        stats.passed += 1
        if cleaned != record:
            stats.changed += 1
        yield cleaned


def summary_lines(stats: CleanStats, *, check_only: bool, rejects_to: str | None) -> list[str]:
    """The stderr summary: counts first, then dropped keys and fixes, most frequent first."""
    where = f" (written to {rejects_to})" if rejects_to else ""
    codes = ", ".join(f"{code} {count}" for code, count in stats.reject_codes.most_common())
    reasons = f"; by code: {codes}" if codes else ""
    if check_only:
        return [
            f"{stats.read} checked, {stats.passed} valid, {stats.rejected} invalid{where}{reasons}"
        ]
    lines = [
        f"{stats.read} read, {stats.passed} passed ({stats.changed} changed), "
        f"{stats.rejected} rejected{where}{reasons}"
    ]
    if stats.dropped_keys:
        listed = ", ".join(f"{key} {count}" for key, count in stats.dropped_keys.most_common())
        lines.append(f"dropped keys: {listed}")
    if stats.fixes:
        listed = ", ".join(f"{fix} {count}" for fix, count in stats.fixes.most_common())
        lines.append(f"fixes: {listed}")
    return lines
