"""Thin click wrappers: parse and validate options, build the op, return a Stage.

Shared options live here so every verb spells them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from ndpipe.errors import NdpipeError, UsageError
from ndpipe.expr import compile_expression
from ndpipe.services.settings import Kind, check_setting

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def on_error_option(function: F) -> F:
    """--on-error fail|skip: what to do with a bad input line."""
    return click.option(
        "--on-error",
        type=click.Choice(["fail", "skip"]),
        default="fail",
        show_default=True,
        help="On a malformed input line: stop with an error (exit 1), or skip it and report "
        "the count and line numbers on stderr at the end.",
    )(function)


def verb(name: str, cls: type[click.Command] | None = None) -> Callable[[F], click.Command]:
    """Declare a verb: a click command with the shared context settings and --on-error."""

    def decorate(function: F) -> click.Command:
        decorated = on_error_option(function)
        return click.command(name, cls=cls, context_settings=CONTEXT)(decorated)

    return decorate


def usage(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a click option callback so an ndpipe UsageError becomes a click usage error (exit 2)."""

    def wrapped(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return callback(value)
        except NdpipeError as error:
            raise click.BadParameter(str(error), ctx=ctx, param=param) from None

    return wrapped


def key_option(help: str) -> Callable[[F], F]:
    """-k/--key EXPR, repeatable and required: JMESPath keys, compiled before input is read."""
    return click.option(
        "-k",
        "--key",
        "keys",
        metavar="EXPR",
        multiple=True,
        required=True,
        callback=usage(lambda texts: [compile_expression(text, "key") for text in texts]),
        help=help,
    )


# Below this a sorted run holds too few records to be worth a file.
MINIMUM_BUFFER_SIZE = 64 * 1000


def parse_buffer_size(text: str) -> int:
    """-S/--buffer-size: bytes, or with K, M, G (x1000) or KiB, MiB, GiB (x1024); at least 64K."""
    from ndpipe.ops.to_json_array import parse_size

    size = parse_size(text)
    if size < MINIMUM_BUFFER_SIZE:
        raise UsageError(f"buffer size {text!r} is too small: at least 64K")
    return size


def spill_options(records: str) -> Callable[[F], F]:
    """-S/--buffer-size and -T/--temp-dir, for the verbs that sort in bounded memory (sort,
    diff); RECORDS says what the buffer holds ("records", "records of both inputs")."""

    def decorate(function: F) -> F:
        function = click.option(
            "-T",
            "--temp-dir",
            type=click.Path(file_okay=False, exists=True, writable=True),
            help="Directory for the temporary runs (default: $TMPDIR, else /tmp). They take "
            f"about the size of the {records} as NDJSON, and are removed at the end, on errors, "
            "on Ctrl-C and on SIGTERM.",
        )(function)
        return click.option(
            "-S",
            "--buffer-size",
            metavar="SIZE",
            default="64M",
            show_default=True,
            callback=usage(parse_buffer_size),
            help=f"Memory for the {records} before sorted runs are written to temporary files: "
            "bytes, or with K, M, G (x1000) or KiB, MiB, GiB (x1024).",
        )(function)

    return decorate


class OrderedOptions(click.Command):
    """A command that remembers the order in which repeatable options were given.

    click groups the values of each option, so `--set a=1 --del b --set c=2` would lose the
    interleaving. This records the sequence of option names in ctx.meta['option_order'].
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        parser = self.make_parser(ctx)
        _, _, order = parser.parse_args(args=list(args))
        ctx.meta["option_order"] = [param.name for param in order]
        return super().parse_args(ctx, args)


def setting_option(
    *flags: str,
    envvar: str,
    kind: Kind,
    help: str,
    metavar: str,
    path: bool = False,
    examples: str = "https://host",
) -> Callable[[F], F]:
    """A service setting (--endpoint, --client-secret, ...): read from ENVVAR when not given,
    checked while the command line is parsed (ndpipe.services.settings.check_setting), so a
    malformed one exits 2 before anything is read or sent; the message names the option or the
    environment variable the value came from, never the value."""

    def checked(context: click.Context, parameter: click.Parameter, value: str | None) -> Any:
        assert parameter.name is not None
        try:
            return check_setting(kind, value, path=path, examples=examples)
        except UsageError as error:
            source = context.get_parameter_source(parameter.name)
            if source is ParameterSource.ENVIRONMENT:
                hint = envvar
            else:
                hint = " / ".join(f"'{option}'" for option in parameter.opts)
            raise click.BadParameter(error.message, ctx=context, param_hint=hint) from None

    return click.option(
        *flags,
        metavar=metavar,
        envvar=envvar,
        show_envvar=True,
        callback=checked,
        help=help,
    )
