"""The `ndpipe` command: a click group of verbs, `then` chaining, exit codes and broken pipes."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import keyword
import os
import signal
import sys
from collections.abc import Sequence

import click
from click import shell_completion

from ndpipe import __version__, output
from ndpipe.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    NdpipeError,
    OutputError,
    Terminated,
    redact,
)
from ndpipe.pipeline import Stage, check_files, run

# Records nest at most 1,024 levels deep (orjson's limit when reading).
RECURSION_LIMIT = 10_000

# Every verb, in the order `ndpipe --help` lists them; each is a module ndpipe/commands/<verb>.py
# (import_.py for import, a Python keyword) that defines `command`.
COMMANDS = [
    "fetch",
    "select",
    "filter",
    "map",
    "head",
    "sample",
    "sort",
    "dedupe",
    "escape-csv",
    "csv",
    "to-json-array",
    "import-clean",
    "upsert-patch",
    "import",
    "to-marketo",
    "to-salesforce",
    "diff",
]

CHAIN_WORD = "then"

# Set by the scripts of `_NDPIPE_COMPLETE=bash_source ndpipe` (or zsh_source, fish_source).
COMPLETE_VARIABLE = "_NDPIPE_COMPLETE"


class VerbGroup(click.Group):
    """Loads each verb's module on demand, so `ndpipe head` does not import httpx or ijson."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if importlib.util.find_spec(_module(name))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not importlib.util.find_spec(_module(cmd_name)):
            return None
        return importlib.import_module(_module(cmd_name)).command  # type: ignore[no-any-return]


def _module(verb: str) -> str:
    name = verb.replace("-", "_")
    return f"ndpipe.commands.{name}_" if keyword.iskeyword(name) else f"ndpipe.commands.{name}"


@click.group(
    cls=VerbGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="ndpipe")
def cli() -> None:
    """Streaming NDJSON tools for Auth0 user exports and any large NDJSON.

    Every command reads NDJSON on stdin and writes NDJSON on stdout in constant memory,
    so they chain with pipes, or in one process with `then`.

    \b
    Example (Auth0 export to a Salesforce-ready CSV):
      ndpipe fetch export.json.gz \\
        | ndpipe select 'Email Address=email' 'First Name=given_name' \\
        | ndpipe escape-csv | ndpipe csv > salesforce.csv
      ndpipe fetch export.json.gz then select 'Email Address=email' then csv

    Exit codes: 0 ok, 1 bad data or failed records, 2 usage, 3 a service or the network,
    130 interrupted.
    """


def split_chain(args: Sequence[str]) -> list[list[str]]:
    """Split `a ARGS then b ARGS` into per-command argument lists."""
    segments: list[list[str]] = [[]]
    for arg in args:
        if arg == CHAIN_WORD:
            segments.append([])
        else:
            segments[-1].append(arg)
    return segments


def _error_prefix(error: NdpipeError, default: str) -> str:
    command = getattr(error, "command", None) or default
    return f"ndpipe {command}" if command else "ndpipe"


def parse_stages(args: Sequence[str]) -> list[Stage] | int:
    """Parse and validate every command of the line before any input is read.

    Returns the stages, or an exit code when click already answered (help, version, usage error).
    """
    segments = split_chain(args)
    stages: list[Stage] = []
    for segment in segments:
        if not segment and len(segments) > 1:
            click.echo("ndpipe: 'then' must stand between two commands", err=True)
            return EXIT_USAGE
        try:
            result = cli.main(args=segment, prog_name="ndpipe", standalone_mode=False)
        except NdpipeError as error:
            error.command = segment[0]  # type: ignore[attr-defined]
            raise
        if not isinstance(result, Stage):
            return result if isinstance(result, int) else 0
        stages.append(result)
    return stages


def _quiet_stdout() -> None:
    """After a closed downstream, point stdout at /dev/null so the final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


def _terminate(signal_number: int, frame: object) -> None:
    raise Terminated(signal_number)


def _say(text: str) -> None:
    """A message on stderr, with every registered secret hidden."""
    try:
        sys.stderr.write(redact(text) + "\n")
        sys.stderr.flush()
    except (OSError, AttributeError, ValueError):
        pass  # no stderr to tell: the exit code still says it


def complete(instruction: str) -> int:
    """Shell completion: click's own, except that each `then` starts a new command."""
    shell, _, action = instruction.partition("_")
    completion_class = shell_completion.get_completion_class(shell)
    if completion_class is None or action != "complete":
        return shell_completion.shell_complete(cli, {}, "ndpipe", COMPLETE_VARIABLE, instruction)
    completer = completion_class(cli, {}, "ndpipe", COMPLETE_VARIABLE)
    try:
        args, incomplete = completer.get_completion_args()
    except (KeyError, ValueError):  # not called by a completion script
        return 1
    if CHAIN_WORD in args:
        args = args[len(args) - args[::-1].index(CHAIN_WORD) :]
    items = completer.get_completions(args, incomplete)
    if args and incomplete and CHAIN_WORD.startswith(incomplete):
        items.append(shell_completion.CompletionItem(CHAIN_WORD))
    click.echo("\n".join(completer.format_completion(item) for item in items).encode())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    instruction = os.environ.get(COMPLETE_VARIABLE)
    if instruction:
        return complete(instruction)
    args = list(sys.argv[1:] if argv is None else argv)
    name = args[0] if args else ""
    # Records may nest up to 1,024 levels (the most orjson reads); recursive code walking them
    # needs a few frames per level.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    for signal_number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signal_number, _terminate)
    try:
        parsed = parse_stages(args)
        if isinstance(parsed, int):
            return parsed
        check_files(parsed)
        return run(parsed, sys.stdout.buffer)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        shown = io.StringIO()
        error.show(file=shown)
        _say(shown.getvalue().rstrip("\n"))
        return error.exit_code
    except click.Abort:
        return EXIT_INTERRUPTED
    except NdpipeError as error:
        if isinstance(error, OutputError) and "stdout" in error.message:
            _quiet_stdout()
        else:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
        _say(f"{_error_prefix(error, name)}: {error}")
        return error.exit_code
    except BrokenPipeError:
        # A closed downstream (`| head -1`) is a normal way for a pipeline to end.
        _quiet_stdout()
        try:
            output.commit_all()
        except OutputError as error:
            _say(f"{_error_prefix(error, name)}: {error}")
            return error.exit_code
        return 0
    except KeyboardInterrupt:
        _quiet_stdout()
        return EXIT_INTERRUPTED
    except Terminated as stop:
        _quiet_stdout()
        return stop.exit_code
    except Exception as error:  # a bug: say so in one line, never a traceback
        if os.environ.get("NDPIPE_DEBUG"):
            raise
        _say(
            f"ndpipe {name}: internal error: {type(error).__name__}: {error} "
            "(this is a bug in ndpipe; run again with NDPIPE_DEBUG=1 for the details "
            "and report it)"
        )
        return EXIT_INTERNAL
    finally:
        # Whatever ended the run: files not committed by then are incomplete, so they go.
        output.abort_all()


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
