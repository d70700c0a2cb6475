"""JMESPath expressions: compiled once, before any input is read; evaluated per record."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors

from ndpipe.errors import RecordError, UsageError
from ndpipe.jmespath_compiler import LiteralNumberError
from ndpipe.jmespath_compiler import _compile as compile_tree  # the `user.`-stripped AST
from ndpipe.jmespath_compiler import compile_expression as compile_to_closures

# What ops catch around evaluation: any runtime failure of an expression on one record.
# jmespath itself raises TypeError for `'a' < `1`` and ValueError for a slice step of 0.
# OverflowError is a safety net only: the compiled functions refuse numbers beyond the range of
# a double themselves (NumberRangeError, a JMESPathError), with a clearer message.
EvaluationError = (jmespath_errors.JMESPathError, TypeError, ValueError, OverflowError)

# A failure message quotes the offending value whole (jmespath's type errors do); a record's
# 10 MB string should not end up on stderr.
_LONGEST_MESSAGE = 500


# An unquoted JMESPath identifier: as an expression, it is the field of that name.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Expression:
    """A compiled JMESPath expression; `search(value)` evaluates it.

    `field` is the name when the expression is one plain field, which on an object is just
    `record.get(field)`: callers on a hot path use that and skip the call.
    """

    __slots__ = ("field", "search", "text")

    def __init__(self, text: str, search: Callable[[Any], Any]) -> None:
        self.text = text
        self.search = search
        self.field = text.strip() if IDENTIFIER.fullmatch(text.strip()) else None

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def failed(self, error: Exception) -> RecordError:
        """The per-record error to raise when evaluation fails on one record."""
        message = getattr(error, "msg", None) or str(error)
        if len(message) > _LONGEST_MESSAGE:
            message = message[:_LONGEST_MESSAGE] + "…"
        return RecordError(f"expression {self.text!r} failed: {message}")


def _caret(text: str, position: int | None) -> str:
    if position is None:
        return f"\n  {text}"
    return f"\n  {text}\n  {' ' * position}^"


def compile_expression(text: str, what: str = "expression") -> Expression:
    """Compile JMESPath text, or raise a UsageError naming the expression and the position.

    Everything that would fail on every record is found here: syntax, unknown functions, wrong
    argument counts, literal arguments of the wrong type, numbers JSON cannot carry.
    """
    if not text.strip():
        raise UsageError(f"empty {what}")
    try:
        search = compile_to_closures(text)
    except jmespath_errors.JMESPathError as error:
        position = getattr(error, "lex_position", None)
        if not isinstance(position, int):
            position = None
        where = f" at column {position + 1}" if position is not None else ""
        raise UsageError(
            f"bad {what} {text!r}: {_reason(error)}{where}{_caret(text, position)}"
        ) from None
    return Expression(text, _with_user_prefix(text, search))


# The User Import/Export extension binds `user` to the record (`user.user_metadata.name ||
# user.name`). A path rooted at `user.` therefore means the record itself when the record has no
# top-level `user` (or it is null); a record that has one keeps JMESPath's meaning.
USER = "user"


def _with_user_prefix(text: str, search: Callable[[Any], Any]) -> Callable[[Any], Any]:
    tree: dict[str, Any] = dict(jmespath.compile(text).parsed)
    stripped = strip_user_prefix(tree)
    if stripped == tree:
        return search  # no `user.` path: nothing to choose, nothing to pay
    on_record = compile_tree(stripped)

    def either(value: Any) -> Any:
        if type(value) is dict and value.get(USER) is None:
            return on_record(value)
        return search(value)

    return either


# Node types whose every child is evaluated against the same value as the node itself.
_SAME_VALUE = frozenset(
    {
        "or_expression", "and_expression", "not_expression", "comparator", "multi_select_list",
        "multi_select_dict", "key_val_pair", "function_expression",
    }
)  # fmt: skip
# Node types whose first child only sees that value (the rest see its result or its elements).
_FIRST_CHILD = frozenset(
    {"pipe", "projection", "value_projection", "filter_projection", "index_expression", "flatten"}
)


def strip_user_prefix(node: dict[str, Any]) -> dict[str, Any]:
    """A copy of a JMESPath AST whose paths that start at the root with `user.` lose the prefix.

    Paths inside a projection, a filter, the right of a pipe or an `&expression` are not at the
    root (they see elements or results), so they are kept.
    """
    node_type = node["type"]
    children = node["children"]
    if node_type == "subexpression":
        first = children[0]
        if first["type"] == "field" and first["value"] == USER:
            rest = children[1:]
            return rest[0] if len(rest) == 1 else {**node, "children": rest}
        return {**node, "children": [strip_user_prefix(first), *children[1:]]}
    if node_type in _SAME_VALUE:
        return {
            **node,
            "children": [
                strip_user_prefix(child)
                if type(child) is dict and child["type"] != "expref"
                else child
                for child in children
            ],
        }
    if node_type in _FIRST_CHILD and children:
        return {**node, "children": [strip_user_prefix(children[0]), *children[1:]]}
    return node


def _reason(error: jmespath_errors.JMESPathError) -> str:
    if isinstance(error, jmespath_errors.IncompleteExpressionError):
        return "incomplete expression"
    if isinstance(error, LiteralNumberError):
        return error.message
    if isinstance(error, jmespath_errors.ParseError) and not isinstance(
        error, jmespath_errors.ArityError
    ):
        if error.token_value is not None:
            return f"unexpected {error.token_value!r}"
        return error.msg
    # Unknown function, wrong argument count or type: jmespath's own message says it well.
    return str(error)


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, "", [] and {} are false; 0 is true (unlike JavaScript)."""
    if value is None or value is False:
        return False
    return not (type(value) in (str, list, dict) and not value)
