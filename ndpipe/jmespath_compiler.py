"""Compile JMESPath to nested Python closures that give what `jmespath` 1.1.0 gives, checked first.

`jmespath.compile(text).search(value)` walks the AST on every call: for each node it looks up a
`visit_*` method by the node's type string, and `ParsedResult.search` builds a new
`TreeInterpreter` (and `Functions`) per record. Here the walk happens once: every AST node becomes a
closure that holds its children's closures, so evaluating a record is a few direct calls.

    search = compile_expression("{email: email, name: user_metadata.name || name}")
    search(record)

Semantics are the interpreter's, including its quirks (`0` is true, `!0` is false, `1 == 1.0` but
`true != 1`, ordering only between numbers and strings, projections drop nulls, a multi-select on
null is null). The closures take a fast path for the exact JSON types (`type(v) is dict`, ...) and
fall back to code that mirrors the interpreter line by line for anything else (dict subclasses,
Decimal, ...). Function calls check argument types with the same fast-path rule: values of the
exact JSON types that jmespath accepts run the function directly; anything else goes through
`jmespath.functions.Functions.call_function`, so every type error is jmespath's own exception with
jmespath's own message. Errors that jmespath leaves to Python (a string compared with a number by
`<`, a slice step of 0) are the same Python exceptions.

Where this module differs from the interpreter, on purpose:

- What every evaluation would raise is raised by `compile_expression`, before any input is read:
  an unknown function, a wrong number of arguments, an argument of the wrong type that is written
  as a literal (`length(`1`)`) or an `&expression`. The interpreter raises these only when it
  reaches the call, and never if a short circuit (`a || nosuch(b)`) skips it.
- Numbers stay within the range of a double, as ndpipe reads them (ints exact, floats finite). A
  literal beyond it (`1e400`, an int of 309 digits and more), `NaN` or `Infinity` is refused at
  compile time. `to_number` reads the JSON number syntax only, and gives null for any other
  string and for a number beyond the range (the interpreter reads `' 12'`, `'+5'`, `'1_000'` and
  `'nan'` with Python's `int` and `float`, and gives infinity for `'1e400'`). When the float sum
  of `sum` or `avg` overflows on the way, the exact result is rounded instead; when that is out
  of range too, they raise `NumberRangeError` (a JMESPathError) rather than give infinity.

Node types this module does not know (a later jmespath) are evaluated by jmespath's
`TreeInterpreter` for that subtree.
"""

from __future__ import annotations

import json
import math
import operator
import re
import sys
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction
from numbers import Number
from types import MethodType
from typing import Any

from jmespath import exceptions
from jmespath.functions import REVERSE_TYPES_MAP, TYPES_MAP, Functions
from jmespath.parser import ParsedResult, Parser
from jmespath.visitor import TreeInterpreter, Visitor, _Expression

__all__ = ["Evaluator", "LiteralNumberError", "NumberRangeError", "compile_expression"]

Evaluator = Callable[[Any], Any]
# An AST node: {"type": str, "children": [...], "value": ...}, as jmespath's parser builds it.
Node = Any

_NONE_TYPE = type(None)
# Types for which `x == y` is exactly jmespath's equality whatever the other operand is: only
# numbers 0/1 against booleans are special-cased, and these are neither.
_PLAIN_EQUALITY_TYPES = frozenset({str, list, dict, _NONE_TYPE})
_ORDERABLE_TYPES = frozenset({int, float, str})
_NUMBER_TYPES = frozenset({int, float})
# Types whose jmespath falsiness is Python's falsiness (numbers are not among them: 0 is true).
_PYTHON_TRUTH_TYPES = frozenset({str, list, dict, bool})

_FUNCTIONS = Functions()
_call_function = _FUNCTIONS.call_function
# The same object, for its type check, which the stubs for jmespath leave out.
_FUNCTION_CHECKS: Any = _FUNCTIONS
_FUNCTION_TABLE: dict[str, dict[str, Any]] = Functions.FUNCTION_TABLE
_INTERPRETER = TreeInterpreter()


class LiteralNumberError(exceptions.LexerError):
    """A literal with a number beyond the range of a double (`1e400`), or NaN or Infinity."""


class NumberRangeError(exceptions.JMESPathError):
    """A function's result would be a number beyond the range of a double."""


def compile_expression(text: str) -> Evaluator:
    """Compile JMESPath `text` into a function of one value, or raise what is wrong with it.

    Raised here, with jmespath's own exception types: syntax errors (`ParseError` and subclasses,
    `EmptyExpressionError`, as jmespath raises them), an unknown function (`UnknownFunctionError`),
    a wrong number of arguments (`ArityError`, `VariadictArityError`), a literal or `&expression`
    argument of a type the function refuses (`JMESPathTypeError`), and a literal whose number JSON
    cannot carry (`LiteralNumberError`). Each error found by these checks has `lex_position`, the
    offset in `text` of the function name or literal it is about, like a ParseError's. The
    leftmost problem is the one raised.
    """
    parser = _PositionParser()
    parsed = parser.parse(text).parsed
    problems: list[tuple[int, exceptions.JMESPathError]] = []
    _find_problems(parsed, parser.spans, text, problems)
    if problems:
        position, error = min(problems, key=lambda problem: problem[0])
        # jmespath's ParseError keeps the offset of its token there; these errors do the same.
        error.lex_position = position  # type: ignore[attr-defined]
        raise error
    return _compile(parsed)


# --- checks before compiling

# The stubs for jmespath leave out the parser's private methods that _PositionParser extends.
_PARSER_METHODS: Any = Parser


class _PositionParser(Parser):
    """jmespath's parser, also noting where each literal and each function name is in the text.

    `spans` maps id(node) to (start, end) offsets in the text, for the literal, expref and
    function_expression nodes (for a function, the span of its name).
    """

    def __init__(self) -> None:
        super().__init__()
        self.spans: dict[int, tuple[int, int]] = {}
        self._text = ""

    def parse(self, expression: str) -> ParsedResult:
        # Not through the cache all jmespath parsers share: spans are noted only while parsing.
        self._text = expression
        result: ParsedResult = _PARSER_METHODS._do_parse(self, expression)
        return result

    def _token_nud_literal(self, token: dict[str, Any]) -> Node:
        node = _PARSER_METHODS._token_nud_literal(self, token)
        self.spans[id(node)] = (token["start"], self._end_of_last_parsed())
        return node

    def _token_nud_expref(self, token: dict[str, Any]) -> Node:
        node = _PARSER_METHODS._token_nud_expref(self, token)
        self.spans[id(node)] = (token["start"], self._end_of_last_parsed())
        return node

    def _end_of_last_parsed(self) -> int:
        # Where the next token starts, less the white space before it. (A literal token's own
        # "end" is its length, but one short when the literal ends the text.)
        start: int = _PARSER_METHODS._lookahead_token(self, 0)["start"]
        return len(self._text[:start].rstrip())

    def _token_led_lparen(self, left: Node) -> Node:
        # Called just after the "(": the token before it is the function's name.
        name = _PARSER_METHODS._lookahead_token(self, -2)
        node = _PARSER_METHODS._token_led_lparen(self, left)
        self.spans[id(node)] = (name["start"], name["start"] + len(name["value"]))
        return node


def _find_problems(
    node: Node,
    spans: dict[int, tuple[int, int]],
    text: str,
    found: list[tuple[int, exceptions.JMESPathError]],
) -> None:
    node_type = node["type"]
    problem: exceptions.JMESPathError | None = None
    if node_type == "function_expression":
        problem = _call_problem(node, spans, text)
    elif node_type == "literal":
        problem = _literal_problem(node["value"], *spans[id(node)], text)
    if problem is not None:
        found.append((spans[id(node)][0], problem))
    for child in node["children"]:
        # A slice's children are its bounds (int or None), not nodes.
        if type(child) is dict:
            _find_problems(child, spans, text, found)


def _call_problem(
    node: Node, spans: dict[int, tuple[int, int]], text: str
) -> exceptions.JMESPathError | None:
    """What calling this function would raise whatever the input, checked as jmespath checks it."""
    name = node["value"]
    arguments = node["children"]
    spec = _FUNCTION_TABLE.get(name)
    if spec is None:
        return exceptions.UnknownFunctionError(f"Unknown function: {name}()")
    signature = spec["signature"]
    if signature and signature[-1].get("variadic"):
        if len(arguments) < len(signature):
            return exceptions.VariadictArityError(len(signature), len(arguments), name)
    elif len(arguments) != len(signature):
        return exceptions.ArityError(len(signature), len(arguments), name)
    # Only arguments whose value is known now (literals, &expressions) can be checked; jmespath
    # checks only as many arguments as the signature lists.
    for parameter, argument in zip(signature, arguments, strict=False):
        types = parameter["types"]
        if not types:
            continue
        if argument["type"] == "literal":
            try:
                _FUNCTION_CHECKS._type_check_single(argument["value"], types, name)
            except exceptions.JMESPathTypeError as error:
                return error
        elif argument["type"] == "expref" and "expref" not in types:
            start, end = spans[id(argument)]
            # The interpreter would show the object's repr; the expression's text says more.
            return exceptions.JMESPathTypeError(name, text[start:end].rstrip(), "expref", types)
    return None


# The number tokens of JSON (RFC 8259), in ASCII digits only.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# An int of at most this many bits is within a double's range (below 2**1024 less half an ulp).
_DOUBLE_BITS = 1023
# The largest double has 309 digits before the point; an int of fewer is within the range.
_DOUBLE_DIGITS = len(str(int(sys.float_info.max)))


def _in_double_range(number: int) -> bool:
    if number.bit_length() <= _DOUBLE_BITS:
        return True
    try:
        float(number)
    except OverflowError:
        return False
    return True


def _literal_problem(
    value: Any, start: int, end: int, text: str
) -> exceptions.JMESPathError | None:
    token = text[start:end]
    reason = None
    out_of_range = _first_out_of_range(value)
    if out_of_range is not None:
        # Python's json reads NaN and Infinity, which are not JSON, and 1e400 as infinity.
        if type(out_of_range) is float and math.isnan(out_of_range):
            reason = "NaN in literal is not a JSON number"
        elif "Infinity" in token:
            reason = "Infinity in literal is not a JSON number"
        else:
            reason = _LITERAL_OUT_OF_RANGE
    elif (
        type(value) is str
        and token.startswith("`")
        and token[1:-1].lstrip() == value
        and _JSON_NUMBER.fullmatch(value.rstrip())
    ):
        # jmespath reads a literal that is not valid JSON as a string (a deprecated form), and
        # `json.loads` refuses an int of more digits than Python converts (4,300 by default).
        reason = _LITERAL_OUT_OF_RANGE
    if reason is None:
        return None
    error = LiteralNumberError(start, token, reason)
    error.expression = text
    return error


_LITERAL_OUT_OF_RANGE = "number out of range in literal (beyond the largest double, about 1.8e308)"


def _first_out_of_range(value: Any) -> int | float | None:
    """The first number in `value` beyond a double's range (a float: not finite), if any."""
    value_type = type(value)
    if value_type is float:
        return None if math.isfinite(value) else value
    if value_type is int:
        return None if _in_double_range(value) else value
    items = value if value_type is list else value.values() if value_type is dict else ()
    for item in items:
        found = _first_out_of_range(item)
        if found is not None:
            return found
    return None


# --- the interpreter's helpers, mirrored (jmespath.visitor keeps them private)


def _is_actual_number(value: Any) -> bool:
    # bool is an int in Python but not a number in JMESPath.
    if isinstance(value, bool):
        return False
    return isinstance(value, Number)


def _is_special_number_case(x: Any, y: Any) -> bool | None:
    # 0 == False and 1 == True in Python, but not in JMESPath.
    if _is_actual_number(x) and x in (0, 1):
        return isinstance(y, bool)
    if _is_actual_number(y) and y in (0, 1):
        return isinstance(x, bool)
    return None


def _equals(x: Any, y: Any) -> Any:
    if type(x) in _PLAIN_EQUALITY_TYPES or type(y) in _PLAIN_EQUALITY_TYPES:
        return x == y
    if _is_special_number_case(x, y):
        return False
    return x == y


def _is_comparable(value: Any) -> bool:
    return _is_actual_number(value) or isinstance(value, str)


def _ordered(compare: Callable[[Any, Any], Any], x: Any, y: Any) -> Any:
    if not (_is_comparable(x) and _is_comparable(y)):
        return None
    return compare(x, y)


def _is_false(value: Any) -> bool:
    value_type = type(value)
    if value_type in _PYTHON_TRUTH_TYPES:
        return not value
    if value is None:
        return True
    if value_type in _NUMBER_TYPES:
        return False
    # The interpreter's own test, for everything else (Decimal, subclasses, ...).
    return bool(value == "" or value == [] or value == {} or value is None or value is False)


def _not(value: Any) -> bool:
    if _is_actual_number(value) and value == 0:
        return False
    return not value


def _field_of_other(value: Any, name: str) -> Any:
    # Anything with a .get (dict subclasses, mappings) is an object to the interpreter.
    if value is None:
        return None
    try:
        return value.get(name)
    except AttributeError:
        return None


def _index_of_other(value: Any, index: int) -> Any:
    if not isinstance(value, list):
        return None
    try:
        return value[index]
    except IndexError:
        return None


def _identity(value: Any) -> Any:
    return value


# --- dispatch


def _compile(node: Node) -> Evaluator:
    compiler = _COMPILERS.get(node["type"])
    if compiler is None:
        return _interpreted(node)
    return compiler(node)


def _interpreted(node: Node) -> Evaluator:
    visit = _INTERPRETER.visit

    def interpreted(value: Any) -> Any:
        return visit(node, value)

    return interpreted


def _is_current(node: Node) -> bool:
    return node["type"] in ("identity", "current")


# --- paths: fields, indexes and sequences of them


def _compile_field(node: Node) -> Evaluator:
    return _path((node["value"],))


def _compile_index(node: Node) -> Evaluator:
    return _path((node["value"],))


def _field1(name: str) -> Evaluator:
    def field(value: Any) -> Any:
        if type(value) is dict:
            return value.get(name)
        if value is None:
            return None
        return _field_of_other(value, name)

    return field


def _field2(first: str, second: str) -> Evaluator:
    def field2(value: Any) -> Any:
        if type(value) is dict:
            value = value.get(first)
        elif value is None:
            return None
        else:
            value = _field_of_other(value, first)
        if type(value) is dict:
            return value.get(second)
        if value is None:
            return None
        return _field_of_other(value, second)

    return field2


def _field3(first: str, second: str, third: str) -> Evaluator:
    def field3(value: Any) -> Any:
        if type(value) is dict:
            value = value.get(first)
        elif value is None:
            return None
        else:
            value = _field_of_other(value, first)
        if type(value) is dict:
            value = value.get(second)
        elif value is None:
            return None
        else:
            value = _field_of_other(value, second)
        if type(value) is dict:
            return value.get(third)
        if value is None:
            return None
        return _field_of_other(value, third)

    return field3


def _index1(index: int) -> Evaluator:
    # list[index] exists when len > smallest: index for index >= 0, -index - 1 otherwise.
    smallest = index if index >= 0 else -index - 1

    def index1(value: Any) -> Any:
        if type(value) is list:
            return value[index] if len(value) > smallest else None
        return _index_of_other(value, index)

    return index1


def _field_then(name: str, rest: Evaluator) -> Evaluator:
    # Every step of a path maps null to null, so a missing key ends the path early.
    def field_then(value: Any) -> Any:
        if type(value) is dict:
            value = value.get(name)
        elif value is None:
            return None
        else:
            value = _field_of_other(value, name)
        if value is None:
            return None
        return rest(value)

    return field_then


def _index_then(index: int, rest: Evaluator) -> Evaluator:
    smallest = index if index >= 0 else -index - 1

    def index_then(value: Any) -> Any:
        if type(value) is list:
            if len(value) <= smallest:
                return None
            value = value[index]
        else:
            value = _index_of_other(value, index)
        if value is None:
            return None
        return rest(value)

    return index_then


def _path(keys: tuple[str | int, ...]) -> Evaluator:
    """A path of field names (str) and list indexes (int), such as `identities[0].connection`."""
    if all(type(key) is str for key in keys) and len(keys) <= 3:
        names: Any = keys
        if len(keys) == 1:
            return _field1(names[0])
        if len(keys) == 2:
            return _field2(names[0], names[1])
        return _field3(names[0], names[1], names[2])
    last = keys[-1]
    evaluate = _field1(last) if type(last) is str else _index1(int(last))
    for key in reversed(keys[:-1]):
        if type(key) is str:
            evaluate = _field_then(key, evaluate)
        else:
            evaluate = _index_then(int(key), evaluate)
    shape = tuple(type(key) for key in keys)
    if shape == (str, int, str):
        return _field_index_field(str(keys[0]), int(keys[1]), str(keys[2]), evaluate)
    if shape == (str, int):
        return _field_index(str(keys[0]), int(keys[1]), evaluate)
    return evaluate


def _field_index_field(name: str, index: int, inner_name: str, general: Evaluator) -> Evaluator:
    # `identities[0].connection` in one call when every step meets a plain dict or list; anything
    # else starts over on the general path (reading a plain dict has no side effects).
    smallest = index if index >= 0 else -index - 1

    def field_index_field(value: Any) -> Any:
        if type(value) is dict:
            items = value.get(name)
            if type(items) is list:
                if len(items) <= smallest:
                    return None
                item = items[index]
                if type(item) is dict:
                    return item.get(inner_name)
                if item is None:
                    return None
            elif items is None:
                return None
        return general(value)

    return field_index_field


def _field_index(name: str, index: int, general: Evaluator) -> Evaluator:
    smallest = index if index >= 0 else -index - 1

    def field_index(value: Any) -> Any:
        if type(value) is dict:
            items = value.get(name)
            if type(items) is list:
                return items[index] if len(items) > smallest else None
            if items is None:
                return None
        return general(value)

    return field_index


def _sequence_steps(node: Node, steps: list[Node]) -> None:
    # subexpression, index_expression and pipe all evaluate their children left to right, each
    # on the previous result; nesting does not matter, and `@` steps do nothing.
    node_type = node["type"]
    if node_type in ("subexpression", "index_expression", "pipe"):
        for child in node["children"]:
            _sequence_steps(child, steps)
    elif node_type not in ("identity", "current"):
        steps.append(node)


def _compile_sequence(node: Node) -> Evaluator:
    steps: list[Node] = []
    _sequence_steps(node, steps)
    evaluators: list[Evaluator] = []
    keys: list[str | int] = []
    for step in steps:
        if step["type"] in ("field", "index"):
            keys.append(step["value"])
            continue
        if keys:
            evaluators.append(_path(tuple(keys)))
            keys = []
        evaluators.append(_compile(step))
    if keys:
        evaluators.append(_path(tuple(keys)))
    return _chain(evaluators)


def _chain(evaluators: list[Evaluator]) -> Evaluator:
    if not evaluators:
        return _identity
    if len(evaluators) == 1:
        return evaluators[0]
    if len(evaluators) == 2:
        first, second = evaluators

        def chain2(value: Any) -> Any:
            return second(first(value))

        return chain2
    steps = tuple(evaluators)

    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return chain


def _compile_slice(node: Node) -> Evaluator:
    # A step of 0 raises Python's ValueError on a list, as in the interpreter.
    bounds = slice(*node["children"])

    def slice_(value: Any) -> Any:
        if isinstance(value, list):
            return value[bounds]
        return None

    return slice_


# --- projections


# Projections loop explicitly: for the short lists records hold, a for loop with append is two to
# three times faster than a comprehension over map() or filter() (which cost a function call and
# an iterator object before the first element).


def _compile_projection(node: Node) -> Evaluator:
    left_node, right_node = node["children"]
    left = _identity if _is_current(left_node) else _compile(left_node)
    if _is_current(right_node):

        def project_identity(value: Any) -> Any:
            base = left(value)
            if not isinstance(base, list):
                return None
            collected = []
            for element in base:
                if element is not None:
                    collected.append(element)
            return collected

        return project_identity
    right = _compile(right_node)

    def project(value: Any) -> Any:
        base = left(value)
        if not isinstance(base, list):
            return None
        collected = []
        for element in base:
            result = right(element)
            if result is not None:
                collected.append(result)
        return collected

    return project


def _compile_value_projection(node: Node) -> Evaluator:
    left_node, right_node = node["children"]
    left = _identity if _is_current(left_node) else _compile(left_node)
    right = _identity if _is_current(right_node) else _compile(right_node)

    def value_project(value: Any) -> Any:
        base = left(value)
        if type(base) is dict:
            values = base.values()
        else:
            try:
                values = base.values()
            except AttributeError:
                return None
        collected = []
        for element in values:
            result = right(element)
            if result is not None:
                collected.append(result)
        return collected

    return value_project


def _current_versus_literal(node: Node) -> tuple[bool, Any] | None:
    """(is ==, literal) for `@ == literal` or `@ != literal` with a plain literal, else None."""
    if node["type"] != "comparator" or node["value"] not in ("eq", "ne"):
        return None
    left_node, right_node = node["children"]
    if left_node["type"] == "literal":
        left_node, right_node = right_node, left_node
    if not (_is_current(left_node) and right_node["type"] == "literal"):
        return None
    if not _plain_equality_literal(right_node["value"]):
        return None
    return node["value"] == "eq", right_node["value"]


def _compile_filter_projection(node: Node) -> Evaluator:
    left_node, right_node, condition_node = node["children"]
    left = _identity if _is_current(left_node) else _compile(left_node)
    if _is_current(right_node):
        versus_literal = _current_versus_literal(condition_node)
        if versus_literal is not None:
            equal, literal = versus_literal
            # `roles[?@ == 'admin']`: the comparison inline, no call per element.
            if equal:

                def filter_equal(value: Any) -> Any:
                    base = left(value)
                    if not isinstance(base, list):
                        return None
                    collected = []
                    for element in base:
                        if element == literal and element is not None:
                            collected.append(element)
                    return collected

                return filter_equal

            def filter_not_equal(value: Any) -> Any:
                base = left(value)
                if not isinstance(base, list):
                    return None
                collected = []
                for element in base:
                    if element != literal and element is not None:
                        collected.append(element)
                return collected

            return filter_not_equal
    condition = _compile_condition(condition_node)
    if _is_current(right_node):

        def filter_identity(value: Any) -> Any:
            base = left(value)
            if not isinstance(base, list):
                return None
            collected = []
            for element in base:
                if condition(element) and element is not None:
                    collected.append(element)
            return collected

        return filter_identity
    right = _compile(right_node)

    def filter_project(value: Any) -> Any:
        base = left(value)
        if not isinstance(base, list):
            return None
        collected = []
        for element in base:
            if condition(element):
                result = right(element)
                if result is not None:
                    collected.append(result)
        return collected

    return filter_project


def _compile_flatten(node: Node) -> Evaluator:
    (child,) = node["children"]
    base_of = _identity if _is_current(child) else _compile(child)

    def flatten(value: Any) -> Any:
        base = base_of(value)
        if not isinstance(base, list):
            return None
        merged: list[Any] = []
        extend = merged.extend
        append = merged.append
        for element in base:
            if isinstance(element, list):
                extend(element)
            else:
                append(element)
        return merged

    return flatten


# --- truth, comparison and logic


def _compile_condition(node: Node) -> Evaluator:
    """An evaluator whose Python truth is the JMESPath truth of `node`'s value (for filters)."""
    node_type = node["type"]
    if node_type in ("comparator", "not_expression"):
        # These yield True, False or None, whose Python truth is already JMESPath's.
        return _compile(node)
    if node_type == "and_expression":
        left, right = (_compile_condition(child) for child in node["children"])

        def both(value: Any) -> Any:
            return left(value) and right(value)

        return both
    if node_type == "or_expression":
        left, right = (_compile_condition(child) for child in node["children"])

        def either(value: Any) -> Any:
            return left(value) or right(value)

        return either
    evaluate = _compile(node)

    def truth(value: Any) -> bool:
        return not _is_false(evaluate(value))

    return truth


def _or_operands(node: Node, operands: list[Node]) -> None:
    # `a || b || c` nests; evaluation is "the first true operand, else the last", either way.
    if node["type"] == "or_expression":
        for child in node["children"]:
            _or_operands(child, operands)
    else:
        operands.append(node)


def _field_names(node: Node) -> tuple[str, ...] | None:
    """The names of a plain field path (`a`, `a.b.c`), or None for anything else."""
    steps: list[Node] = []
    _sequence_steps(node, steps)
    if steps and all(step["type"] == "field" for step in steps):
        return tuple(step["value"] for step in steps)
    return None


def _compile_or(node: Node) -> Evaluator:
    left_node, right_node = node["children"]
    left = _compile(left_node)
    right = _compile(right_node)

    def or_(value: Any) -> Any:
        matched = left(value)
        matched_type = type(matched)
        if matched_type is str:
            return matched if matched else right(value)
        if matched is None:
            return right(value)
        if matched_type in _NUMBER_TYPES:
            return matched
        if _is_false(matched):
            return right(value)
        return matched

    operands: list[Node] = []
    _or_operands(node, operands)
    paths = [_field_names(operand) for operand in operands]
    if len(paths) > _MAX_GENERATED_SLOTS or any(
        names is None or len(names) > _MAX_GENERATED_SLOTS for names in paths
    ):
        return or_
    names_in_order = [name for names in paths if names is not None for name in names]
    shape = tuple(len(names) for names in paths if names is not None)
    return _or_paths_factory(shape)(or_, _is_false, *names_in_order)


def _or_paths_factory(shape: tuple[int, ...]) -> Callable[..., Evaluator]:
    """`a.b || c || ...` on plain dicts in one call; `general` (the closures) for anything else."""
    cached = _FACTORIES.get(("or-paths", *shape))
    if cached is not None:
        return cached
    parameters = [f"path{i}_{j}" for i, length in enumerate(shape) for j in range(length)]
    lines = [
        f"def factory(general, is_false, {', '.join(parameters)}):",
        "    def or_paths(value):",
        "        if type(value) is not dict:",
        "            return general(value)",
    ]
    for i, length in enumerate(shape):
        lines.append(f"        matched = value.get(path{i}_0)")
        for j in range(1, length):
            # A missing key leaves None, which stays None; a step into anything but a plain dict
            # or null starts over on the general path (the reads so far had no side effects).
            lines += [
                "        if type(matched) is dict:",
                f"            matched = matched.get(path{i}_{j})",
                "        elif matched is not None:",
                "            return general(value)",
            ]
        if i < len(shape) - 1:
            lines += [
                "        if type(matched) is str:",
                "            if matched:",
                "                return matched",
                "        elif matched is not None and not is_false(matched):",
                "            return matched",
            ]
    lines += ["        return matched", "    return or_paths"]
    return _generated_factory(("or-paths", *shape), lines)


def _compile_and(node: Node) -> Evaluator:
    left_node, right_node = node["children"]
    left = _compile(left_node)
    right = _compile(right_node)

    def and_(value: Any) -> Any:
        matched = left(value)
        if _is_false(matched):
            return matched
        return right(value)

    return and_


def _compile_not(node: Node) -> Evaluator:
    (child,) = node["children"]
    evaluate = _compile(child)

    def not_(value: Any) -> bool:
        result = evaluate(value)
        result_type = type(result)
        if result_type in _NUMBER_TYPES:
            # !0 is false: 0 is true in JMESPath, and so is every other number.
            return False
        if result_type in _PYTHON_TRUTH_TYPES or result is None:
            return not result
        return _not(result)

    return not_


_ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


def _plain_equality_literal(literal: Any) -> bool:
    """Whether `x == literal` is jmespath's equality for every x (no 0/1-versus-bool case)."""
    if type(literal) in _PLAIN_EQUALITY_TYPES:
        return True
    return type(literal) in _NUMBER_TYPES and literal not in (0, 1)


def _compile_comparator(node: Node) -> Evaluator:
    operator_name = node["value"]
    left_node, right_node = node["children"]
    if operator_name in ("eq", "ne"):
        return _compile_equality(operator_name == "eq", left_node, right_node)
    compare = _ORDERINGS[operator_name]
    left = _compile(left_node)
    if right_node["type"] == "literal":
        return _compile_ordering_literal(operator_name, compare, left, right_node["value"])
    right = _compile(right_node)

    def ordering(value: Any) -> Any:
        x = left(value)
        y = right(value)
        if type(x) in _ORDERABLE_TYPES and type(y) in _ORDERABLE_TYPES:
            # A string against a number raises TypeError here, as in the interpreter.
            return compare(x, y)
        return _ordered(compare, x, y)

    return ordering


def _compile_equality(equal: bool, left_node: Node, right_node: Node) -> Evaluator:
    if left_node["type"] == "literal" and right_node["type"] != "literal":
        # Equality is symmetric; keep the literal on the right for the cases below.
        left_node, right_node = right_node, left_node
    if right_node["type"] == "literal" and _plain_equality_literal(right_node["value"]):
        literal = right_node["value"]
        if _is_current(left_node):
            if equal:
                return lambda value: value == literal
            return lambda value: value != literal
        left = _compile(left_node)
        if equal:
            return lambda value: left(value) == literal
        return lambda value: left(value) != literal
    left = _compile(left_node)
    right = _compile(right_node)
    if equal:
        return lambda value: _equals(left(value), right(value))
    return lambda value: not _equals(left(value), right(value))


def _compile_ordering_literal(
    operator_name: str, compare: Callable[[Any, Any], Any], left: Evaluator, literal: Any
) -> Evaluator:
    if not _is_comparable(literal):
        # Never comparable: the left side is still evaluated (it may raise), the result is null.
        def never(value: Any) -> None:
            left(value)

        return never
    fast_types = _NUMBER_TYPES if type(literal) in _NUMBER_TYPES else frozenset({type(literal)})
    if type(literal) not in _ORDERABLE_TYPES:
        fast_types = frozenset()
    if operator_name == "lt":

        def less(value: Any) -> Any:
            x = left(value)
            if type(x) in fast_types:
                return x < literal
            return _ordered(compare, x, literal)

        return less
    if operator_name == "lte":

        def less_equal(value: Any) -> Any:
            x = left(value)
            if type(x) in fast_types:
                return x <= literal
            return _ordered(compare, x, literal)

        return less_equal
    if operator_name == "gt":

        def greater(value: Any) -> Any:
            x = left(value)
            if type(x) in fast_types:
                return x > literal
            return _ordered(compare, x, literal)

        return greater

    def greater_equal(value: Any) -> Any:
        x = left(value)
        if type(x) in fast_types:
            return x >= literal
        return _ordered(compare, x, literal)

    return greater_equal


# --- literals, multi-selects


def _compile_literal(node: Node) -> Evaluator:
    # The very object in the AST, as the interpreter returns it.
    literal = node["value"]
    return lambda value: literal


def _compile_current(node: Node) -> Evaluator:
    return _identity


def _compile_key_val_pair(node: Node) -> Evaluator:
    return _compile(node["children"][0])


# Some shapes are built by small closure factories generated from source, one per shape, because
# straight-line code is markedly faster there than loops or a closure per node: a dict or list
# display with one slot per item (a third faster than filling it in a loop), and an or-chain of
# field paths walked inline (a third faster than nested closures). Only the shape (counts, which
# slots are fields) goes into the source; keys, field names and evaluators are passed to the
# factory as arguments, never as text.
_FACTORIES: dict[tuple[Any, ...], Callable[..., Evaluator]] = {}
_MAX_GENERATED_SLOTS = 32


def _generated_factory(shape: tuple[Any, ...], lines: list[str]) -> Callable[..., Evaluator]:
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<jmespath_compiler {shape[0]}>", "exec"), namespace)
    factory: Callable[..., Evaluator] = namespace["factory"]
    _FACTORIES[shape] = factory
    return factory


def _display_factory(kind: str, shape: tuple[bool, ...]) -> Callable[..., Evaluator]:
    """A multi-select building a dict (kind "dict") or list ("list") display with len(shape) slots.

    The factory takes `general` (the loop version, for values that are not dicts), then per slot
    `key{i}, item{i}` (dict) or `item{i}` (list): item{i} is a field name where shape[i] is set,
    read with `value.get` when value is a dict (cheaper than binding `get` once for a handful of
    keys), and an evaluator where it is not.
    """
    cached = _FACTORIES.get((f"multi-select-{kind}", *shape))
    if cached is not None:
        return cached
    if kind == "dict":
        parameters = ", ".join(f"key{i}, item{i}" for i in range(len(shape)))
        slot_prefixes = [f"key{i}: " for i in range(len(shape))]
        opening, closing = "{", "}"
    else:
        parameters = ", ".join(f"item{i}" for i in range(len(shape)))
        slot_prefixes = ["" for _ in shape]
        opening, closing = "[", "]"
    lines = [f"def factory(general, {parameters}):", "    def select(value):"]
    if any(shape):
        slots = ", ".join(
            f"{prefix}value.get(item{i})" if is_field else f"{prefix}item{i}(value)"
            for i, (prefix, is_field) in enumerate(zip(slot_prefixes, shape, strict=True))
        )
        lines += [
            "        if type(value) is dict:",
            f"            return {opening}{slots}{closing}",
            "        return general(value)",
        ]
    else:
        slots = ", ".join(f"{prefix}item{i}(value)" for i, prefix in enumerate(slot_prefixes))
        lines += [
            "        if value is None:",
            "            return None",
            f"        return {opening}{slots}{closing}",
        ]
    lines.append("    return select")
    return _generated_factory((f"multi-select-{kind}", *shape), lines)


def _compile_multi_select_list(node: Node) -> Evaluator:
    value_nodes = node["children"]
    items = tuple(_compile(value_node) for value_node in value_nodes)

    def general(value: Any) -> Any:
        if value is None:
            return None
        collected = []
        for item in items:
            collected.append(item(value))
        return collected

    if not items or len(items) > _MAX_GENERATED_SLOTS:
        return general
    shape = tuple(value_node["type"] == "field" for value_node in value_nodes)
    arguments = [
        value_node["value"] if value_node["type"] == "field" else item
        for value_node, item in zip(value_nodes, items, strict=True)
    ]
    return _display_factory("list", shape)(general, *arguments)


def _compile_multi_select_dict(node: Node) -> Evaluator:
    keys = [child["value"] for child in node["children"]]
    value_nodes = [child["children"][0] for child in node["children"]]
    evaluators = [_compile(value_node) for value_node in value_nodes]
    pairs = tuple(zip(keys, evaluators, strict=True))

    def general(value: Any) -> Any:
        if value is None:
            return None
        collected = {}
        for key, evaluate in pairs:
            collected[key] = evaluate(value)
        return collected

    if not pairs or len(pairs) > _MAX_GENERATED_SLOTS:
        return general
    shape = tuple(value_node["type"] == "field" for value_node in value_nodes)
    arguments: list[Any] = []
    for key, value_node, evaluate in zip(keys, value_nodes, evaluators, strict=True):
        arguments.append(key)
        arguments.append(value_node["value"] if value_node["type"] == "field" else evaluate)
    return _display_factory("dict", shape)(general, *arguments)


# --- functions

# jmespath checks argument types by Python type name; these are the classes behind those names.
_CLASSES_BY_NAME: dict[str, type] = {
    "bool": bool,
    "list": list,
    "dict": dict,
    "NoneType": _NONE_TYPE,
    "str": str,
    "float": float,
    "int": int,
    "OrderedDict": OrderedDict,
    "_Expression": _Expression,
}


def _classes(jmespath_type: str) -> frozenset[type]:
    names = REVERSE_TYPES_MAP[jmespath_type]
    return frozenset(_CLASSES_BY_NAME[name] for name in names if name in _CLASSES_BY_NAME)


def _argument_check(types: list[str]) -> Callable[[Any], bool] | None:
    """A quick test that passes only values jmespath's type check passes (None: no check).

    A value that fails it is not necessarily wrong; the caller then lets jmespath decide.
    """
    if not types:
        return None
    allowed: set[type] = set()
    element_groups: list[frozenset[type]] = []
    for jmespath_type in types:
        base, _, element_type = jmespath_type.partition("-")
        allowed |= _classes(base)
        if element_type:
            element_groups.append(_classes(element_type))
    allowed_classes = frozenset(allowed)
    if not element_groups:
        return lambda value: type(value) in allowed_classes
    if len(element_groups) == 1:
        (group,) = element_groups

        def all_of_one_type(value: Any) -> bool:
            if type(value) not in allowed_classes:
                return False
            return all(type(element) in group for element in value)

        return all_of_one_type

    def all_like_first(value: Any) -> bool:
        # As jmespath: the first element picks the group (numbers or strings) the rest must match.
        if type(value) not in allowed_classes:
            return False
        if not value:
            return True
        first_type = type(value[0])
        for group in element_groups:
            if first_type in group:
                return all(type(element) in group for element in value)
        return False

    return all_like_first


def _keys(value: dict[str, Any]) -> list[str]:
    return list(value)


def _values(value: dict[str, Any]) -> list[Any]:
    return list(value.values())


def _to_string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _not_null(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


# Numbers. JSON numbers are carried here as doubles or exact ints within a double's range (what
# ndpipe reads: beyond about 1.8e308 it refuses a number, int or not). The functions below give
# what jmespath gives whenever that is such a number. Python ints are exact at any size, so only
# floats overflow (to infinity, silently, or with OverflowError when an int too large for a float
# meets a float), and only `sum` makes ints larger than it was given.


def _sum(numbers: list[Any]) -> Any:
    try:
        total = sum(numbers)
    except OverflowError:
        return _exact_float("sum", _exact_sum(numbers))
    if type(total) is float:
        if math.isfinite(total):
            return total
        # The float sum overflowed on the way; the exact one may still be in range.
        return _exact_float("sum", _exact_sum(numbers))
    if total.bit_length() <= _DOUBLE_BITS or _in_double_range(total):
        return total
    raise _out_of_range("sum")


def _average(numbers: list[Any]) -> Any:
    if not numbers:
        return None
    try:
        mean = sum(numbers) / len(numbers)
    except OverflowError:
        mean = math.inf
    if math.isfinite(mean):
        return mean
    return _exact_float("avg", _exact_sum(numbers) / len(numbers))


def _exact_sum(numbers: list[Any]) -> Fraction:
    return sum(map(Fraction, numbers), Fraction(0))


def _exact_float(function_name: str, exact: Fraction) -> float:
    """`exact` correctly rounded to a float, or NumberRangeError when it is beyond the largest."""
    try:
        return float(exact)
    except OverflowError:
        raise _out_of_range(function_name) from None


def _out_of_range(function_name: str) -> NumberRangeError:
    return NumberRangeError(
        f"{function_name}() result is out of range (beyond the largest double, about 1.8e308)"
    )


_interpreter_to_number = MethodType(_FUNCTION_TABLE["to_number"]["function"], _FUNCTIONS)


def _to_number(value: Any) -> Any:
    if type(value) is str:
        # The common case first, without the regular expression: a plain integer.
        if (
            value.isdigit()
            and value.isascii()
            and len(value) < _DOUBLE_DIGITS
            and (value[0] != "0" or len(value) == 1)
        ):
            return int(value)
        return _number_of_text(value)
    if type(value) is int or type(value) is float:
        return value
    if isinstance(value, str):
        return _number_of_text(value)
    # Anything else as the interpreter has it (null for null, booleans, arrays and objects).
    number = _interpreter_to_number(value)
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return number


def _number_of_text(text: str) -> int | float | None:
    """The number a JSON number token reads as (an int exactly); None for other text, or when
    the number is beyond a double's range."""
    match = _JSON_NUMBER.fullmatch(text)
    if match is None:
        return None
    if match.lastindex is None:  # no fraction and no exponent: an int
        digits = len(text) - text.startswith("-")
        if digits < _DOUBLE_DIGITS:
            return int(text)
        if digits > _DOUBLE_DIGITS:  # also keeps int() from digit strings it refuses to read
            return None
        integer = int(text)
        return integer if _in_double_range(integer) else None
    number = float(text)
    return number if math.isfinite(number) else None


# Faster equivalents of jmespath's function bodies, valid once the argument check has passed.
_FAST_BODIES: dict[str, Callable[..., Any]] = {
    "length": len,
    "abs": abs,
    "ceil": math.ceil,
    "floor": math.floor,
    "keys": _keys,
    "values": _values,
    "contains": operator.contains,
    "starts_with": str.startswith,
    "ends_with": str.endswith,
    "join": str.join,
    "sum": _sum,
    "avg": _average,
    "to_number": _to_number,
    "to_string": _to_string,
    "not_null": _not_null,
}


def _compile_function(node: Node) -> Evaluator:
    # compile_expression has checked that the function exists and takes this many arguments.
    name = node["value"]
    argument_nodes = node["children"]
    with_expression = _EXPRESSION_FUNCTIONS.get(name)
    if with_expression is not None:
        compiled = with_expression(name, argument_nodes)
        if compiled is not None:
            return compiled
    arguments = [_compile(child) for child in argument_nodes]
    return _checked_call(name, _FUNCTION_TABLE[name], arguments)


def _checked_call(name: str, spec: dict[str, Any], arguments: list[Evaluator]) -> Evaluator:
    body = _FAST_BODIES.get(name) or MethodType(spec["function"], _FUNCTIONS)
    # jmespath type-checks only as many arguments as the signature lists (variadic ones too).
    checks = [_argument_check(parameter["types"]) for parameter in spec["signature"]]
    if len(arguments) == 1:
        (argument,) = arguments
        (check,) = checks
        if check is None:
            return lambda value: body(argument(value))

        def call1(value: Any) -> Any:
            x = argument(value)
            if check(x):
                return body(x)
            return _call_function(name, [x])

        return call1
    if len(arguments) == 2 and len(checks) == 2:
        first, second = arguments
        first_check = checks[0] or _anything
        second_check = checks[1] or _anything

        def call2(value: Any) -> Any:
            x = first(value)
            y = second(value)
            if first_check(x) and second_check(y):
                return body(x, y)
            return _call_function(name, [x, y])

        return call2
    pairs = [(index, check) for index, check in enumerate(checks) if check is not None]
    all_arguments = tuple(arguments)

    def call(value: Any) -> Any:
        values = [argument(value) for argument in all_arguments]
        for index, check in pairs:
            if not check(values[index]):
                return _call_function(name, values)
        return body(*values)

    return call


def _anything(value: Any) -> bool:
    return True


class _CompiledVisitor(Visitor):
    """What an `_Expression` made here visits with: the compiled closure of its expression."""

    def __init__(self, expression: Node, evaluate: Evaluator) -> None:
        super().__init__()
        self._expression = expression
        self._evaluate = evaluate

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        if node is self._expression and len(args) == 1 and not kwargs:
            return self._evaluate(args[0])
        return _INTERPRETER.visit(node, *args, **kwargs)


def _compile_expref(node: Node) -> Evaluator:
    # Like the interpreter, a new _Expression per evaluation (it has identity equality).
    expression = node["children"][0]
    visitor = _CompiledVisitor(expression, _compile(expression))

    def expref(value: Any) -> Any:
        return _Expression(expression, visitor)

    return expref


def _jmespath_type(value: Any) -> str:
    return TYPES_MAP.get(type(value).__name__, "unknown")


def _key_function(function_name: str, key: Evaluator, allowed: list[str]) -> Evaluator:
    # jmespath.functions.Functions._create_key_func, calling the compiled closure.
    def key_function(element: Any) -> Any:
        result = key(element)
        jmespath_type = _jmespath_type(result)
        if jmespath_type not in allowed:
            raise exceptions.JMESPathTypeError(function_name, result, jmespath_type, allowed)
        return result

    return key_function


def _expression_function(name: str, argument_nodes: list[Node]) -> Evaluator | None:
    """sort_by, min_by, max_by and map with a literal `&expr`: call its closure directly."""
    expref_position = 0 if name == "map" else 1
    expref_node = argument_nodes[expref_position]
    array_node = argument_nodes[1 - expref_position]
    if expref_node["type"] != "expref":
        return None
    array_of = _compile(array_node)
    make_expref = _compile_expref(expref_node)
    key = _compile(expref_node["children"][0])

    def fallback(array: Any, value: Any) -> Any:
        arguments = [array, make_expref(value)]
        if expref_position == 0:
            arguments.reverse()
        return _call_function(name, arguments)

    if name == "map":

        def map_(value: Any) -> Any:
            array = array_of(value)
            if type(array) is not list:
                return fallback(array, value)
            return [key(element) for element in array]

        return map_
    if name == "sort_by":

        def sort_by(value: Any) -> Any:
            array = array_of(value)
            if type(array) is not list:
                return fallback(array, value)
            if not array:
                return array
            required = _jmespath_type(key(array[0]))
            if required not in ("number", "string"):
                raise exceptions.JMESPathTypeError(
                    "sort_by", array[0], required, ["string", "number"]
                )
            return sorted(array, key=_key_function("sort_by", key, [required]))

        return sort_by
    pick = min if name == "min_by" else max
    key_function = _key_function(name, key, ["number", "string"])

    def extreme_by(value: Any) -> Any:
        array = array_of(value)
        if type(array) is not list:
            return fallback(array, value)
        if array:
            return pick(array, key=key_function)
        return None

    return extreme_by


_EXPRESSION_FUNCTIONS: dict[str, Callable[[str, list[Node]], Evaluator | None]] = {
    "sort_by": _expression_function,
    "min_by": _expression_function,
    "max_by": _expression_function,
    "map": _expression_function,
}


_COMPILERS: dict[str, Callable[[Node], Evaluator]] = {
    "field": _compile_field,
    "index": _compile_index,
    "subexpression": _compile_sequence,
    "index_expression": _compile_sequence,
    "pipe": _compile_sequence,
    "slice": _compile_slice,
    "projection": _compile_projection,
    "value_projection": _compile_value_projection,
    "filter_projection": _compile_filter_projection,
    "flatten": _compile_flatten,
    "identity": _compile_current,
    "current": _compile_current,
    "literal": _compile_literal,
    "comparator": _compile_comparator,
    "or_expression": _compile_or,
    "and_expression": _compile_and,
    "not_expression": _compile_not,
    "multi_select_list": _compile_multi_select_list,
    "multi_select_dict": _compile_multi_select_dict,
    "key_val_pair": _compile_key_val_pair,
    "function_expression": _compile_function,
    "expref": _compile_expref,
}
