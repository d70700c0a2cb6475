from __future__ import annotations

from collections.abc import Iterable

import click

from ndpipe.commands import verb
from ndpipe.errors import EXIT_DATA
from ndpipe.io import Record, Records, SideFile
from ndpipe.ops.import_clean import (
    EMAIL_VERIFIED_MODES,
    CleanStats,
    Rejected,
    import_clean,
    summary_lines,
)
from ndpipe.pipeline import Stage, warn

NAME = "import-clean"


def describe(rejected: Rejected) -> str:
    reasons = "; ".join(str(problem) for problem in rejected.problems)
    return f"line {rejected.line}: rejected: {reasons}"


@verb(NAME)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False),
    help="Write the records that still fail as NDJSON: "
    '{"line": N, "record": {...as read...}, "errors": [{"code", "path", "message"}]}. '
    "Without it, each is reported on stderr.",
)
@click.option(
    "--email-verified",
    type=click.Choice(EMAIL_VERIFIED_MODES),
    default="keep",
    show_default=True,
    help="keep: the record's value (false when missing, which is what the import would set); "
    "true/false: set it on every record.",
)
@click.option(
    "--drop-user-id",
    is_flag=True,
    help="Drop user_id so Auth0 assigns new ids (default: keep it, minus 'auth0|').",
)
@click.option(
    "--check",
    is_flag=True,
    help="Only check records as they are: pass them all through unchanged and report the "
    "invalid ones (exit 1 if any).",
)
def command(
    rejects: str | None, email_verified: str, drop_user_id: bool, check: bool, on_error: str
) -> Stage:
    """Make exported users importable: Auth0's bulk-import schema, or a reason why not.

    Renames the User Import/Export extension's columns back (Email to email,
    Id to user_id, ...), drops export-only and unknown keys (created_at,
    identities, logins_count, Connection, ...) and forbidden app_metadata keys,
    strips 'auth0|' from user_id (an id of another connection, such as
    google-oauth2|..., is dropped), lower-cases email, drops null and empty
    values (also inside metadata), nests flat dotted keys (app_metadata.plan,
    user_metadata.address.zip) into their object, reads spreadsheet booleans
    (TRUE/FALSE, 1/0, yes/no) in email_verified, phone_verified and blocked,
    and writes email_verified on every record. Then each record is
    checked against the import schema (email format, types, lengths, E.164
    phone, password hashes, MFA factors). Records that still fail go to
    --rejects (or stderr) with their line number and reasons, never silently
    away. A summary goes to stderr; the exit code is 1 if any record was
    rejected, after all the others have been written.

    \b
    Examples:
      ndpipe import-clean --rejects rejects.ndjson < fixtures/users.ndjson \\
        | ndpipe to-json-array > users.json
      ndpipe import-clean --check < fixtures/import-clean/export.ndjson > /dev/null
    """
    stats = CleanStats()

    def transform(records: Iterable[Record]) -> Records:
        handle = SideFile(rejects, "--rejects") if rejects else None

        def on_reject(rejected: Rejected) -> None:
            if handle is None:
                warn(NAME, describe(rejected))
            else:
                handle.write(rejected.as_record())

        yield from import_clean(
            records,
            stats=stats,
            on_reject=on_reject,
            email_verified=email_verified,
            drop_user_id=drop_user_id,
            check_only=check,
        )

    def finish() -> int | None:
        for line in summary_lines(stats, check_only=check, rejects_to=rejects):
            warn(NAME, line)
        return EXIT_DATA if stats.rejected else None

    return Stage(
        NAME,
        transform=transform,
        finish=finish,
        on_error=on_error,
        outputs=[("--rejects", rejects)] if rejects else [],
    )
