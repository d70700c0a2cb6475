from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import click

from ndpipe.commands import verb
from ndpipe.commands.tenant import (
    JobProgress,
    Tenant,
    check_tenant,
    open_client,
    tenant_options,
)
from ndpipe.csvio import CSV_STYLES, read_csv
from ndpipe.errors import Refused, RemoteError, UsageError
from ndpipe.io import ErrorPolicy, Position, Records, read_records, read_stream
from ndpipe.ops.select import auth0_fields, load_fields_file
from ndpipe.pipeline import Stage, plural, warn
from ndpipe.progress import CHECK_EVERY, DownloadProgress

if TYPE_CHECKING:
    from ndpipe.services.auth0.client import Auth0Client

NAME = "fetch"
SAMPLE_SIZE = 10  # the Dashboard's "Export as Sample"
CSV_MAX_FIELDS = 30  # AUTH0.md §1.5
FIELD_TEXT_MAX = 100  # name and export_as, AUTH0.md §1.2
WHOLE_METADATA = ("app_metadata", "user_metadata")


def parse_export_field(text: str) -> dict[str, str]:
    """`NAME[=EXPORT_AS]` as an export-job field: {"name": NAME, "export_as": EXPORT_AS}."""
    name, _, export_as = text.partition("=")
    entry = {"name": name.strip()}
    if export_as.strip():
        entry["export_as"] = export_as.strip()
    check_export_fields([entry], f"--field {text!r}")
    return entry


def check_export_fields(entries: Any, source: str) -> None:
    """The checks Auth0 makes on `fields`, made before the job is started."""
    auth0_fields(entries, source)  # names in Auth0's path syntax, export_as a string
    for entry in entries:
        for key in ("name", "export_as"):
            value = entry.get(key)
            if value is not None and not 1 <= len(value) <= FIELD_TEXT_MAX:
                raise UsageError(f"{source}: {key} {value!r} must be 1 to 100 characters")
        extra = set(entry) - {"name", "export_as"}
        if extra:
            raise UsageError(f"{source}: unknown key {sorted(extra)[0]!r} (only name, export_as)")


def csv_problems(fields: list[dict[str, str]]) -> list[str]:
    """Why Auth0 would refuse or empty a csv export of these fields (AUTH0.md §1.5)."""
    problems = []
    if len(fields) > CSV_MAX_FIELDS:
        problems.append(
            f"Auth0 limits csv exports to {CSV_MAX_FIELDS} fields; this asks for {len(fields)} "
            "(use --format json)"
        )
    for entry in fields:
        if entry["name"] in WHOLE_METADATA:
            problems.append(
                f"a csv export cannot hold {entry['name']} as a whole object; name its fields "
                f"({entry['name']}.plan, ...) or use --format json"
            )
    return problems


class ExportJob:
    """The source of tenant mode: start (or reuse) an export job, wait for it, stream its file."""

    def __init__(
        self,
        client: Callable[[], Auth0Client],
        *,
        job_id: str | None,
        connection: str | None,
        fields: list[dict[str, str]],
        limit: int | None,
        format: str,
        quiet: bool,
    ) -> None:
        self.make_client = client
        self.client: Auth0Client | None = None
        self.job_id = job_id
        self.connection = connection
        self.fields = fields
        self.limit = limit
        self.format = format
        self.quiet = quiet
        self.count = 0

    def records(self, policy: ErrorPolicy, position: Position) -> Records:
        progress = JobProgress(NAME, enabled=not self.quiet)
        self.client = client = self.make_client()
        try:
            job_id = self.job_id or self._start()
            try:
                client.poll_job(job_id, progress)
            finally:
                progress.close()
            download = DownloadProgress(f"ndpipe {NAME}: job {job_id}", enabled=not self.quiet)
            _watch_downloads(client, download.response)
            stream = client.open_export(job_id)
            try:
                yield from self._counted(
                    download,
                    read_stream(
                        stream,
                        f"export job {job_id}",
                        policy,
                        position,
                        # A csv job is Auth0-escaped CSV; read it back into typed values.
                        other=partial(read_csv, style="auth0", nest=False),
                    ),
                )
            except RemoteError as error:
                if isinstance(error, Refused):
                    raise
                error.message += (
                    f" (Auth0 keeps the file for 24 hours: `ndpipe fetch --job {job_id}` "
                    "downloads it again)"
                )
                raise
            finally:
                download.close(self.count)
                stream.close()
            if not self.quiet:
                warn(NAME, f"export job {job_id}: {plural(self.count, 'user')}")
        finally:
            client.close()

    def _counted(self, download: DownloadProgress, records: Records) -> Iterator[Any]:
        for record in records:
            self.count += 1
            if not self.count % CHECK_EVERY:  # the clock is read only every CHECK_EVERY users
                download.update(self.count)
            yield record

    def _start(self) -> str:
        assert self.client is not None
        connection_id = None
        if self.connection:
            connection_id = self.client.resolve_connection(self.connection)
        job = self.client.start_export(
            connection_id, format=self.format, fields=self.fields or None, limit=self.limit
        )
        if not self.quiet:
            what = f"connection {self.connection}" if self.connection else "all connections"
            warn(NAME, f"started export job {job['id']} ({what}, {self.format})")
        return str(job["id"])


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
            check_export_fields(entries, fields_file)
        except UsageError as error:
            raise click.BadParameter(str(error), param_hint="--fields-file") from None
        chosen += [dict(entry) for entry in entries]
    if format_ == "csv" and not quiet:
        for problem in csv_problems(chosen):
            warn(NAME, problem)
    check_tenant(tenant)
    job = ExportJob(
        # The client is made when the run starts, after the whole command line is checked.
        lambda: open_client(NAME, tenant, quiet=quiet),
        job_id=job_id,
        connection=connection,
        fields=chosen,
        limit=SAMPLE_SIZE if sample else limit,
        format=format_,
        quiet=quiet,
    )
    return Stage(NAME, source=job.records, on_error=on_error)


def _watch_downloads(client: Auth0Client, hook: Callable[[Any], None]) -> None:
    """Let HOOK see each download response (its size, the bytes received so far)."""
    # The download client is the one without the token; httpx calls response hooks as soon
    # as the headers arrive, before the body is read.
    hooks = getattr(getattr(client, "_download", None), "event_hooks", None)
    if isinstance(hooks, dict):
        hooks.setdefault("response", []).append(hook)


def _field(ctx: click.Context, param: click.Parameter, text: str) -> dict[str, str]:
    try:
        return parse_export_field(text)
    except UsageError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None
