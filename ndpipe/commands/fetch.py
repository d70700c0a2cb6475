from __future__ import annotations

from functools import partial
from typing import Any

import click

from ndpipe.commands import verb
from ndpipe.commands.tenant import notices, tenant_options
from ndpipe.csvio import CSV_STYLES, read_csv
from ndpipe.errors import UsageError
from ndpipe.io import ErrorPolicy, Position, Records, read_records, read_stream
from ndpipe.ops.select import auth0_fields, load_fields_file
from ndpipe.pipeline import Stage, warn
from ndpipe.services.auth0.export import SAMPLE_SIZE, ExportJob, check_export_fields, csv_problems
from ndpipe.services.auth0.tenant import Tenant, check_tenant, open_client

NAME = "fetch"


def parse_export_field(text: str) -> dict[str, str]:
    """`NAME[=EXPORT_AS]` as an export-job field: {"name": NAME, "export_as": EXPORT_AS}."""
    name, _, export_as = text.partition("=")
    entry = {"name": name.strip()}
    if export_as.strip():
        entry["export_as"] = export_as.strip()
    check_fields([entry], f"--field {text!r}")
    return entry


def check_fields(entries: Any, source: str) -> None:
    """The checks Auth0 makes on an export job's `fields`, made before the job is started."""
    auth0_fields(entries, source)  # names in Auth0's path syntax, export_as a string
    check_export_fields(entries, source)


@verb(NAME)
@click.argument("source", required=False, metavar="[SOURCE]")
@click.option(
    "--csv-style",
    type=click.Choice(CSV_STYLES),
    default="auto",
    show_default=True,
    help="How to read CSV input. auth0 (Auth0's export escaping): 'x is the string x, bare "
    "true/false and numbers are typed, empty is null. plain: every cell a string (no type "
    "guessing), empty is null. auto: auth0 if the first 100 rows have '-prefixed cells and "
    "no other bare strings (dates aside), else plain.",
)
@click.option(
    "--flat-headers",
    is_flag=True,
    help="Keep dotted CSV titles as flat keys. Default: nest them into objects "
    '(user_metadata.address.city gives {"user_metadata": {"address": {"city": ...}}}) '
    "when no title is both a value and a prefix of another, and none has an empty part.",
)
@tenant_options
@click.option(
    "--connection",
    metavar="NAME|ID",
    help="Export this connection only (a name, or its con_ id). Default: all connections.",
)
@click.option(
    "--field",
    "fields",
    metavar="NAME[=EXPORT_AS]",
    multiple=True,
    callback=lambda ctx, param, texts: [_field(ctx, param, text) for text in texts],
    help="A field to export, in Auth0's syntax (user_metadata.plan, identities[0].connection), "
    "optionally renamed. Repeatable. Default: Auth0's predefined set.",
)
@click.option(
    "--fields-file",
    type=click.Path(dir_okay=False),
    help='The fields as Auth0 takes them: [{"name": "email", "export_as": "Email"}, ...] '
    "(the format select --fields-file reads).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Export at most N users.")
@click.option("--sample", is_flag=True, help=f"Export {SAMPLE_SIZE} users (--limit {SAMPLE_SIZE}).")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="The job's file format; the output is NDJSON either way (a csv file is read back "
    "into typed values). csv is limited to 30 fields and cannot hold whole metadata objects.",
)
@click.option("--job", "job_id", metavar="ID", help="Download an existing export job (job_...).")
@click.option("--quiet", is_flag=True, help="No progress, notices or summary on stderr.")
def command(
    source: str | None,
    csv_style: str,
    flat_headers: bool,
    tenant: Tenant,
    connection: str | None,
    fields: list[dict[str, str]],
    fields_file: str | None,
    limit: int | None,
    sample: bool,
    format_: str,
    job_id: str | None,
    quiet: bool,
    on_error: str,
) -> Stage:
    """Read users from a file, stdin, or an Auth0 tenant's export job; write NDJSON.

    SOURCE is a file or - (stdin). NDJSON and JSON arrays are recognised from
    their first byte and gzip from its magic bytes, never from the file name, so
    Auth0's export.json.gz can be read as it is. Anything else is read as CSV
    (RFC 4180, gzip or not), one record per row keyed by the header.

    With no SOURCE and a tenant domain (--domain or AUTH0_DOMAIN), fetch runs an
    export job: it starts the job, shows its progress on stderr, and streams the
    users to stdout as the file downloads (no temporary file; an expired link or
    a dropped connection resumes without repeating or cutting a record). The
    application needs read:users and read:connections. Without a domain, or
    with SOURCE -, it reads stdin.

    \b
    Examples:
      ndpipe fetch fixtures/users.json.gz | ndpipe head -n 2
      ndpipe fetch fixtures/csv/auth0-export.csv.gz | ndpipe head -n 2
      ndpipe fetch --connection Username-Password-Authentication > users.ndjson
      ndpipe fetch --field email --field user_metadata.plan=plan --limit 100
      ndpipe fetch --job job_coRQCC3MHztpuTlo | ndpipe csv > users.csv
    """
    tenant_mode = source is None and tenant.configured
    job_settings = {
        "--connection": connection,
        "--field": fields,
        "--fields-file": fields_file,
        "--limit": limit,
        "--sample": sample,
        "--format": format_ != "json",
        "--job": job_id,
    }
    given = [option for option, value in job_settings.items() if value]
    if not tenant_mode:
        if given:
            reason = f"reads SOURCE {source}" if source is not None else "has no tenant domain"
            raise click.UsageError(
                f"{given[0]} is for export jobs, but this fetch {reason}: give --domain "
                "(or AUTH0_DOMAIN) and no SOURCE"
            )

        def read(policy: ErrorPolicy, position: Position) -> Records:
            reader = partial(read_csv, style=csv_style, nest=not flat_headers)
            return read_records(source or "-", policy, position, other=reader)

        return Stage(NAME, source=read, on_error=on_error, inputs=[source or "-"])

    if job_id and len(given) > 1:
        other = next(option for option in given if option != "--job")
        raise click.UsageError(f"--job downloads an existing job; {other} is for a new one")
    if sample and limit:
        raise click.UsageError("--sample is --limit 10; give one of them")
    chosen = list(fields)
    if fields_file:
        try:
            entries = load_fields_file(fields_file)
            check_fields(entries, fields_file)
        except UsageError as error:
            raise click.BadParameter(str(error), param_hint="--fields-file") from None
        chosen += [dict(entry) for entry in entries]
    if format_ == "csv" and not quiet:
        for problem in csv_problems(chosen):
            warn(NAME, problem)
    check_tenant(tenant)
    job = ExportJob(
        # The client is made when the run starts, after the whole command line is checked.
        lambda: open_client(tenant, notify=notices(NAME, quiet)),
        job_id=job_id,
        connection=connection,
        fields=chosen,
        limit=SAMPLE_SIZE if sample else limit,
        format=format_,
        command=NAME,
        notify=notices(NAME, quiet),
        progress=not quiet,
    )

    def users(policy: ErrorPolicy, position: Position) -> Records:
        # A csv job is Auth0-escaped CSV; read it back into typed values.
        other = partial(read_csv, style="auth0", nest=False)
        return job.users(partial(read_stream, policy=policy, position=position, other=other))

    return Stage(NAME, source=users, on_error=on_error)


def _field(ctx: click.Context, param: click.Parameter, text: str) -> dict[str, str]:
    try:
        return parse_export_field(text)
    except UsageError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None
