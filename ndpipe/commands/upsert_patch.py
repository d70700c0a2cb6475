from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from ndpipe.commands import OrderedOptions, usage, verb
from ndpipe.errors import EXIT_DATA
from ndpipe.expr import Expression, compile_expression
from ndpipe.io import ErrorPolicy, Record, Records, SideFile
from ndpipe.ops.to_json_array import parse_size
from ndpipe.ops.upsert_patch import (
    MERGE_MODES,
    PathEdit,
    UpsertStats,
    parse_set,
    parse_unset,
    upsert_patch_file,
)
from ndpipe.pipeline import Stage, plural, warn

NAME = "upsert-patch"


def _each(parse: Callable[[str], PathEdit]) -> Callable[..., Any]:
    return usage(lambda texts: [parse(text) for text in texts])


def summary(stats: UpsertStats, patched: bool, keep_all: bool, unmatched: str | None) -> list[str]:
    """The lines upsert-patch prints on stderr at the end."""
    left = "written" if keep_all else "left out (--all writes them)"
    line = (
        f"{plural(stats.read, 'user')} read: {stats.changed} changed, "
        f"{stats.unchanged} unchanged, {left}"
    )
    if stats.without_email:
        line += f", {stats.without_email} without an email (left out)"
    lines = [line + f"; {plural(stats.written, 'record')} written"]
    if patched:
        line = (
            f"{plural(stats.patches, 'patch', 'patches')} for "
            f"{plural(stats.patch_emails, 'email')}: {stats.matched_patches} applied to "
            f"{plural(stats.patched_users, 'user')}"
        )
        if stats.unmatched_patches:
            where = f", written to {unmatched}" if unmatched else " (--unmatched FILE lists them)"
            line += f"; {stats.unmatched_patches} matched no user{where}"
        lines.append(line)
    for name, count in sorted(stats.assumed_empty.items()):
        if name in stats.metadata_seen:
            continue  # some users have it, so the export has it: the others have none
        lines.append(
            f"warning: no input user had {name}, so the edits to it for "
            f"{plural(count, 'written user')} started from {{}}. If the export did not "
            f"include {name}, do not import this output: it would replace their {name}. "
            f"Export {name} too and run again"
        )
    if stats.not_database:
        count = stats.not_database
        who = (
            "1 written user is not a database user"
            if count == 1
            else (f"{count} written users are not database users")
        )
        lines.append(
            f"warning: {who} (user_id does not start with auth0|). An import upserts into "
            "one database connection and would create them there: filter the input to that "
            "connection"
        )
    if stats.left_out:
        reasons = ", ".join(f"{count} {reason}" for reason, count in stats.left_out.items())
        total = sum(stats.left_out.values())
        lines.append(f"{plural(total, 'user')} left out, exit status 1 ({reasons}):")
        lines.extend(f"  {example}" for example in stats.examples)
        if total > len(stats.examples):
            lines.append(f"  ... and {total - len(stats.examples)} more")
    return lines


@verb(NAME, cls=OrderedOptions)
@click.option(
    "--patch",
    "patch_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=False),
    help='Edits by email, NDJSON: {"email": ..., "user_metadata": {...}, "app_metadata": '
    '{...}, "email_verified": true, "given_name": ...}. Emails match case-insensitively; '
    "several lines for one email apply in file order.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATH=JSON",
    callback=_each(parse_set),
    help="Set PATH (user_metadata.plan, app_metadata.roles, given_name, ...) to a JSON value "
    "on every user --where selects; strings in double quotes.",
)
@click.option(
    "--unset",
    "unsets",
    multiple=True,
    metavar="PATH",
    callback=_each(parse_unset),
    help="Remove PATH inside app_metadata or user_metadata on every user --where selects.",
)
@click.option(
    "--where",
    metavar="EXPR",
    callback=usage(lambda text: compile_expression(text, "--where") if text else None),
    help="JMESPath on the user as read: --set and --unset apply where it is truthy. "
    "(To limit --patch, filter the input.)",
)
@click.option(
    "--merge",
    type=click.Choice(MERGE_MODES),
    default="deep",
    show_default=True,
    help="How a patch's metadata merges: deep is JSON Merge Patch (RFC 7386: objects merge "
    "at every level, null deletes); shallow is Auth0's PATCH /users (first-level keys "
    "replace, null deletes).",
)
@click.option(
    "--all",
    "keep_all",
    is_flag=True,
    help="Also write users the edits do not change, and both metadata objects on every record.",
)
@click.option(
    "--unmatched",
    type=click.Path(dir_okay=False),
    help="Write the patches whose email matched no user to this file (NDJSON, file order).",
)
@click.option(
    "--buffer-size",
    metavar="SIZE",
    default="64M",
    show_default=True,
    callback=usage(parse_size),
    help="Memory for the patch file; a larger one goes to an on-disk index (sqlite) in "
    "$TMPDIR. K, M, G (x1000) or KiB, MiB, GiB (x1024).",
)
def command(
    patch_file: str | None,
    sets: list[PathEdit],
    unsets: list[PathEdit],
    where: Expression | None,
    merge: str,
    keep_all: bool,
    unmatched: str | None,
    buffer_size: int,
    on_error: str,
) -> Stage:
    """Merge edits into current users: import records that change only what you meant.

    Auth0's import with upsert replaces app_metadata and user_metadata whole
    and resets email_verified unless it is sent. Give a fresh export on stdin
    (email, email_verified, app_metadata, user_metadata) and edits: --patch
    FILE by email, and/or --set/--unset on every user --where selects. Each
    changed user comes out as email, email_verified and the changed fields,
    metadata as the full merged object; unchanged users are left out (--all
    keeps them). Missing or null metadata is {}. The patch file is checked
    before stdin is read; patches that match no user are counted on stderr.

    \b
    Examples:
      ndpipe upsert-patch --patch fixtures/upsert-patch/changes.ndjson < fixtures/users.ndjson
      ndpipe upsert-patch --set 'app_metadata.plan="pro"' --unset user_metadata.preferences \\
        --where "app_metadata.plan == 'premium'" < fixtures/users.ndjson
      ndpipe fetch fixtures/users.json.gz \\
        | ndpipe upsert-patch --patch fixtures/upsert-patch/changes.ndjson \\
        | ndpipe to-json-array --max-bytes 500000 --out 'up/users-{n:04d}.json'
    """
    queues = {"sets": iter(sets), "unsets": iter(unsets)}
    order = click.get_current_context().meta.get("option_order", [])
    edits = [next(queues[name]) for name in order if name in queues]
    if patch_file is None and not edits:
        raise click.UsageError("nothing to do: give --patch FILE, --set PATH=JSON or --unset PATH")
    if where is not None and not edits:
        raise click.UsageError(
            "--where limits --set and --unset; to limit --patch, filter the input "
            "(ndpipe filter EXPR | ndpipe upsert-patch ...)"
        )
    stats = UpsertStats()

    def transform(records: Iterable[Record], policy: ErrorPolicy) -> Records:
        # The patch file is read and checked before the first user is (and after the whole
        # command line has been checked); the side file is opened only then.
        side = SideFile(unmatched, "--unmatched") if unmatched else None
        yield from upsert_patch_file(
            records,
            patch_file=patch_file,
            memory_budget=buffer_size,
            stats=stats,
            edits=edits,
            where=where,
            merge=merge,
            keep_all=keep_all,
            on_unmatched=side.write if side is not None else None,
            policy=policy,
        )

    def finish() -> int | None:
        for line in summary(stats, patch_file is not None, keep_all, unmatched):
            warn(NAME, line)
        return EXIT_DATA if stats.left_out else None

    return Stage(
        NAME,
        transform=transform,
        finish=finish,
        on_error=on_error,
        takes_policy=True,
        inputs=[patch_file] if patch_file else [],
        outputs=[("--unmatched", unmatched)] if unmatched else [],
    )
