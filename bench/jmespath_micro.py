"""Micro-benchmark: compiled JMESPath closures against jmespath's interpreter.

    python bench/jmespath_micro.py [-n 200000] [--repeat 3]

Times, over the same generated Auth0 users (bench/generate.py), three ways of evaluating each
expression once per record: `ndpipe.jmespath_compiler.compile_expression(expr)`,
`jmespath.compile(expr).search` (what ndpipe called before: it builds a new TreeInterpreter per
call) and a single reused `TreeInterpreter` (jmespath's best case). Prints a markdown table with
the best of `--repeat` runs, in nanoseconds per record, and the speed-ups. Each run checks that the
compiled results equal the interpreter's, so a fast wrong answer cannot show up in the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.visitor import TreeInterpreter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import users  # noqa: E402
from ndpipe.jmespath_compiler import compile_expression  # noqa: E402

EXPRESSIONS = [
    "{email: email, name: user_metadata.name || name}",
    "{id: user_id, email: email, created: created_at, logins: logins_count}",
    "email",
    "user_metadata.name",
    "identities[0].connection",
    "app_metadata.roles[?@ == 'admin']",
    "length(identities)",
    "logins_count > `10`",
]


def one_run(evaluate: Callable[[Any], Any], records: list[Any]) -> float:
    # Per-record errors (length() of a missing field) are caught, as ndpipe's ops catch them.
    start = time.perf_counter()
    for record in records:
        try:  # noqa: SIM105 - contextlib.suppress would time a context manager per record
            evaluate(record)
        except JMESPathError:
            pass
    return time.perf_counter() - start


def best_times(
    evaluators: list[Callable[[Any], Any]], records: list[Any], repeat: int
) -> list[float]:
    """The best of `repeat` runs of each; runs take turns so that machine load hits all alike."""
    best = [float("inf")] * len(evaluators)
    for _ in range(repeat):
        for position, evaluate in enumerate(evaluators):
            best[position] = min(best[position], one_run(evaluate, records))
    return best


def outcomes(evaluate: Callable[[Any], Any], records: list[Any]) -> list[Any]:
    results = []
    for record in records:
        try:
            results.append(evaluate(record))
        except JMESPathError as error:
            results.append((type(error), str(error)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="number of users (default 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing, best kept")
    args = parser.parse_args(argv)

    records = list(users(args.n, seed=1, hostile_rate=0.02))
    print(f"{len(records)} generated users, best of {args.repeat} runs, ns per record\n")
    print(
        "| expression | compiled | `jmespath.compile(e).search` | reused TreeInterpreter "
        "| speed-up vs search | speed-up vs reused |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    mismatches = 0
    for expression in EXPRESSIONS:
        compiled = compile_expression(expression)
        parsed = jmespath.compile(expression)
        interpreter = TreeInterpreter()
        tree = parsed.parsed

        def reused(value: Any, visit: Any = interpreter.visit, tree: Any = tree) -> Any:
            return visit(tree, value)

        if outcomes(compiled, records) != outcomes(parsed.search, records):
            mismatches += 1
            print(f"| {expression!r} | results differ from jmespath | | | | |")
            continue
        compiled_time, search_time, reused_time = best_times(
            [compiled, parsed.search, reused], records, args.repeat
        )
        per_record = 1e9 / len(records)
        # A code span that can hold backticks, with the table's column separator escaped.
        shown = "`` " + expression.replace("|", "\\|") + " ``"
        print(
            f"| {shown} | {compiled_time * per_record:.0f} | {search_time * per_record:.0f} "
            f"| {reused_time * per_record:.0f} | {search_time / compiled_time:.1f}x "
            f"| {reused_time / compiled_time:.1f}x |"
        )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
