"""escape-csv: protect string values against CSV (formula) injection, or undo Auth0's escaping.

The escaping is a leading `'`, which spreadsheets take as "text, do not evaluate" and hide.

- `formula` (OWASP): only strings that start with `=`, `+`, `-`, `@`, tab or CR get the `'`.
- `auth0`: Auth0's CSV export rule (AUTH0.md 1.6): every string gets the `'`, except ISO 8601
  date-times (`2017-11-02T23:34:03.803Z`), which Auth0 writes bare. Numbers, booleans and null are
  not strings and stay as they are (`csv` writes null as an empty cell).
- `none`: records pass unchanged.
- `unescape`: exactly one leading `'` is removed from each string that has one. Never more: a
  value that really starts with `'` was exported as `''...`, and must keep one.

Strings inside nested objects are escaped too, because `csv` flattens objects into cells
(`user_metadata.name`). Arrays are left alone: `csv` writes an array as one JSON cell, which starts
with `[` and so can never be read as a formula, and escaping inside it would corrupt the JSON.
(An object that `csv` is told to write whole, as one JSON cell, does carry the escaped strings.)

How this cooperates with `csv`: `csv` quotes any cell that starts with `'` (as well as cells
holding the delimiter, a double quote, CR or LF), so `escape-csv --style auth0 | csv` writes
Auth0's exact cells: `a"b@x.com` becomes `"'a""b@x.com"`, while `true`, `19` and
`2017-11-02T23:34:03.803Z` stay bare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ndpipe.csvio import is_iso_datetime
from ndpipe.io import Record, Records

STYLES = ("formula", "auth0", "none")
FORMULA_STARTS = frozenset("=+-@\t\r")
PREFIX = "'"


def escape_formula(text: str) -> str:
    """OWASP: prefix `'` only when the text starts with a character a spreadsheet evaluates."""
    # text[:1] is "" for the empty string, which is not in the set.
    return PREFIX + text if text[:1] in FORMULA_STARTS else text


def escape_auth0(text: str) -> str:
    """Auth0's export rule: every string is prefixed, except ISO 8601 date-times."""
    # The slice rules out most strings (emails, names) before the regex runs.
    if text[10:11] == "T" and is_iso_datetime(text):
        return text
    return PREFIX + text


def unescape(text: str) -> str:
    """Remove exactly one leading `'` (never lstrip: `''x` was the value `'x`)."""
    return text[1:] if text[:1] == PREFIX else text


def _apply(record: dict[str, Any], change: Callable[[str], str]) -> None:
    """Change every string value of a record and of its nested objects, in place."""
    for key, value in record.items():
        kind = type(value)
        if kind is str:
            record[key] = change(value)
        elif kind is dict:
            _apply(value, change)


def _apply_formula(record: dict[str, Any]) -> None:
    """_apply(record, escape_formula), inlined: the default style runs on every cell of a CSV."""
    for key, value in record.items():
        kind = type(value)
        if kind is str:
            if value[:1] in FORMULA_STARTS:
                record[key] = PREFIX + value
        elif kind is dict:
            _apply_formula(value)


def escape_csv(records: Iterable[Record], *, style: str = "formula", undo: bool = False) -> Records:
    """Escape (or, with `undo`, unescape) the string values of each record for CSV output."""
    if undo:
        change = unescape
    elif style == "none":
        yield from records
        return
    elif style == "formula":
        change = escape_formula
    elif style == "auth0":
        change = escape_auth0
    else:
        raise ValueError(f"unknown escape style {style!r}")
    if change is escape_formula:
        for record in records:
            _apply_formula(record)
            yield record
        return
    for record in records:
        _apply(record, change)
        yield record
