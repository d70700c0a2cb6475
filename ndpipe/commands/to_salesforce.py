"""to-salesforce: records into a Salesforce org through Bulk API 2.0 ingest jobs.

The click wrapper: credentials and options are checked while the command line is parsed (exit 2
before anything is read); the run (records checked, packed into CSV files, one job per file,
results joined back to the records, the report and the summary) is
ndpipe.ops.push.SalesforcePush.
"""

from __future__ import annotations

import os
import re
from typing import Any

import click

from ndpipe.commands import setting_option, usage, verb
from ndpipe.commands.push_options import byte_limit, push_options, push_stage
from ndpipe.errors import UsageError
from ndpipe.ops.push import PushSettings, SalesforcePush
from ndpipe.pipeline import Stage
from ndpipe.progress import progress_interval
from ndpipe.services.jobs import poll_interval

NAME = "to-salesforce"
# Salesforce takes 150 MB of base64 per job upload, which is 100 MB of raw CSV (CRM.md §2.3).
MAX_UPLOAD = 100_000_000
DEFAULT_MAX_BYTES = "90MB"
MIN_UPLOAD = 100
# An API name: Contact, Lead, Auth0_User_Id__c, ns__Thing__c.
API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
URL_EXAMPLES = "https://MyCompany.my.salesforce.com, or http://127.0.0.1:8080 for a test"


def _api_name(what: str) -> Any:
    def check(text: str | None) -> str | None:
        if text is not None and not API_NAME.fullmatch(text):
            raise UsageError(
                f"{text!r} is not a Salesforce API name ({what}: letters, digits and _, "
                "starting with a letter)"
            )
        return text

    return check


def _api_version(text: str) -> str:
    from ndpipe.services.salesforce.client import api_version

    return api_version(text)


@verb(NAME)
@click.argument("files", nargs=-1, metavar="[FILE]...")
@setting_option(
    "--instance-url",
    envvar="SF_INSTANCE_URL",
    kind="url",
    metavar="URL",
    examples=URL_EXAMPLES,
    help="The org's My Domain URL (https://MyCompany.my.salesforce.com; a sandbox's is "
    "https://MyCompany--Sandbox.sandbox.my.salesforce.com).",
)
@setting_option(
    "--client-id",
    envvar="SF_CLIENT_ID",
    kind="id",
    metavar="KEY",
    help="The consumer key of an app with the client credentials flow (and a Run As user).",
)
@setting_option(
    "--client-secret",
    envvar="SF_CLIENT_SECRET",
    kind="secret",
    metavar="SECRET",
    help="Its consumer secret; prefer the environment, which `ps` does not show.",
)
@setting_option(
    "--token",
    envvar="SF_ACCESS_TOKEN",
    kind="token",
    metavar="TOKEN",
    help="A ready access token instead of the client credentials (it cannot be renewed when "
    "it expires).",
)
@click.option(
    "--api-version",
    "version",
    metavar="N.0",
    default="62.0",
    show_default=True,
    callback=usage(_api_version),
    help="The REST API version to call (41.0 or later).",
)
@click.option(
    "--object",
    "object_name",
    metavar="NAME",
    callback=usage(_api_name("an object")),
    help="The object to load: Contact, Lead, or a custom object's API name. Required, except "
    "with --dry-run.",
)
@click.option(
    "--operation",
    type=click.Choice(["insert", "update", "upsert"]),
    default="upsert",
    show_default=True,
    help="insert creates records; update changes records named by an Id column; upsert "
    "creates or updates records matched on --external-id.",
)
@click.option(
    "--external-id",
    metavar="FIELD",
    callback=usage(_api_name("a field")),
    help="The External ID field an upsert matches on (Auth0_User_Id__c); every record must "
    "have a value for it. Required with upsert.",
)
@click.option(
    "--null-as-na",
    is_flag=True,
    help="Send null values as #N/A, which clears the field on update and upsert (an empty "
    "cell, what null is otherwise, leaves the field as it is).",
)
@push_options(
    NAME,
    report_help='Write each record that failed as NDJSON: {"record": {...as read...}, "input": '
    '"stdin:12", "job": "750...", "reason": "Salesforce\'s sf__Error"}. Give the file back '
    "to to-salesforce (after fixing the records) to send them again. Without it, failures "
    "go to stderr.",
    max_bytes=DEFAULT_MAX_BYTES,
    limit=byte_limit(MIN_UPLOAD, MAX_UPLOAD, "Salesforce takes at most 100 MB of CSV per job"),
    max_bytes_help="The largest CSV file to send as one job; at most 100MB.",
    what="CSV file",
    example="salesforce/contacts-{n:04d}.csv",
    unit="job",
)
def command(
    files: tuple[str, ...],
    instance_url: str | None,
    client_id: str | None,
    client_secret: str | None,
    token: str | None,
    version: str,
    object_name: str | None,
    operation: str,
    external_id: str | None,
    null_as_na: bool,
    push: PushSettings,
    on_error: str,
) -> Stage:
    """Load records into Salesforce through Bulk API 2.0 ingest jobs.

    Reads flat records whose keys are the object's API field names (Email,
    FirstName, LastName, Auth0_User_Id__c) as NDJSON on stdin or from FILEs;
    lines of an earlier --report are read as their records. They are sent as
    CSV files of at most --max-bytes, one ingest job each, one job at a time:
    create, upload, close (UploadComplete), poll until it ends, then read its
    results. A job is never left Open: on errors, Ctrl-C and SIGTERM it is
    aborted. Every record that failed, or was not processed, goes to the
    report with Salesforce's reason. The summary goes to stderr; the exit
    status is 1 if any record failed, 3 if Salesforce could not be reached
    (the message says how to resume with --start-at).

    \b
    Examples:
      ndpipe fetch export.json.gz then select --preset salesforce-contact \\
          'Auth0_User_Id__c=user_id' \\
        then to-salesforce --object Contact --external-id Auth0_User_Id__c \\
          --report failed.ndjson
      ndpipe to-salesforce --object Contact --external-id Auth0_User_Id__c failed.ndjson
      ndpipe to-salesforce --dry-run --out 'sf/contacts-{n:04d}.csv' \\
          --external-id Auth0_User_Id__c < contacts.ndjson
    """
    if operation == "upsert" and not external_id:
        raise click.UsageError(
            "an upsert matches records on an External ID field: give --external-id FIELD "
            "(e.g. Auth0_User_Id__c), or use --operation insert"
        )
    if operation != "upsert" and external_id:
        raise click.UsageError("--external-id is for --operation upsert only")
    if null_as_na and operation == "insert":
        raise click.UsageError("--null-as-na is for update and upsert (insert leaves nulls empty)")
    fixed_poll: float | None = None
    if not push.dry_run:
        if not object_name:
            raise click.UsageError("give --object NAME: the object to load (Contact, Lead, ...)")
        if not instance_url:
            raise UsageError(
                "no Salesforce instance: give --instance-url or set SF_INSTANCE_URL (the org's "
                "My Domain URL, https://MyCompany.my.salesforce.com)"
            )
        if not token and not (client_id and client_secret):
            raise UsageError(
                "no Salesforce credentials: give --client-id and --client-secret (or "
                "SF_CLIENT_ID and SF_CLIENT_SECRET), or a token (--token, SF_ACCESS_TOKEN)"
            )
        fixed_poll = poll_interval() if os.environ.get("NDPIPE_POLL_INTERVAL") else None
        progress_interval()
    run = SalesforcePush(
        push,
        instance_url=instance_url,
        client_id=client_id,
        client_secret=client_secret,
        token=token,
        version=version,
        fixed_poll=fixed_poll,
        object_name=object_name,
        operation=operation,
        external_id=external_id,
        null_as_na=null_as_na,
    )
    return push_stage(run, on_error)
