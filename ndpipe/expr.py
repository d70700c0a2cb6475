"""JMESPath expressions: compiled once, before any input is read; evaluated per record."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jmespath import exceptions as jmespath_errors

from ndpipe.errors import RecordError, UsageError
from ndpipe.jmespath_compiler import LiteralNumberError
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
    return Expression(text, search)


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
