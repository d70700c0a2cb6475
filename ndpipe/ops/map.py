"""map: edit records in place, keeping every other field.

Edits run in the order given: `set` (PATH=EXPR, creating objects as needed), `del` (PATH) and
`rename` (OLD=NEW). PATH is dotted: `user_metadata.plan`. An expression sees the record as the
edits before it left it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ndpipe.errors import RecordError, UsageError
from ndpipe.expr import EvaluationError, Expression, compile_expression
from ndpipe.io import ErrorPolicy, Record, Records
from ndpipe.ops.select import split_name

Path = tuple[str, ...]


@dataclass(frozen=True)
class Edit:
    kind: str  # "set", "del" or "rename"
    path: Path
    expression: Expression | None = None
    target: Path = ()


def parse_path(text: str) -> Path:
    parts = tuple(text.strip().split("."))
    if not text.strip() or any(not part for part in parts):
        raise UsageError(f"bad path {text!r}: use dotted names such as user_metadata.plan")
    return parts


def parse_set(text: str) -> Edit:
    path, expression = split_name(text)
    if path is None:
        raise UsageError(f"--set {text!r}: expected PATH=EXPR")
    return Edit("set", parse_path(path), compile_expression(expression, "--set expression"))


def parse_del(text: str) -> Edit:
    return Edit("del", parse_path(text))


def parse_rename(text: str) -> Edit:
    old, new = split_name(text)
    if old is None:
        raise UsageError(f"--rename {text!r}: expected OLD=NEW")
    return Edit("rename", parse_path(old), target=parse_path(new))


def _parent(record: Record, path: Path, create: bool) -> dict[str, Any] | None:
    """The object that holds path[-1], created along the way if asked; None if absent."""
    target: Any = record
    for depth, part in enumerate(path[:-1]):
        child = target.get(part)
        if child is None:
            if not create:
                return None
            child = target[part] = {}
        elif type(child) is not dict:
            if not create:
                return None
            where = ".".join(path[: depth + 1])
            raise RecordError(f"cannot set {'.'.join(path)}: {where} is not an object")
        target = child
    return target  # type: ignore[no-any-return]


def apply(record: Record, edit: Edit) -> None:
    if edit.kind == "set":
        assert edit.expression is not None
        value = edit.expression.search(record)
        parent = _parent(record, edit.path, create=True)
        assert parent is not None
        parent[edit.path[-1]] = value
    elif edit.kind == "del":
        parent = _parent(record, edit.path, create=False)
        if parent is not None:
            parent.pop(edit.path[-1], None)
    else:
        parent = _parent(record, edit.path, create=False)
        if parent is not None and edit.path[-1] in parent:
            value = parent.pop(edit.path[-1])
            new_parent = _parent(record, edit.target, create=True)
            assert new_parent is not None
            new_parent[edit.target[-1]] = value


def map(
    records: Iterable[Record], *, edits: Sequence[Edit], policy: ErrorPolicy | None = None
) -> Records:
    """Apply the edits to each record, in order, and yield it.

    A record an edit fails on is a RecordError, which `policy` may skip (the record is left out
    whole, not half edited).
    """
    fail = policy.bad_record if policy is not None else None
    for record in records:
        try:
            for edit in edits:
                try:
                    apply(record, edit)
                except EvaluationError as error:
                    assert edit.expression is not None
                    raise edit.expression.failed(error) from None
        except RecordError as error:
            if fail is None:
                raise
            fail(error)
            continue
        yield record
