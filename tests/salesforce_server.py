"""A loopback Salesforce org for tests: real HTTP on 127.0.0.1, standard library only.

It implements what /work/shared/CRM.md §2 documents about the calls to-salesforce makes: the
client-credentials token at /services/oauth2/token (§2.2: access_token and instance_url, no
expires_in), and Bulk API 2.0 ingest jobs (§2.3): create (JSON) -> Open job with contentUrl,
one CSV upload (PUT text/csv, 100 MB raw at most), close (PATCH UploadComplete) or abort
(PATCH Aborted), job info through Open -> UploadComplete -> InProgress -> JobComplete (or Failed,
Aborted) with numberRecordsProcessed/Failed, and the three result files, in an order that is
not the input's (seeded shuffle), gzip-compressed when the client accepts it.

Rows are applied as an org would (§2.4, §2.6): an unknown header fails the whole job
("InvalidBatch : Field name not found : X"); insert and an upsert that inserts need the
object's required fields (LastName; Company on a Lead); update needs an existing Id; upsert
matches on the external id; one external id twice in a job fails those rows
(DUPLICATE_EXTERNAL_ID); an empty cell leaves a field unchanged and `#N/A` clears it; values
longer than the field fail (STRING_TOO_LONG); a bad Email fails (INVALID_EMAIL_ADDRESS);
`server.reject(field, value, ...)` adds a validation rule a test can steer.

Points the docs leave open ([?] in CRM.md) are decided here as the strictest reading, so that a
client that passes here also passes against the real thing:
- at most one upload per job: a second PUT is refused with the message Salesforce gives
  ("Found multiple contents for job ..."), and the upload limit is per job, 100 MB raw;
- an upload must carry Content-Length: chunked transfer encoding is refused (411);
- result files quote every value, and list rows shuffled.

It is deterministic: a closed job advances one state each time it is read
(`timeline`), ids and shuffles come from a seeded generator. Faults are switched on per test
through `server.faults`: an expired session (401 INVALID_SESSION_ID), 5xx pages, dropped
connections, REQUEST_LIMIT_EXCEEDED (concurrent, or the 24-hour TotalRequests), a stalled
request, an error that echoes the credentials, a job that fails part-way. Every request is kept
in `server.log`; a token in a query string is a server error that `check()` raises, and
`open_jobs()` lists the jobs a client left Open.

    with FakeSalesforce() as server:
        server.faults.expire_session(1, method="PUT")
        ... run to-salesforce with SF_INSTANCE_URL=server.base_url, SF_CLIENT_ID=server.client_id,
            SF_CLIENT_SECRET=server.client_secret ...
        assert server.open_jobs() == []
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from tests import fake_service
from tests.fake_service import HTTPError, LoggedRequest

MAX_UPLOAD = 100_000_000  # raw bytes per job (150 MB once base64-encoded, CRM.md §2.3)
MIN_VERSION = 41.0  # Bulk API 2.0 ingest exists since v41.0
API_PATH = re.compile(r"^/services/data/v(\d+\.\d)(/.*)?$")
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TERMINAL = ("JobComplete", "Failed", "Aborted")
NULL = "#N/A"

# field -> maximum length (0: none); the standard fields' lengths are Salesforce's.
CONTACT_FIELDS = {
    "Id": 18,
    "FirstName": 40,
    "LastName": 80,
    "Email": 80,
    "Phone": 40,
    "MobilePhone": 40,
    "Title": 128,
    "Department": 80,
    "LeadSource": 40,
    "Description": 32000,
    "MailingCity": 40,
    "MailingCountry": 80,
    "Birthdate": 0,
    "HasOptedOutOfEmail": 0,
    "Auth0_User_Id__c": 255,
    "Auth0_Connection__c": 255,
    "Auth0_Created_At__c": 0,
    "Auth0_Last_Login__c": 0,
    "Auth0_Logins_Count__c": 0,
    "Auth0_Email_Verified__c": 0,
    "Auth0_Plan__c": 255,
    "Auth0_Country__c": 255,
    "Auth0_Nickname__c": 255,
}
LEAD_FIELDS = {
    **{name: size for name, size in CONTACT_FIELDS.items() if not name.startswith("Mailing")},
    "Company": 255,
    "Status": 40,
    "City": 40,
    "Country": 80,
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


@dataclass
class SObject:
    """An object of the org: its fields (name -> maximum length), required fields on create,
    the fields an upsert may match on, and its records (Id -> {field: value})."""

    name: str
    fields: dict[str, int]
    required: tuple[str, ...]
    external_ids: tuple[str, ...]
    prefix: str
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    index: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def field_named(self, name: str) -> str | None:
        """Field names are case-insensitive, as in Salesforce."""
        for known in self.fields:
            if known.lower() == name.lower():
                return known
        return None

    def find(self, external_id: str, value: str) -> list[str]:
        return sorted(self.index.get((external_id, value), ()))

    def set(self, record_id: str, name: str, value: str | None) -> None:
        """Set (or with None, clear) a field, keeping the external-id index current."""
        record = self.records[record_id]
        if name in self.external_ids and name in record:
            self.index.get((name, record[name]), set()).discard(record_id)
        if value is None:
            record.pop(name, None)
            return
        record[name] = value
        if name in self.external_ids:
            self.index.setdefault((name, value), set()).add(record_id)


@dataclass
class Job:
    id: str
    object: str
    operation: str
    external_id: str | None
    line_ending: str
    delimiter: str
    api_version: str
    created: str
    state: str = "Open"
    polls: int = 0
    data: bytes | None = None
    uploads: int = 0
    failure: tuple[str, int] | None = None  # forced by a fault: (errorMessage, rows processed)
    error_message: str | None = None
    processed: int = 0
    failed: int = 0
    header: list[str] = field(default_factory=list)
    successes: list[list[str]] = field(default_factory=list)  # [sf__Id, sf__Created, *row]
    failures: list[list[str]] = field(default_factory=list)  # [sf__Id, sf__Error, *row]
    unprocessed: list[list[str]] = field(default_factory=list)
    history: list[str] = field(default_factory=lambda: ["Open"])

    def info(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": "005000000000001AAA",
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "contentUrl": f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.delimiter,
            "jobType": "V2Ingest",
            "numberRecordsProcessed": self.processed,
            "numberRecordsFailed": self.failed,
            "retries": 0,
            "totalProcessingTime": 40 * self.processed,
            "apiActiveProcessingTime": 30 * self.processed,
            "apexProcessingTime": 0,
        }
        if self.external_id:
            body["externalIdFieldName"] = self.external_id
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body


# --- faults ----------------------------------------------------------------------------------


class Faults(fake_service.Faults):
    """Faults a test switches on; each applies to the next COUNT matching requests (a regular
    expression searched in the path, and a method), in order; count=None lasts until clear()."""

    server_error_status = 503

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__(lock)
        self.failing_jobs: list[tuple[str, int]] = []

    def request_limit(
        self,
        count: int | None = 1,
        *,
        daily: bool = False,
        method: str | None = None,
        path: str | None = None,
        after: int = 0,
    ) -> None:
        """403 REQUEST_LIMIT_EXCEEDED: the org's concurrent long-request limit, or with
        `daily` its rolling 24-hour API request allocation (TotalRequests); once AFTER matching
        requests have been answered."""
        self._add("limit", count, path, method, after, daily=daily)

    def stall(
        self,
        seconds: float,
        count: int | None = 1,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Hold the next matching requests for SECONDS before answering them (a slow upload);
        `server.stalled` is set when one starts waiting."""
        self._add("stall", count, path, method, seconds=seconds)

    def echo_credentials(
        self, count: int | None = 1, *, method: str | None = None, path: str | None = None
    ) -> None:
        """Answer 400 with an error that quotes the Authorization header and the body, as a
        careless proxy does."""
        self._add("echo", count, path, method)

    def expire_session(
        self, count: int | None = 1, *, method: str | None = None, path: str | None = None
    ) -> None:
        """End every session just before the next matching request is read (it gets 401)."""
        self._add("expire", count, path, method)

    def fail_next_job(
        self, message: str = "InternalServerError : internal error", *, processed: int = 0
    ) -> None:
        """The next job closed ends Failed with MESSAGE after processing its first PROCESSED
        rows (the rest are unprocessed)."""
        with self._lock:
            self.failing_jobs.append((message, processed))

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self.failing_jobs.clear()

    def matches(self, rule: fake_service.FaultRule, method: str, path: str) -> bool:
        if rule.method is not None and rule.method != method:
            return False
        return rule.path is None or re.search(rule.path, path) is not None


# --- errors ----------------------------------------------------------------------------------


def api_error(status: int, code: str, message: str) -> HTTPError:
    """Salesforce's REST error shape: a list of {errorCode, message}."""
    return HTTPError(status, [{"errorCode": code, "message": message}])


# --- the org ---------------------------------------------------------------------------------


class FakeSalesforce(fake_service.FakeService):
    """A Salesforce org behind a real HTTP server on 127.0.0.1 (a random free port).

    State: `objects` (name -> SObject with its records), `jobs`. Knobs: `timeline` (states a
    closed job shows on successive reads before it ends), `max_upload` (bytes per job),
    `instance_url` (where the token answer sends the client), `seed`. `open_jobs()` lists
    jobs left Open; `requests()` filters the log.
    """

    title = "fake Salesforce"
    json_content_type = "application/json;charset=UTF-8"
    internal_error_body: ClassVar[Any] = [{"errorCode": "UNKNOWN_EXCEPTION", "message": "bug"}]

    def __init__(
        self,
        *,
        client_id: str = "3MVG9ndpipeTestConsumerKey000000000000000001",
        client_secret: str = "sfS3cr3t-ndpipe-test-consumer-secret-do-not-print",
        seed: int = 7,
    ) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret)
        self.timeline = ["UploadComplete", "InProgress"]
        self.max_upload = MAX_UPLOAD
        self.instance_url: str | None = None  # what the token answer names, if not base_url
        self.faults = Faults(self.lock)
        self.tokens: set[str] = set()
        self.tokens_issued = 0
        self.jobs: dict[str, Job] = {}
        self.rules: list[tuple[str, str, str, str]] = []  # (object, field, value, error)
        self.stalled = threading.Event()
        self._random = random.Random(seed)
        self.objects: dict[str, SObject] = {}
        self.add_object(
            "Contact",
            CONTACT_FIELDS,
            required=("LastName",),
            external_ids=("Auth0_User_Id__c", "Email"),
            prefix="003",
        )
        self.add_object(
            "Lead",
            LEAD_FIELDS,
            required=("LastName", "Company"),
            external_ids=("Auth0_User_Id__c", "Email"),
            prefix="00Q",
        )

    @property
    def base_url(self) -> str:
        """The org's My Domain URL, as a test passes it to --instance-url."""
        return f"http://127.0.0.1:{self.port}"

    # -- set-up and inspection --

    def add_object(
        self,
        name: str,
        fields: dict[str, int],
        *,
        required: tuple[str, ...] = (),
        external_ids: tuple[str, ...] = (),
        prefix: str = "a00",
    ) -> SObject:
        self.objects[name] = SObject(name, dict(fields), required, external_ids, prefix)
        return self.objects[name]

    def reject(self, object: str, field: str, value: str, error: str) -> None:
        """A validation rule: rows of OBJECT whose FIELD is VALUE fail with ERROR (sf__Error)."""
        self.rules.append((object, field, value, error))

    def issue_token(self) -> str:
        with self.lock:
            self.tokens_issued += 1
            token = f"00D000000000001!AQ{self.tokens_issued:04d}" + self._id("", 40)
            self.tokens.add(token)
            return token

    def expire_tokens(self) -> None:
        """Every session issued so far is over: 401 INVALID_SESSION_ID from now on."""
        with self.lock:
            self.tokens.clear()

    def records(self, object: str = "Contact") -> list[dict[str, str]]:
        with self.lock:
            return [dict(rec, Id=rid) for rid, rec in self.objects[object].records.items()]

    def open_jobs(self) -> list[Job]:
        with self.lock:
            return [job for job in self.jobs.values() if job.state == "Open"]

    def path_matches(self, request: LoggedRequest, path: str) -> bool:
        return path in request.path  # `requests("PATCH", "/jobs/ingest/")`

    def secrets(self) -> set[str]:
        with self.lock:
            return {self.client_secret, *self.tokens}

    def _id(self, prefix: str, length: int) -> str:
        return prefix + "".join(self._random.choice(ID_ALPHABET) for _ in range(length))

    # -- dispatch --

    def read_body(self, handler: fake_service.ServiceHandler, entry: LoggedRequest) -> bytes:
        if "chunked" in (entry.header("transfer-encoding") or "").lower():
            handler.close_connection = True
            raise api_error(411, "LENGTH_REQUIRED", "Content-Length is required")
        return super().read_body(handler, entry)

    @property
    def body_limit(self) -> int:  # type: ignore[override]
        return self.max_upload

    def oversized(self, length: int) -> bytes:
        raise api_error(
            413,
            "REQUEST_TOO_LARGE",
            f"The upload of {length} bytes exceeds the limit of {self.max_upload} bytes",
        )

    def server_error(self, status: int) -> HTTPError:
        page = b"<html><body>Service Unavailable</body></html>"
        return HTTPError(status, page, {"Content-Type": "text/html"})

    def route(
        self, handler: fake_service.ServiceHandler, request: LoggedRequest, body: bytes
    ) -> None:
        path, method = request.path, request.method
        if "access_token" in request.query or "token" in request.query.lower():
            raise AssertionError("a token was sent in a URL")  # becomes an internal error
        rule = self.common_fault(handler, self.faults.take(method, path))
        if rule is not None:
            self._fault(request, rule)
        if path == "/services/oauth2/token" and method == "POST":
            return self.reply(handler, request, 200, self._token(request))
        match = API_PATH.match(path)
        if match is None:
            raise api_error(404, "NOT_FOUND", "The requested resource does not exist")
        version, rest = match.group(1), (match.group(2) or "").rstrip("/")
        self._authorize(request)
        if float(version) < MIN_VERSION or float(version) > 70.0:
            raise api_error(404, "NOT_FOUND", "The requested resource does not exist")
        parts = rest.split("/")[1:]
        if parts[:2] != ["jobs", "ingest"]:
            raise api_error(404, "NOT_FOUND", "The requested resource does not exist")
        parts = parts[2:]
        if not parts and method == "POST":
            return self.reply(handler, request, 200, self._create(request, version))
        if not parts:
            raise api_error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
        with self.lock:
            job = self.jobs.get(parts[0])
        if job is None:
            raise api_error(404, "NOT_FOUND", "The requested resource does not exist")
        if len(parts) == 1 and method == "GET":
            return self.reply(handler, request, 200, self._read(job))
        if len(parts) == 1 and method == "PATCH":
            return self.reply(handler, request, 200, self._patch(job, request))
        if parts[1:] == ["batches"] and method == "PUT":
            self._upload(job, request)
            return self.reply(handler, request, 201, None)
        kinds = ("successfulResults", "failedResults", "unprocessedrecords")
        if len(parts) == 2 and parts[1] in kinds and method == "GET":
            return self._results(handler, request, job, parts[1])
        raise api_error(404, "NOT_FOUND", "The requested resource does not exist")

    def _fault(self, request: LoggedRequest, rule: fake_service.FaultRule) -> None:
        if rule.kind == "expire":
            self.expire_tokens()
            return
        if rule.kind == "stall":
            self.stalled.set()
            time.sleep(rule.params["seconds"])
            return
        if rule.kind == "echo":
            raise api_error(400, "INVALID_FIELD", request.echo(body_limit=2000))
        if rule.kind == "limit":
            what = "TotalRequests" if rule.params["daily"] else "ConcurrentPerOrgLongTxn"
            raise api_error(403, "REQUEST_LIMIT_EXCEEDED", f"{what} Limit exceeded.")

    # -- token --

    def _token(self, request: LoggedRequest) -> dict[str, Any]:
        content_type = request.header("content-type") or ""
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise HTTPError(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "must use application/x-www-form-urlencoded",
                },
            )
        params = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        if params.get("grant_type") != "client_credentials":
            raise HTTPError(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
            )
        if params.get("client_id") != self.client_id:
            raise HTTPError(
                400,
                {"error": "invalid_client_id", "error_description": "client identifier invalid"},
            )
        if params.get("client_secret") != self.client_secret:
            raise HTTPError(
                400, {"error": "invalid_client", "error_description": "invalid client credentials"}
            )
        token = self.issue_token()
        return {
            "access_token": token,
            "signature": "ndpipeFakeSignature000000000000000000000000=",
            "scope": "api",
            "instance_url": self.instance_url or self.base_url,
            "id": f"{self.base_url}/id/00D000000000001AAA/005000000000001AAA",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
        }

    def _authorize(self, request: LoggedRequest) -> None:
        header = request.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        with self.lock:
            valid = scheme == "Bearer" and token in self.tokens
        if not valid:
            raise api_error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    # -- jobs --

    def _create(self, request: LoggedRequest, version: str) -> dict[str, Any]:
        if not (request.header("content-type") or "").startswith("application/json"):
            raise api_error(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be JSON")
        try:
            body = json.loads(request.body)
        except ValueError:
            raise api_error(400, "JSON_PARSER_ERROR", "Unexpected character") from None
        name = body.get("object")
        operation = body.get("operation")
        if name not in self.objects:
            raise api_error(400, "INVALIDJOB", f"InvalidJob : Unable to find object: {name}")
        if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
            raise api_error(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        external = body.get("externalIdFieldName")
        if operation == "upsert":
            sobject = self.objects[name]
            if not external:
                raise api_error(400, "INVALIDJOB", "InvalidJob : External ID was blank for upsert")
            if sobject.field_named(external) not in sobject.external_ids:
                raise api_error(
                    400,
                    "INVALIDJOB",
                    (
                        f"InvalidJob : Field name provided, {external} does not match an External "
                        f"ID, Salesforce Id, or indexed field for {name}"
                    ),
                )
        if body.get("contentType", "CSV") != "CSV":
            raise api_error(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        line_ending = body.get("lineEnding", "LF")
        delimiter = body.get("columnDelimiter", "COMMA")
        if line_ending not in ("LF", "CRLF") or delimiter != "COMMA":
            raise api_error(400, "INVALIDJOB", "InvalidJob : unsupported format")
        with self.lock:
            job = Job(
                self._id("7505g00000", 8),
                name,
                operation,
                external,
                line_ending,
                delimiter,
                version,
                now_iso(),
            )
            self.jobs[job.id] = job
            return job.info()

    def _upload(self, job: Job, request: LoggedRequest) -> None:
        if not (request.header("content-type") or "").startswith("text/csv"):
            raise api_error(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be text/csv")
        with self.lock:
            if job.state != "Open":
                raise api_error(409, "INVALIDJOBSTATE", f"Job {job.id} is not Open")
            job.uploads += 1
            if job.uploads > 1:
                raise api_error(
                    400,
                    "BULK_API_ERROR",
                    (
                        f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / "
                        "'Delete' the current Job then create a new Job and make sure you only do "
                        "'PUT' once on a given Job."
                    ),
                )
            job.data = request.body

    def _patch(self, job: Job, request: LoggedRequest) -> dict[str, Any]:
        try:
            state = json.loads(request.body).get("state")
        except (ValueError, AttributeError):
            raise api_error(400, "JSON_PARSER_ERROR", "Unexpected character") from None
        with self.lock:
            if state == "UploadComplete":
                if job.state != "Open":
                    raise api_error(
                        409, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}, not Open"
                    )
                job.state = "UploadComplete"
                if self.faults.failing_jobs:
                    job.failure = self.faults.failing_jobs.pop(0)
            elif state == "Aborted":
                if job.state in TERMINAL:
                    raise api_error(409, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}")
                job.state = "Aborted"
                self._finish(job, aborted=True)
            else:
                raise api_error(400, "INVALIDJOBSTATE", f"Invalid state: {state}")
            job.history.append(job.state)
            return job.info()

    def _read(self, job: Job) -> dict[str, Any]:
        with self.lock:
            if job.state not in TERMINAL and job.state != "Open":
                job.polls += 1
                if job.polls >= len(self.timeline):
                    self._finish(job)
                else:
                    job.state = self.timeline[job.polls]
                if job.history[-1] != job.state:
                    job.history.append(job.state)
            return job.info()

    def _finish(self, job: Job, aborted: bool = False) -> None:
        """Process the job's rows (on its last read), or none of them (aborted)."""
        rows, problem = self._parse(job)
        job.header = rows[0] if rows else []
        data = rows[1:]
        if aborted or problem:
            job.state = "Aborted" if aborted else "Failed"
            job.error_message = problem
            job.unprocessed = data
            return
        limit = len(data)
        if job.failure is not None:
            job.error_message, limit = job.failure[0], min(job.failure[1], len(data))
        self._apply(job, data[:limit])
        job.unprocessed = data[limit:]
        job.state = "Failed" if job.failure is not None else "JobComplete"

    def _parse(self, job: Job) -> tuple[list[list[str]], str | None]:
        if job.data is None:
            return [], "InvalidBatch : No data was uploaded for this job"
        try:
            text = job.data.decode("utf-8")
        except UnicodeDecodeError:
            return [], "InvalidBatch : The data is not valid UTF-8"
        ending = "\r\n" if job.line_ending == "CRLF" else "\n"
        if not text.endswith(ending):
            return [], (
                "InvalidBatch : LineEnding is invalid on user data. Current LineEnding "
                f"setting is {job.line_ending}"
            )
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error as error:
            return [], f"InvalidBatch : Failed to parse CSV: {error}"
        if not rows:
            return [], "InvalidBatch : No data was uploaded for this job"
        sobject = self.objects[job.object]
        for name in rows[0]:
            if sobject.field_named(name) is None:
                return rows, f"InvalidBatch : Field name not found : {name}"
        if len(set(name.lower() for name in rows[0])) != len(rows[0]):
            return rows, "InvalidBatch : Duplicate field name in the header"
        if job.operation == "upsert" and job.external_id not in rows[0]:
            return rows, f"InvalidBatch : Field {job.external_id} must be in the header"
        for row in rows[1:]:
            if len(row) != len(rows[0]):
                return rows, "InvalidBatch : Number of columns does not match the header"
        return rows, None

    def _apply(self, job: Job, data: list[list[str]]) -> None:
        sobject = self.objects[job.object]
        header = [sobject.field_named(name) or name for name in job.header]
        external = sobject.field_named(job.external_id or "") if job.external_id else None
        seen: dict[str, int] = {}
        if external is not None:
            index = header.index(external)
            for row in data:
                seen[row[index]] = seen.get(row[index], 0) + 1
        for row in data:
            job.processed += 1
            values = dict(zip(header, row, strict=True))
            error, record_id, created = self._apply_row(job, sobject, values, external, seen)
            if error is None:
                job.successes.append([record_id, "true" if created else "false", *row])
            else:
                job.failed += 1
                job.failures.append([record_id, error, *row])

    def _apply_row(
        self,
        job: Job,
        sobject: SObject,
        values: dict[str, str],
        external: str | None,
        seen: dict[str, int],
    ) -> tuple[str | None, str, bool]:
        for name, value in values.items():
            limit = sobject.fields[name]
            if limit and len(value) > limit:
                return (
                    f"STRING_TOO_LONG:{name}: data value too large: {value[:40]} "
                    f"(max length={limit}):{name} --",
                    "",
                    False,
                )
        email = values.get("Email")
        if email and email != NULL and not EMAIL.match(email):
            return (
                f"INVALID_EMAIL_ADDRESS:Email: invalid email address: {email}:Email --",
                "",
                False,
            )
        for rule_object, rule_field, value, error in self.rules:
            if rule_object == sobject.name and values.get(rule_field) == value:
                return error, "", False
        record_id: str | None = None
        if job.operation == "update":
            record_id = values.get("Id") or None
            if record_id is None:
                return "MISSING_ARGUMENT:Id not specified in an update call:--", "", False
            if record_id not in sobject.records:
                return ("INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--", "", False)
        elif job.operation == "upsert":
            assert external is not None
            key = values.get(external, "")
            if not key:
                return f"MISSING_ARGUMENT:{external} not specified:--", "", False
            if seen.get(key, 0) > 1:
                return (
                    f"DUPLICATE_EXTERNAL_ID:Duplicate external id specified: {key}:{external} --",
                    "",
                    False,
                )
            matches = sobject.find(external, key)
            if len(matches) > 1:
                return (
                    f"DUPLICATE_EXTERNAL_ID:{external}: more than one record found for "
                    f"external id field: {matches}:--",
                    "",
                    False,
                )
            record_id = matches[0] if matches else None
        created = record_id is None
        if created:
            for name in sobject.required:
                if values.get(name, "") in ("", NULL):
                    return (
                        f"REQUIRED_FIELD_MISSING:Required fields are missing: [{name}]:{name} --",
                        "",
                        False,
                    )
            record_id = self._id(sobject.prefix + "5g00000", 8)
            sobject.records[record_id] = {}
        else:
            for name in sobject.required:
                if values.get(name) == NULL:
                    return (
                        f"REQUIRED_FIELD_MISSING:Required fields are missing: [{name}]:{name} --",
                        record_id or "",
                        False,
                    )
        assert record_id is not None
        for name, value in values.items():
            if name == "Id" or value == "":
                continue  # an empty cell leaves the field as it is
            sobject.set(record_id, name, None if value == NULL else value)
        return None, record_id, created

    # -- results --

    def _results(
        self, handler: fake_service.ServiceHandler, request: LoggedRequest, job: Job, kind: str
    ) -> None:
        with self.lock:
            if job.state not in TERMINAL:
                raise api_error(
                    409, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}: results are not ready"
                )
            if kind == "successfulResults":
                head, rows = ["sf__Id", "sf__Created"], list(job.successes)
            elif kind == "failedResults":
                head, rows = ["sf__Id", "sf__Error"], list(job.failures)
            else:
                head, rows = [], list(job.unprocessed)
            self._random.shuffle(rows)
            header = head + job.header
        text = io.StringIO(newline="")
        writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)
        data = text.getvalue().encode()
        headers = {"Content-Type": "text/csv", "Sforce-Locator": "null"}
        if "gzip" in (request.header("accept-encoding") or ""):
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self.reply(handler, request, 200, data, headers)


def csv_rows(data: bytes) -> list[dict[str, str]]:
    """A CSV (as uploaded) as dicts, for tests."""
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))
