"""escape-csv: protect string values against CSV (formula) injection, or undo Auth0's escaping.

The escaping is a leading `'`, which spreadsheets take as "text, do not evaluate" and hide.

- `formula` (the default; OWASP and ASVS 1.2.10): a string gets the `'` when a spreadsheet could
  run it as a formula (`ndpipe.csvio.formula_risk`):
  - it starts with a tab, a CR or a NUL; or
  - its first visible character is `=`, `+`, `-` or `@`. Leading white space, control
    characters and invisible format characters (a BOM U+FEFF, a zero-width space U+200B, joiners,
    direction marks) are looked past, because spreadsheets strip some of them first;
  - except when, from that sign on, the string is entirely a number: an optional sign, digits
    with an optional decimal point, an optional exponent. `-12.5` and an E.164 phone number
    (`+14155550100`) are left alone: a spreadsheet reads them as numbers, no formula can hide in
    them, and a CRM (Salesforce, Marketo) would store a `'` as part of the value.
  So `=1`, `-2+3`, `+1+cmd|' /C calc'!A0`, `+1-555-0100` (a spreadsheet computes it),
  `@SUM(A1)`, ` =1` and `\\u200b=1` get the `'`; `+14155550100`, `-12.5`, `jane` and `a=b` do not.
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
Keys are never changed: `csv` builds the header from them and protects it itself, by the formula
rule.

How this cooperates with `csv`: `csv` quotes any cell that starts with `'` (as well as cells
holding the delimiter, a double quote, CR or LF), so `escape-csv --style auth0 | csv` writes
Auth0's exact cells: `a"b@x.com` becomes `"'a""b@x.com"`, while `true`, `19` and
`2017-11-02T23:34:03.803Z` stay bare.

Objects are walked with an explicit stack, not recursion, so records nested as deep as the
reader allows are fine.

In a chain `escape-csv then csv` (default style), the pipeline leaves the escaping to csv
(`Stage.absorbs`), which applies this rule itself, column-wise on batches of cells, with the
same result: one scan of a column's joined cells finds the few that may need the `'`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ndpipe.csvio import PREFIX, SAFE_FIRST, formula_risk, is_iso_datetime
from ndpipe.io import Record, Records

STYLES = ("formula", "auth0", "none")


def escape_formula(text: str) -> str:
    """The formula rule: prefix `'` only when a spreadsheet could run the text as a formula."""
    return PREFIX + text if formula_risk(text) else text


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
    pending = [record]
    while pending:
        current = pending.pop()
        for key, value in current.items():
            kind = type(value)
            if kind is str:
                current[key] = change(value)
            elif kind is dict:
                pending.append(value)


def _apply_formula(record: dict[str, Any]) -> None:
    """_apply(record, escape_formula), with the common case inlined: the default style runs on
    every cell of a CSV, and most strings start with a character that settles it."""
    safe = SAFE_FIRST
    pending = [record]
    while pending:
        current = pending.pop()
        for key, value in current.items():
            kind = type(value)
            if kind is str:
                if value[:1] not in safe and formula_risk(value):
                    current[key] = PREFIX + value
            elif kind is dict:
                pending.append(value)


def escape_csv(records: Iterable[Record], *, style: str = "formula", undo: bool = False) -> Records:
    """Escape (or, with `undo`, unescape) the string values of each record for CSV output."""
    if undo:
        change = unescape
    elif style == "none":
        yield from records
        return
    elif style == "formula":
        for record in records:
            _apply_formula(record)
            yield record
        return
    elif style == "auth0":
        change = escape_auth0
    else:
        raise ValueError(f"unknown escape style {style!r}")
    for record in records:
        _apply(record, change)
        yield record
