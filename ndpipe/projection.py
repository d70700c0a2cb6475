"""Projection pushdown: decode only the top-level fields a pipeline reads.

When the pipeline is built, `plan` walks its stages from the reader on and gathers what each one
reads (`Stage.reads`: field names and compiled expressions), up to the first stage that builds
new records from what it read (select) or to the end. Any stage that needs whole records, an
expression over the whole record (`@`, `keys(@)`, `*`, ...), a stage that could hand a record on
to anything but the writer's raw-line copy, or a sink that writes records (csv, to-json-array)
stops the plan: the reader then decodes whole records, as it always did. So does CSV input, and
so does every pipeline unless NDPIPE_PUSHDOWN=1 (see SWITCH); NDJSON and JSON arrays read from
stdin follow the plan.

A projected record is a dict holding only those fields that are present in its line (a null
stays null, a missing field stays missing). Its order of keys may differ from the line's, which
no stage that reads only named fields can see; the output of an unchanged record is its input
line, copied.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import jmespath

from ndpipe.expr import USER, Expression, strip_user_prefix


class Stage(Protocol):
    """What the plan reads of a pipeline stage (ndpipe.pipeline.Stage, which builds on this)."""

    reads: list[Any] | None
    builds: bool
    preserves: bool

    @property
    def source(self) -> Any: ...

    @property
    def sink(self) -> Any: ...

    @property
    def transform(self) -> Any: ...


# NDPIPE_PUSHDOWN=1 turns the analysis on, NDPIPE_PUSHDOWN=0 off (for comparisons: tests and
# the bench). It is off by default: the scan that keeps projected reading exact (numbers beyond
# a double in unread fields must still be refused, see ndpipe.codec) costs as much as the
# decoding it saves (at 1M users, filter: 1.3 times today's CPU time with it, 0.6 without it).
SWITCH = "NDPIPE_PUSHDOWN"
DEFAULT = "0"

# Nodes whose children are all evaluated against the value the node itself sees.
_SAME_VALUE = frozenset(
    {
        "or_expression", "and_expression", "not_expression", "comparator", "multi_select_list",
        "multi_select_dict", "key_val_pair", "function_expression", "flatten",
    }
)  # fmt: skip
# Nodes whose first child sees the node's value and whose other children see what it gives
# (its elements, its result): only the first one can read the record's fields.
_FIRST_CHILD = frozenset(
    {"subexpression", "index_expression", "projection", "value_projection", "filter_projection",
     "pipe"}
)  # fmt: skip


class Whole(Exception):
    """The expression reads the record as a whole (or in a way this analysis does not know)."""


def _fields(node: Any, found: set[str]) -> None:
    """Add to `found` the top-level fields `node` reads when evaluated on the record."""
    if type(node) is not dict:
        raise Whole
    kind = node.get("type")
    children = node.get("children", [])
    if kind == "field":
        found.add(node["value"])
    elif kind == "literal":
        pass
    elif kind == "expref":
        raise Whole  # an &expression evaluated on the record itself (`max_by(@, &x)` etc.)
    elif kind in _SAME_VALUE:
        for child in children:
            if type(child) is dict and child.get("type") == "expref":
                continue  # applied to the elements of another argument, not to the record
            _fields(child, found)
    elif kind in _FIRST_CHILD and children:
        _fields(children[0], found)
    else:
        # `@`, identity (`[0]`, `*` on the record), slices of the record, and anything new.
        raise Whole


def expression_fields(expression: Expression) -> frozenset[str] | None:
    """The top-level fields `expression` reads, or None when it needs the whole record."""
    try:
        tree: dict[str, Any] = dict(jmespath.compile(expression.text).parsed)
    except jmespath.exceptions.JMESPathError:
        return None
    found: set[str] = set()
    try:
        _fields(tree, found)
        stripped = strip_user_prefix(tree)
        if stripped != tree:
            # `user.email` reads `user` (to tell whether the record has one) and `email`.
            found.add(USER)
            _fields(stripped, found)
    except Whole:
        return None
    return frozenset(found)


class Projection:
    """The top-level fields the reader decodes, and when it must still decode whole records.

    `samplers` are the name watchers (ndpipe.ops.select.Unset) of the stages in the plan: while
    one of them still samples key paths from the records it sees (for its `did you mean`
    hints), the reader gives whole records, so the hints are those of whole records.
    """

    def __init__(self, fields: Iterable[str], samplers: Sequence[Any] = ()) -> None:
        self.fields = tuple(sorted(set(fields)))
        self.samplers = list(samplers)

    def __repr__(self) -> str:
        return f"Projection({self.fields!r})"

    def whole_now(self) -> bool:
        """Whether records must be whole for now (sampling only ends: once False, always)."""
        if self.samplers:
            self.samplers = [sampler for sampler in self.samplers if sampler.sampling()]
        return bool(self.samplers)


def _decodable(name: str) -> bool:
    """Whether msgspec can decode a field of this name into a struct (it refuses names with a
    backslash, a quote or a control character)."""
    return not any(char in '\\"' or char < " " for char in name)


def enabled() -> bool:
    return os.environ.get(SWITCH, DEFAULT).strip() not in ("0", "")


def _reads(stage: Stage, fields: set[str], samplers: list[Any]) -> bool:
    """Add what `stage` reads to `fields` and `samplers`; False when it needs whole records."""
    if stage.reads is None:
        return False
    for item in stage.reads:
        if isinstance(item, str):
            read: frozenset[str] | None = frozenset([item])
        elif isinstance(item, Expression):
            read = expression_fields(item)
        elif callable(getattr(item, "sampling", None)):
            samplers.append(item)
            continue
        else:
            return False
        if read is None or not all(_decodable(name) for name in read):
            return False
        fields.update(read)
    return True


def plan(stages: Sequence[Stage]) -> Projection | None:
    """The projection for a pipeline whose records come from the NDJSON reader, or None (whole
    records) when the analysis is off or unsure."""
    if not enabled() or not stages or stages[0].source is not None:
        return None
    fields: set[str] = set()
    samplers: list[Any] = []
    untouched = True
    for stage in stages:
        if stage.sink is not None:
            return None  # a sink writes the records it gets (csv, to-json-array): whole ones
        if stage.transform is None:
            continue
        if not _reads(stage, fields, samplers):
            return None
        if stage.builds:
            # The stages after it read the records it builds, not the reader's; those before
            # it only had to hand records on (in any way: they read the same fields).
            return Projection(fields, samplers)
        untouched = untouched and stage.preserves
    # No stage builds records: they reach the writer, which must copy their input lines, as it
    # does only when every stage passes records on untouched (see pipeline.run).
    return Projection(fields, samplers) if untouched else None
