"""to-marketo: records into Marketo as leads, through its bulk lead import.

The click wrapper: the options are checked while the command line is parsed (exit 2 before
anything is read or sent); the run (files, batches, the report, the summary) is
ndpipe.ops.push.MarketoPush.
"""

from __future__ import annotations

import click

from ndpipe.commands import setting_option, usage, verb
from ndpipe.commands.push_options import byte_limit, push_options, push_stage
from ndpipe.errors import UsageError
from ndpipe.ops.crm import DELIMITERS, check_lookup_field
from ndpipe.ops.push import MarketoPush, PushSettings
from ndpipe.pipeline import Stage
from ndpipe.services.jobs import poll_interval

NAME = "to-marketo"
# Marketo refuses bulk requests of 10 MB or more (HTTP 413); the multipart framing around the
# file takes a few hundred bytes, and the default leaves a margin besides (CRM.md §1.3, §1.8).
MARKETO_LIMIT = 10_000_000
FRAMING_MARGIN = 10_000
MAX_BYTES = MARKETO_LIMIT - FRAMING_MARGIN
DEFAULT_MAX_BYTES = 9_500_000
MIN_BYTES = 100
MAX_BYTES_WHY = "Marketo refuses bulk requests of 10 MB or more, multipart framing included"
# Marketo's guidance is to poll every 5 to 30 seconds (CRM.md §1.4).
DEFAULT_POLL_INTERVAL = 10.0
ENDPOINT_EXAMPLE = "https://123-ABC-456.mktorest.com/rest"


def _lookup(text: str) -> str:
    try:
        return check_lookup_field(text.strip())
    except ValueError as error:
        raise UsageError(str(error)) from None


def _endpoint(text: str | None) -> str | None:
    if text is None:
        return None
    from ndpipe.services.marketo.client import hosts

    hosts(text)  # a path other than /rest is a UsageError now, not at the first request
    return text


@verb(NAME)
@click.argument("files", nargs=-1, metavar="[FILE]...")
@setting_option(
    "--endpoint",
    metavar="URL",
    envvar="MARKETO_ENDPOINT",
    kind="url",
    path=True,
    examples=ENDPOINT_EXAMPLE,
    help="The REST API endpoint from Admin › Integration › Web Services "
    f"({ENDPOINT_EXAMPLE}; /rest may be left out).",
)
@setting_option(
    "--client-id",
    metavar="ID",
    envvar="MARKETO_CLIENT_ID",
    kind="id",
    help="The client ID of the LaunchPoint custom service (its API user needs Read-Write Lead).",
)
@setting_option(
    "--client-secret",
    metavar="SECRET",
    envvar="MARKETO_CLIENT_SECRET",
    kind="secret",
    help="Its client secret; prefer the environment variable, which `ps` does not show.",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(sorted(DELIMITERS)),
    default="csv",
    show_default=True,
    help="The files' format: comma, tab or semicolon separated.",
)
@click.option(
    "--lookup-field",
    metavar="FIELD",
    default="email",
    show_default=True,
    callback=usage(_lookup),
    help="The field that finds an existing lead to update (else a lead is created): email, "
    "id (update only), cookies, twitterId, facebookId, linkedInId, sfdc*Id, or a custom "
    "string, email or integer field.",
)
@click.option(
    "--list-id",
    type=click.IntRange(min=1, max=2**31 - 1),
    metavar="ID",
    help="Also add the imported leads to this static list.",
)
@click.option("--partition", metavar="NAME", help="The lead partition to import into.")
@push_options(
    NAME,
    report_help='Write each record that failed or came back with a warning as NDJSON: {"record": '
    '{...as read...}, "input": "stdin:12", "batch": ID, "reason": "...", "warning": true}. '
    "Give the file back to to-marketo (after fixing the records) to send them again. "
    "Without it, each goes to stderr.",
    max_bytes=str(DEFAULT_MAX_BYTES),
    limit=byte_limit(MIN_BYTES, MAX_BYTES, MAX_BYTES_WHY),
    max_bytes_help="The largest file to send (header included); Marketo's limit is 10 MB.",
    what="file",
    example="leads/leads-{n:04d}.csv",
    unit="batch",
)
def command(
    files: tuple[str, ...],
    endpoint: str | None,
    client_id: str | None,
    client_secret: str | None,
    file_format: str,
    lookup_field: str,
    list_id: int | None,
    partition: str | None,
    push: PushSettings,
    on_error: str,
) -> Stage:
    """Push records to Marketo as leads, through its bulk lead import.

    Reads flat records whose keys are Marketo REST API field names (email,
    firstName, lastName, ...; `select --preset marketo` maps Auth0 users to
    them) as NDJSON on stdin, or from FILEs. They are sent in files of at most
    --max-bytes (the header in each, no record split, input order kept), at
    most 2 batches at a time, each polled to its end. The rows Marketo fails
    or warns about (failures.json, warnings.json) are joined back to the
    records as read and go to the report with Marketo's reason. Date-times in
    Auth0's UTC form (...Z) are sent with an explicit +00:00 offset; nested
    values are refused, naming the field. Nothing is formula-escaped (Marketo
    would store a '). The summary goes to stderr; the exit status is 1 if any
    record failed, 3 if Marketo could not be reached or its daily quota is
    used up (the message says how to resume).

    \b
    Examples:
      ndpipe fetch --connection Username-Password-Authentication \\
        | ndpipe select --preset marketo | ndpipe to-marketo --report failed.ndjson
      ndpipe to-marketo --report failed-again.ndjson failed.ndjson
      ndpipe to-marketo --dry-run --out 'leads/leads-{n:04d}.csv' < leads.ndjson
    """
    if not push.dry_run:
        missing = [
            f"{option} ({variable})"
            for option, variable, value in (
                ("--endpoint", "MARKETO_ENDPOINT", endpoint),
                ("--client-id", "MARKETO_CLIENT_ID", client_id),
                ("--client-secret", "MARKETO_CLIENT_SECRET", client_secret),
            )
            if not value
        ]
        if missing:
            raise click.UsageError(f"give {', '.join(missing)} (or --dry-run)")
        _endpoint(endpoint)
    run = MarketoPush(
        push,
        delimiter=DELIMITERS[file_format],
        endpoint=endpoint,
        client_id=client_id,
        client_secret=client_secret,
        poll_interval=poll_interval(DEFAULT_POLL_INTERVAL),
        file_format=file_format,
        lookup_field=lookup_field,
        list_id=list_id,
        partition=partition,
    )
    return push_stage(run, on_error)
