"""select: build new records from named JMESPath expressions.

A field is `EXPR` or `NAME=EXPR`. `NAME=EXPR` gives the flat key NAME. A bare path of plain
identifiers (`user_metadata.name`) keeps its nesting: `{"user_metadata": {"name": ...}}`; any
other bare expression is keyed by its own text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jmespath
import orjson

from ndpipe.errors import UsageError
from ndpipe.expr import EvaluationError, Expression, compile_expression
from ndpipe.io import ErrorPolicy, Record, Records, skipping

MISSING_MODES = ("null", "omit", "empty")

# The User Import/Export extension's "Add Default Fields" (AUTH0.md section 3), in its order.
AUTH0_DEFAULT_FIELDS = [
    {"name": "user_id", "export_as": "Id"},
    {"name": "given_name", "export_as": "Given Name"},
    {"name": "family_name", "export_as": "Family Name"},
    {"name": "nickname", "export_as": "Nickname"},
    {"name": "name", "export_as": "Name"},
    {"name": "email", "export_as": "Email"},
    {"name": "email_verified", "export_as": "Email Verified"},
    {"name": "picture", "export_as": "Picture"},
    {"name": "identities[0].connection", "export_as": "Connection"},
    {"name": "created_at", "export_as": "Created At"},
    {"name": "updated_at", "export_as": "Updated At"},
]
PRESETS = {"auth0-default": AUTH0_DEFAULT_FIELDS}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A name never set is reported with the likely intended path, looked up in a sample of the
# input's key paths (top-level keys and one level below) from its first records.
SAMPLED_RECORDS = 1000
SAMPLED_PATHS = 5000
_AUTH0_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


@dataclass(frozen=True)
class Field:
    """One output field: where it goes (a key path) and what computes it."""

    key: tuple[str, ...]
    expression: Expression

    @property
    def label(self) -> str:
        return ".".join(self.key)

    @property
    def path(self) -> str | None:
        """The dotted path the expression reads, when it is a plain one."""
        keys = field_path(self.expression.text)
        return ".".join(keys) if keys is not None else None


class Unset:
    """Names (select fields, csv columns, sort and dedupe keys) not yet seen with a value.

    `pending` maps each name to the plain dotted path it reads, or None when it is another
    expression. An op drops a name from `pending` once a record gives it a non-null value, and
    stops checking when none is left, so a run in which every name is set soon pays nothing.
    `records` counts the records read while something was pending: all of them, when a name
    stays unset to the end.
    """

    def __init__(self, names: dict[str, str | None]) -> None:
        self.pending = dict(names)
        self.records = 0
        self.paths: dict[str, None] = {}  # an ordered set

    def saw(self, record: Any) -> None:
        """Count a record and, among the first ones, note its key paths that hold a value."""
        self.records += 1
        if self.records > SAMPLED_RECORDS or type(record) is not dict:
            return
        paths = self.paths
        for key, value in record.items():
            if len(paths) >= SAMPLED_PATHS:
                return
            if value is None:
                continue
            paths[key] = None
            if type(value) is dict:
                for inner, item in value.items():
                    if item is not None:
                        paths[f"{key}.{inner}"] = None

    def sampling(self) -> bool:
        """Whether `saw` may still note the key paths of a record it is given."""
        return bool(self.pending) and self.records < SAMPLED_RECORDS

    def set(self, name: str) -> None:
        self.pending.pop(name, None)

    def messages(self, what: str) -> list[str]:
        """One line per name that no record set, with the likely intended path if one is seen."""
        if not self.records:
            return []
        every = "the record" if self.records == 1 else f"all {self.records} records"
        lines = []
        for name, path in self.pending.items():
            reads = f" ({path})" if path is not None and path != name else ""
            line = f"{what} {name!r}{reads} is missing or null in {every}"
            intended = suggest(path, self.paths) if path is not None else None
            if intended is not None:
                line += f"; did you mean {intended!r}?"
            lines.append(line)
        return lines


def suggest(path: str, seen: Iterable[str]) -> str | None:
    """The seen key path most likely meant by `path`: another case, a `user.` prefix added or
    left out, the same last name elsewhere (`name` for `user_metadata.name`), or a near spelling.
    """
    paths = [candidate for candidate in seen if candidate != path]
    if not paths:
        return None
    lowered = path.lower()
    for candidate in paths:
        if candidate.lower() == lowered:
            return candidate
    for variant in (lowered.removeprefix("user."), "user." + lowered):
        for candidate in paths:
            if candidate.lower() == variant:
                return candidate
    last = lowered.rsplit(".", 1)[-1]
    same_last = [c for c in paths if c.lower().rsplit(".", 1)[-1] == last]
    if same_last:
        return min(same_last, key=len)
    close = difflib.get_close_matches(path, paths, n=1, cutoff=0.8)
    return close[0] if close else None


def watching(
    records: Iterable[Record], expressions: Sequence[tuple[str, Expression]], unset: Unset
) -> Records:
    """Pass the records through, noting in `unset` which named expressions give a value.

    For ops that keep their expressions' values to themselves (sort, dedupe). Once every name has
    a value, the rest of the stream goes by untouched. A failing expression counts as no value:
    the op itself reports the failure.
    """
    stream = iter(records)
    watched = [(name, expression) for name, expression in expressions if name in unset.pending]
    if watched:
        for record in stream:
            unset.saw(record)
            for name, expression in watched:
                try:
                    value = expression.search(record)
                except EvaluationError:
                    continue
                if value is not None:
                    unset.set(name)
            watched = [pair for pair in watched if pair[0] in unset.pending]
            yield record
            if not watched:
                break
    yield from stream


def key_names(keys: Sequence[Expression]) -> tuple[list[tuple[str, Expression]], Unset]:
    """Sort and dedupe keys named by their text, and an Unset that watches them."""
    named = [(key.text, key) for key in keys]
    paths = {}
    for text, key in named:
        path = field_path(key.text)
        paths[text] = ".".join(path) if path is not None else None
    return named, Unset(paths)


def split_name(text: str) -> tuple[str | None, str]:
    """Split `NAME=EXPR` at the first '=' that is not part of '==', '!=', '<=' or '>='."""
    for index, char in enumerate(text):
        if char != "=":
            continue
        before = text[index - 1] if index else ""
        after = text[index + 1] if index + 1 < len(text) else ""
        if before in ("=", "!", "<", ">") or after == "=":
            continue
        return text[:index].strip(), text[index + 1 :].strip()
    return None, text.strip()


def field_path(text: str) -> tuple[str, ...] | None:
    """The keys of a bare path of identifiers (`a.b.c`), or None for any other expression."""
    try:
        node = jmespath.compile(text).parsed
    except jmespath.exceptions.JMESPathError:
        return None
    keys: list[str] = []

    def walk(node: dict[str, Any]) -> bool:
        if node["type"] == "field":
            keys.append(node["value"])
            return True
        if node["type"] == "subexpression":
            return all(walk(child) for child in node["children"])
        return False

    return tuple(keys) if walk(dict(node)) else None


def parse_field(text: str) -> Field:
    """Parse one FIELD argument; raises UsageError (before any input is read)."""
    name, expression_text = split_name(text)
    if name is not None:
        if not name:
            raise UsageError(f"field {text!r} has an empty name before '='")
        try:
            return Field((name,), compile_expression(expression_text, "expression"))
        except UsageError:
            # `a[?b=='x=y']`: the '=' was inside the expression; use the whole text if it compiles.
            try:
                whole = compile_expression(text, "expression")
            except UsageError:
                raise UsageError(
                    f"bad field {text!r}: "
                    + str(_compile_error(expression_text)).removeprefix("bad ")
                ) from None
            return Field(field_path(text) or (text,), whole)
    expression = compile_expression(expression_text, "expression")
    return Field(field_path(expression_text) or (expression_text,), expression)


def _compile_error(text: str) -> UsageError:
    try:
        compile_expression(text)
    except UsageError as error:
        return error
    return UsageError(f"bad expression {text!r}")


def auth0_path_to_expression(name: str) -> str:
    """Auth0 field syntax (`identities[0].connection`) as JMESPath, quoting odd identifiers."""
    parts = []
    for segment in name.split("."):
        match = _AUTH0_SEGMENT.fullmatch(segment)
        if not match:
            raise UsageError(f"bad Auth0 field name {name!r}")
        identifier, indexes = match.groups()
        if not _IDENTIFIER.fullmatch(identifier):
            identifier = orjson.dumps(identifier).decode()
        parts.append(identifier + indexes)
    return ".".join(parts)


def auth0_fields(entries: Any, source: str) -> list[Field]:
    """Fields from Auth0's export-job list: `[{"name": ..., "export_as": ...}, ...]`."""
    if not isinstance(entries, list):
        raise UsageError(f"{source}: expected a JSON array of {{name, export_as}} objects")
    fields = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise UsageError(f"{source}: entry {number} needs a string 'name'")
        expression_text = auth0_path_to_expression(entry["name"])
        expression = compile_expression(expression_text)
        export_as = entry.get("export_as")
        if export_as is not None and not isinstance(export_as, str):
            raise UsageError(f"{source}: entry {number}: 'export_as' must be a string")
        key = (export_as,) if export_as else field_path(expression_text) or (entry["name"],)
        fields.append(Field(key, expression))
    return fields


def load_fields_file(path: str) -> Any:
    """The JSON of an Auth0 field-list file, unchecked (auth0_fields checks it)."""
    try:
        with open(path, "rb") as handle:
            return orjson.loads(handle.read())
    except OSError as error:
        raise UsageError(f"cannot read fields file {path}: {error.strerror}") from None
    except orjson.JSONDecodeError as error:
        raise UsageError(f"fields file {path} is not valid JSON: {error}") from None


def read_fields_file(path: str) -> list[Field]:
    return auth0_fields(load_fields_file(path), path)


def check_fields(fields: Sequence[Field]) -> None:
    """Refuse keys that collide (`email email`, or `user_metadata` with `user_metadata.name`)."""
    if not fields:
        raise UsageError("no fields given (name some, or use --fields-file or --preset)")
    seen: dict[tuple[str, ...], Field] = {}
    for field in fields:
        for other_key, other in seen.items():
            shorter = min(len(other_key), len(field.key))
            if other_key[:shorter] == field.key[:shorter]:
                raise UsageError(
                    f"fields {other.expression.text!r} and {field.expression.text!r} "
                    f"both write {'.'.join(field.key[:shorter])!r}; give one a NAME="
                )
        seen[field.key] = field


def _place(out: Record, key: tuple[str, ...], value: Any) -> None:
    target = out
    for part in key[:-1]:
        target = target.setdefault(part, {})
    target[key[-1]] = value


def select(
    records: Iterable[Record],
    *,
    fields: Sequence[Field],
    missing: str = "null",
    policy: ErrorPolicy | None = None,
    unset: Unset | None = None,
) -> Records:
    """Yield one new record per input record, holding only the given fields, in their order.

    A record on which a field's expression fails is a RecordError, which `policy` may skip.
    `unset`, keyed by the fields' labels, learns which fields got a non-null value.
    """
    run = partial(_select, fields=fields, missing=missing, unset=unset)
    return skipping(records, policy, run)


def unset_fields(fields: Sequence[Field]) -> Unset:
    return Unset({field.label: field.path for field in fields})


def _build(fields: Sequence[Field], values: list[Any], replacement: Any, omit: bool) -> Record:
    out: Record = {}
    for field, value in zip(fields, values, strict=True):
        if value is None:
            if omit:
                continue
            value = replacement
        if len(field.key) == 1:
            out[field.key[0]] = value
        else:
            _place(out, field.key, value)
    return out


def _select(
    records: Iterator[Record], *, fields: Sequence[Field], missing: str, unset: Unset | None
) -> Records:
    pairs = [(field.key[0], field.expression.search) for field in fields]
    flat = all(len(field.key) == 1 for field in fields)
    try:
        if unset is not None and unset.pending and flat and missing == "null":
            # Until every field has had a value: build, then look at the unset fields' values.
            # The loops below are the fast ones, for the rest of the stream.
            plain = all(field.expression.field for field in fields)
            names = [(field.key[0], field.expression.field or "") for field in fields]
            watched_keys = [field.key[0] for field in fields if field.label in unset.pending]
            for record in records:
                if plain:
                    get = record.get
                    out: Record = {key: get(name) for key, name in names}
                else:
                    out = {key: search(record) for key, search in pairs}
                unset.saw(record)
                for key in watched_keys:
                    if out[key] is not None:
                        for name in watched_keys:
                            if out[name] is not None:
                                unset.set(name)
                        watched_keys = [name for name in watched_keys if name in unset.pending]
                        break
                yield out
                if not watched_keys:
                    break
        elif unset is not None and unset.pending:
            # The same for nested keys and the other --missing modes: evaluate, note, build.
            replacement = "" if missing == "empty" else None
            searches = [field.expression.search for field in fields]
            watched = [(i, f.label) for i, f in enumerate(fields) if f.label in unset.pending]
            for record in records:
                values = [search(record) for search in searches]
                unset.saw(record)
                for index, label in watched:
                    if values[index] is not None:
                        unset.set(label)
                watched = [pair for pair in watched if pair[1] in unset.pending]
                yield _build(fields, values, replacement, missing == "omit")
                if not watched:
                    break
        if flat and missing == "null":
            names = [(field.key[0], field.expression.field or "") for field in fields]
            if all(field.expression.field for field in fields):
                # Plain top-level fields: a dict lookup each, without calling the expression.
                for record in records:
                    get = record.get
                    yield {key: get(name) for key, name in names}
                return
            for record in records:
                yield {key: search(record) for key, search in pairs}
            return
        replacement = "" if missing == "empty" else None
        omit = missing == "omit"
        searches = [field.expression.search for field in fields]
        for record in records:
            yield _build(fields, [search(record) for search in searches], replacement, omit)
    except EvaluationError:
        # Find which field failed on this record (rare path, so re-evaluating is fine).
        for field in fields:
            try:
                field.expression.search(record)
            except EvaluationError as error:
                raise field.expression.failed(error) from None
        raise
