"""What the push commands (to-marketo, to-salesforce) share on the command line: --report,
--max-bytes (checked against each service's limit), --out, --dry-run, --start-at and --quiet,
and the stage that runs an ndpipe.ops.push run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ndpipe.commands import usage
from ndpipe.commands.tenant import notices
from ndpipe.errors import EXIT_DATA, UsageError
from ndpipe.ops.push import Push, PushSettings
from ndpipe.ops.to_json_array import OutputPattern, parse_size
from ndpipe.output import Target
from ndpipe.pipeline import Stage, warn


def byte_limit(low: int, high: int, why: str) -> Callable[[str], int]:
    """A --max-bytes check: a size (bytes, or with K, M, G...) from LOW to HIGH; WHY is the
    service's limit, for the message."""

    def check(text: str) -> int:
        size = parse_size(text)
        if not low <= size <= high:
            raise UsageError(f"must be between {low} and {high:,} bytes ({why})")
        return size

    return check


def numbered_pattern(example: str) -> Callable[[str | None], OutputPattern | None]:
    """An --out check: a file name pattern with {n} (EXAMPLE shows one)."""

    def check(text: str | None) -> OutputPattern | None:
        if text is None:
            return None
        pattern = OutputPattern(text)
        if not pattern.numbered:
            raise UsageError(f"needs {{n}} to number the files, e.g. '{example}'")
        return pattern

    return check


def push_options(
    name: str,
    *,
    report_help: str,
    max_bytes: str,
    limit: Callable[[str], int],
    max_bytes_help: str,
    what: str,
    example: str,
    unit: str,
) -> Callable[[Callable[..., Stage]], Callable[..., Stage]]:
    """--report, --max-bytes (default MAX_BYTES, checked by LIMIT), --out (each WHAT kept as
    EXAMPLE), --dry-run, --start-at and --quiet (no UNIT log), in this order, for the command
    NAME. The command gets them (and its FILE arguments) as one `push` (PushSettings); a dry
    run without --out is a usage error before its own checks."""
    options = [
        click.option("--report", type=click.Path(dir_okay=False), help=report_help),
        click.option(
            "--max-bytes",
            metavar="N",
            default=max_bytes,
            show_default=True,
            callback=usage(limit),
            help=max_bytes_help,
        ),
        click.option(
            "--out",
            "pattern",
            metavar="PATTERN",
            callback=usage(numbered_pattern(example)),
            help=f"Also keep each {what}: '{example}' ({{n}} is the file number, from 1). "
            "Required with --dry-run.",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            help="Check the records and write the --out files, sending nothing; needs no "
            "credentials.",
        ),
        click.option(
            "--start-at",
            metavar="N",
            type=click.IntRange(min=1),
            default=1,
            help="Send files from number N on: with the same input and --max-bytes, the files "
            "are the same, so this resumes a run that stopped (its error names N).",
        ),
        click.option(
            "--quiet", is_flag=True, help=f"No {unit} log or notices on stderr; only the summary."
        ),
    ]

    def decorate(function: Callable[..., Stage]) -> Callable[..., Stage]:
        @functools.wraps(function)
        def command(
            *,
            report: str | None,
            max_bytes: int,
            pattern: OutputPattern | None,
            dry_run: bool,
            start_at: int,
            quiet: bool,
            **params: Any,
        ) -> Stage:
            if dry_run and pattern is None:
                raise click.UsageError(
                    "--dry-run writes the files it would send: give --out PATTERN"
                )
            push = PushSettings(
                name=name,
                files=params["files"],
                report=report,
                pattern=pattern,
                dry_run=dry_run,
                start_at=start_at,
                max_bytes=max_bytes,
                quiet=quiet,
                say=notices(name),
                notify=notices(name, quiet),
            )
            return function(push=push, **params)

        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def push_stage(run: Push, on_error: str) -> Stage:
    """The sink stage of a push run: its FILES (else stdin), its summary and exit status (1 if
    any record did not make it), and the files it writes (--report, --out)."""

    def finish() -> int | None:
        line, failed = run.summary()
        warn(run.name, line)
        return EXIT_DATA if failed else None

    run.skip = on_error == "skip"
    outputs: list[tuple[str, Target]] = [("--report", run.report)] if run.report else []
    if run.pattern is not None:
        outputs.append(("--out", run.pattern.path))
    return Stage(
        run.name,
        source=run.source if run.files else None,
        sink=run.sink,
        finish=finish,
        on_error=on_error,
        inputs=list(run.files),
        outputs=outputs,
    )
