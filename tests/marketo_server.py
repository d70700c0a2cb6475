"""A loopback Marketo for tests: real HTTP on 127.0.0.1, standard library only.

It implements what /work/shared/CRM.md §1 documents about bulk lead import:

- identity: `GET|POST /identity/oauth/token?grant_type=client_credentials&client_id=&client_secret=`
  (query parameters, as the OpenAPI file declares them), answering a token whose `expires_in`
  is the time left; asking again before expiry returns the same token (§1.1). Identity calls
  are not counted against the limits.
- every other call needs `Authorization: Bearer TOKEN`; a token in the query (`access_token=`,
  the removed form) is refused. Errors are HTTP 200 with `"success": false` and string codes:
  600 no token, 601 invalid token, 602 expired token (§1.6).
- `POST /bulk/v1/leads.json?format=csv|tsv|ssv&lookupField=&listId=&partitionName=`, multipart
  with a part `file`: 413 from 10 MB, 1006 for a header that is not a known REST field name,
  1011 for a lookup field that cannot be one, 1013 for an unknown list, 1016 when 10 imports
  are queued or importing (§1.2, §1.3).
- `GET /bulk/v1/leads/batch/{id}.json`: a batch moves Queued -> Importing -> Complete, one step
  each time it is read, and never more than 2 batches Importing at once (a Queued batch waits
  for a slot). `max_importing` records the most ever Importing together (§1.4).
- `GET /bulk/v1/leads/batch/{id}/failures.json` and `warnings.json`: the uploaded rows in the
  upload's format plus an `Import Failure Reason` / `Import Warning Reason` column; 404 when
  there are none (§1.5).

Which rows fail: an empty or invalid lookup value (email), a string over 255 characters, a
value of a `datetime_fields` field that is not ISO 8601 with an offset, and any cell whose
value is in `fail_values` (a test marks rows that way). Rows with a value in `warn_values` are
imported with a warning. Imported rows are upserted into `leads`, keyed by the lookup field.

Faults a test switches on through `server.faults`: `code(...)` answers an error code (601, 602,
606, 607, 615, 1016, ...) to the next N matching calls, `status(...)` an HTTP status (5xx),
`hang_up(...)` closes the connection without answering, `fail_next_batch(...)` makes the next
batch end Failed, and `server.expire_token()` expires the current token. Every request is kept
in `server.log` (method, path, query, headers; bodies of uploads only by length).

Run it alone for a benchmark: `python -m tests.marketo_server` prints its URL and serves until
it is stopped.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests import fake_service
from tests.fake_service import HTTPError

BODY_LIMIT = 10 * 1024 * 1024
QUEUE_LIMIT = 10
IMPORTING_LIMIT = 2
TOKEN_TTL = 3600
DELIMITERS = {"csv": ",", "tsv": "\t", "ssv": ";"}
LOOKUP_FIELDS = {
    "email", "id", "cookies", "twitterId", "facebookId", "linkedInId", "sfdcAccountId",
    "sfdcContactId", "sfdcLeadId", "sfdcLeadOwnerId", "sfdcOpptyId",
}  # fmt: skip
# REST names of standard lead fields (a subset of GET /rest/v1/leads/describe.json).
STANDARD_FIELDS = {
    "email", "firstName", "lastName", "middleName", "salutation", "title", "company",
    "phone", "mobilePhone", "fax", "address", "city", "state", "country", "postalCode",
    "website", "industry", "leadSource", "leadStatus", "dateOfBirth", "id", "cookies",
    "twitterId", "facebookId", "linkedInId", "sfdcAccountId", "sfdcContactId", "sfdcLeadId",
    "sfdcLeadOwnerId", "sfdcOpptyId", "externalCompanyId", "externalSalesPersonId",
    "unsubscribed", "emailInvalid", "leadScore",
}  # fmt: skip
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
OFFSET_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?[+-]\d\d:\d\d$")
STRING_LIMIT = 255


@dataclass
class LoggedRequest(fake_service.LoggedRequest):
    """One request as the server received it; the upload body is kept only by its length."""

    code: str | None = None  # the Marketo error code answered, if any


@dataclass
class Batch:
    id: int
    format: str
    lookup: str
    list_id: int | None
    header: list[str]
    rows: list[list[str]]
    status: str = "Queued"
    message: str = ""
    fail_with: str | None = None  # a fault: the batch ends Failed with this message
    failures: list[list[str]] = field(default_factory=list)
    warnings: list[list[str]] = field(default_factory=list)
    processed: int = 0
    polls: int = 0


# Each fault takes keyword arguments path (a prefix), method, and after (how many matching
# calls are answered normally first).


class Faults(fake_service.Faults):
    """Faults a test switches on; each applies to the next COUNT matching calls (None: until
    `clear()`). Identity calls are matched only when PATH says so."""

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__(lock)
        self.failing_batches: list[str] = []

    def code(
        self,
        code: str,
        count: int | None = 1,
        *,
        message: str | None = None,
        path: str | None = None,
        method: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer HTTP 200, success false, with this Marketo error code."""
        self._add("code", count, path, method, after, code=code, message=message)

    def status(
        self, status: int = 502, count: int | None = 1, *, path: str | None = None,
        method: str | None = None, after: int = 0,
    ) -> None:  # fmt: skip
        """Answer this HTTP status (a gateway error page)."""
        self._add("status", count, path, method, after, status=status)

    def expire_token(
        self, count: int | None = 1, *, path: str | None = None, method: str | None = None,
        after: int = 0,
    ) -> None:  # fmt: skip
        """Expire the current token just before this call is handled (it gets 602)."""
        self._add("expire", count, path, method, after)

    def fail_next_batch(self, message: str = "Failed to import: unexpected error") -> None:
        with self._lock:
            self.failing_batches.append(message)

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self.failing_batches.clear()

    def matches(self, rule: fake_service.FaultRule, method: str, path: str) -> bool:
        if path.startswith("/identity") and rule.path is None:
            return False
        return super().matches(rule, method, path)


def _answer(status: int, body: Any, content_type: str = "application/json") -> HTTPError:
    return HTTPError(status, body, {"Content-Type": content_type})


def marketo_error(code: str, message: str) -> HTTPError:
    return _answer(
        200,
        {"requestId": f"{secrets.token_hex(2)}#{secrets.token_hex(5)}", "success": False,
         "errors": [{"code": code, "message": message}]},
    )  # fmt: skip


MESSAGES = {
    "601": "Access token invalid",
    "602": "Access token expired",
    "604": "Request timed out",
    "606": "Max rate limit '100' exceeded with in '20' secs",
    "607": "Daily quota reached",
    "608": "API Temporarily Unavailable",
    "611": "System error",
    "615": "Concurrent access limit reached",
    "713": "Transient Error",
    "1016": "Too many imports",
    "1019": "Import in progress",
    "603": "Access denied",
    "1018": "CRM Enabled",
}


class FakeMarketo(fake_service.FakeService):
    """A Marketo instance behind a real HTTP server on 127.0.0.1 (a random free port).

    Knobs: `token_ttl`, `custom_fields` (more REST names the header may use), `datetime_fields`,
    `fail_values` / `warn_values`, `lists` (static list ids), `partitions`, `queue_limit`,
    `steps` (status reads a batch spends Importing before it completes).
    """

    title = "fake Marketo"
    internal_error_body: ClassVar[Any] = {"error": "internal"}
    keep_bodies = False  # a benchmark sends hundreds of files
    body_limit = BODY_LIMIT

    def __init__(
        self,
        *,
        client_id: str = "5f0a1c2e-ndpipe-test-client-id-0001",
        client_secret: str = "mkto-s3cr3t-ndpipe-test-client-secret-do-not-print",
    ) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret)
        self.token_ttl = TOKEN_TTL
        self.custom_fields: set[str] = {"auth0UserId", "auth0CreatedAt", "auth0Connection"}
        self.datetime_fields: set[str] = {"auth0CreatedAt", "dateOfBirth"}
        self.fail_values: set[str] = set()
        self.warn_values: set[str] = set()
        self.lists: set[int] = {1001}
        self.partitions: set[str] = {"Default"}
        self.queue_limit = QUEUE_LIMIT
        self.steps = 1
        # Result files ("failures", "warnings") answered 404 although Marketo counted rows.
        self.missing_files: set[str] = set()
        self.faults = Faults(self.lock)
        self.leads: dict[str, dict[str, str]] = {}
        self.batches: dict[int, Batch] = {}
        self.max_importing = 0
        self.tokens_issued = 0
        self._token: str | None = None
        self._token_expires = 0.0
        self._old_tokens: set[str] = set()
        self._next_batch = 3404

    @property
    def endpoint(self) -> str:
        """What a user passes as --endpoint: the REST API endpoint, ending in /rest."""
        return f"{self.base_url}/rest"

    def env(self) -> dict[str, str]:
        return {
            "MARKETO_ENDPOINT": self.endpoint,
            "MARKETO_CLIENT_ID": self.client_id,
            "MARKETO_CLIENT_SECRET": self.client_secret,
        }

    # -- inspection --

    def secrets(self) -> set[str]:
        with self.lock:
            return {self.client_secret, *self._old_tokens, *([self._token] if self._token else [])}

    def url_secrets(self) -> set[str]:
        # The identity service takes the client credentials as query parameters (§1.1).
        return self.secrets() - {self.client_secret}

    def expire_token(self) -> None:
        """The current token expires now (the next call with it gets 602)."""
        with self.lock:
            self._token_expires = time.monotonic()

    @property
    def token(self) -> str | None:
        return self._token

    # -- dispatch --

    def new_entry(self, method: str, path: str, query: str, headers: dict[str, str]) -> Any:
        return LoggedRequest(method, path, query, headers)

    def logged_error(self, entry: LoggedRequest, error: HTTPError) -> None:
        if isinstance(error.body, dict) and error.body.get("success") is False:
            entry.code = error.body["errors"][0]["code"]

    def oversized(self, length: int) -> bytes:
        raise _answer(413, b"<html><body>413 Request Entity Too Large</body></html>", "text/html")

    def server_error(self, status: int) -> HTTPError:
        return _answer(status, b"<html>Bad Gateway</html>", "text/html")

    def route(
        self, handler: fake_service.ServiceHandler, request: LoggedRequest, body: bytes
    ) -> None:
        path, method = request.path, request.method
        if "//" in path:
            raise _answer(404, b"double slash", "text/plain")
        rule = self.faults.take(method, path)
        rule = self.common_fault(handler, rule)
        if rule is not None and rule.kind == "expire":
            self.expire_token()
            rule = None
        if rule is not None:
            code = rule.params["code"]
            if code in ("601", "602") or not path.startswith("/identity"):
                raise marketo_error(code, rule.params.get("message") or MESSAGES.get(code, "Error"))
        if path == "/identity/oauth/token" and method in ("GET", "POST"):
            raise _answer(200, self._identity(request))
        if not path.startswith("/bulk/v1/"):
            raise _answer(404, b"<html>Not Found</html>", "text/html")
        self._authorize(request)
        if path == "/bulk/v1/leads.json" and method == "POST":
            raise _answer(200, self._create(request, body))
        match = re.fullmatch(r"/bulk/v1/leads/batch/([0-9]+)(?:/(failures|warnings))?\.json", path)
        if match is None or method != "GET":
            raise _answer(404, b"<html>Not Found</html>", "text/html")
        batch = self.batches.get(int(match.group(1)))
        if batch is None:
            raise marketo_error("1013", "Object not found")
        if match.group(2) is None:
            raise _answer(200, self._status(batch))
        raise self._rows_file(batch, match.group(2))

    # -- identity --

    def _identity(self, request: LoggedRequest) -> dict[str, Any]:
        params = request.params()
        given = {name: (params.get(name) or [""])[0] for name in
                 ("grant_type", "client_id", "client_secret")}  # fmt: skip
        if given["grant_type"] != "client_credentials":
            raise _answer(400, {"error": "invalid_request", "error_description": "bad grant"})
        if given["client_id"] != self.client_id or given["client_secret"] != self.client_secret:
            raise _answer(401, {"error": "invalid_client",
                                "error_description": "Bad client credentials"})  # fmt: skip
        with self.lock:
            now = time.monotonic()
            if self._token is None or now >= self._token_expires:
                if self._token is not None:
                    self._old_tokens.add(self._token)
                self._token = (
                    f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}:ab"
                )
                self._token_expires = now + self.token_ttl
                self.tokens_issued += 1
            left = max(int(self._token_expires - now), 0)
            return {"access_token": self._token, "token_type": "bearer", "expires_in": left,
                    "scope": "apis@ndpipe.test"}  # fmt: skip

    def _authorize(self, request: LoggedRequest) -> None:
        if "access_token" in request.params():
            raise marketo_error("601", "Access token invalid (the query parameter is removed)")
        header = request.header("authorization") or ""
        if not header.startswith("Bearer "):
            raise marketo_error("600", "Access token not specified")
        token = header[len("Bearer ") :]
        with self.lock:
            if token != self._token:
                code = "602" if token in self._old_tokens else "601"
                raise marketo_error(code, MESSAGES[code])
            if time.monotonic() >= self._token_expires:
                raise marketo_error("602", MESSAGES["602"])

    # -- bulk import --

    def _create(self, request: LoggedRequest, body: bytes) -> dict[str, Any]:
        params = {name: values[0] for name, values in request.params().items()}
        file_format = params.get("format", "")
        if file_format not in DELIMITERS:
            raise marketo_error("1003", "Invalid format: must be csv, tsv or ssv")
        lookup = params.get("lookupField", "email")
        if lookup not in LOOKUP_FIELDS and lookup not in self.custom_fields:
            raise marketo_error("1011", f"Field '{lookup}' not supported")
        list_id = None
        if "listId" in params:
            list_id = int(params["listId"])
            if list_id not in self.lists:
                raise marketo_error("1013", "Object not found")
        partition = params.get("partitionName")
        if partition is not None and partition not in self.partitions:
            raise marketo_error("1013", f"Partition '{partition}' not found")
        content_type = request.header("content-type") or ""
        if not content_type.startswith("multipart/form-data"):
            raise marketo_error("612", "Invalid Content Type")
        data = (fake_service.form_parts(content_type, body) or {}).get("file")
        if data is None:
            raise marketo_error("613", "Invalid Multipart Request")
        text = data.decode("utf-8")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[file_format])
        header = next(reader, None) or []
        known = STANDARD_FIELDS | self.custom_fields
        for name in header:
            if name not in known:
                raise marketo_error("1006", f"Field '{name}' not found")
        rows = list(reader)
        with self.lock:
            active = [b for b in self.batches.values() if b.status in ("Queued", "Importing")]
            if len(active) >= self.queue_limit:
                raise marketo_error("1016", "Too many imports")
            batch = Batch(self._next_batch, file_format, lookup, list_id, header, rows)
            self._next_batch += 1
            if self.faults.failing_batches:
                batch.fail_with = self.faults.failing_batches.pop(0)
            self.batches[batch.id] = batch
        return {
            "requestId": f"{secrets.token_hex(2)}#{secrets.token_hex(5)}",
            "result": [{"batchId": batch.id, "importId": str(batch.id), "status": batch.status}],
            "success": True,
        }

    def _status(self, batch: Batch) -> dict[str, Any]:
        with self.lock:
            batch.polls += 1
            if batch.status == "Queued":
                importing = sum(1 for b in self.batches.values() if b.status == "Importing")
                if importing < IMPORTING_LIMIT:
                    batch.status = "Importing"
                    batch.polls = 0
                    self.max_importing = max(self.max_importing, importing + 1)
            elif batch.status == "Importing" and batch.polls >= self.steps:
                if batch.fail_with is not None:
                    batch.status = "Failed"
                    batch.message = batch.fail_with
                else:
                    self._import(batch)
            result: dict[str, Any] = {"batchId": batch.id, "importId": str(batch.id),
                                      "status": batch.status,
                                      "numOfLeadsProcessed": batch.processed,
                                      "numOfRowsFailed": len(batch.failures),
                                      "numOfRowsWithWarning": len(batch.warnings)}  # fmt: skip
            if batch.message:
                result["message"] = batch.message
        return {"requestId": "fake#status", "result": [result], "success": True}

    def _import(self, batch: Batch) -> None:
        """Apply the rows (upsert by the lookup field), sorting out failures and warnings."""
        imported = 0
        for cells in batch.rows:
            row = dict(zip(batch.header, cells, strict=False))
            reason = self._failure(batch, row)
            if reason is not None:
                batch.failures.append([*cells, reason])
                continue
            key = row.get(batch.lookup, "")
            if batch.lookup != "id" or key in self.leads:
                lead = self.leads.setdefault(key, {})
                lead.update({name: value for name, value in row.items()})
            imported += 1
            warned = [name for name, value in row.items() if value in self.warn_values]
            if warned:
                batch.warnings.append([*cells, f"Value for field '{warned[0]}' was truncated"])
        batch.processed = len(batch.rows)
        batch.rows = []  # kept no longer than needed: a benchmark sends hundreds of files
        batch.status = "Complete"
        batch.message = (
            f"Import completed with errors, {imported} records imported ({imported} members), "
            f"{len(batch.failures)} failed"
            if batch.failures
            else f"Import succeeded, {imported} records imported ({imported} members)"
        )

    def _failure(self, batch: Batch, row: dict[str, str]) -> str | None:
        key = row.get(batch.lookup, "")
        if not key:
            return f"Lookup field '{batch.lookup}' missing"
        if batch.lookup == "id" and key not in self.leads:
            return "Lead not found"
        for name, value in row.items():
            if value in self.fail_values:
                return f"Invalid value for field '{name}'"
            if name == "email" and value and not EMAIL.match(value):
                return "Invalid email address"
            if name in self.datetime_fields and value and not OFFSET_DATETIME.match(value):
                return f"Invalid data type in field '{name}'"
            if len(value) > STRING_LIMIT:
                return f"Value for field '{name}' exceeds max length {STRING_LIMIT}"
        return None

    def _rows_file(self, batch: Batch, kind: str) -> HTTPError:
        rows = batch.failures if kind == "failures" else batch.warnings
        if batch.status != "Complete" or not rows or kind in self.missing_files:
            return _answer(404, {"error": "no file"})
        title = "Import Failure Reason" if kind == "failures" else "Import Warning Reason"
        out = io.StringIO()
        # CRLF line ends: a cell holding a CR is then quoted too (and the reader is exercised
        # on line ends other than the upload's).
        writer = csv.writer(out, delimiter=DELIMITERS[batch.format], lineterminator="\r\n")
        writer.writerow([*batch.header, title])
        writer.writerows(rows)
        return _answer(200, out.getvalue().encode(), "text/plain;charset=UTF-8")


def main() -> None:
    """Serve until stopped; print the endpoint and credentials as environment settings."""
    import signal

    def stop(signal_number: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server = FakeMarketo().start()
    for name, value in server.env().items():
        print(f"{name}={value}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        print(f"max_importing={server.max_importing} batches={len(server.batches)} "
              f"leads={len(server.leads)}", file=sys.stderr)  # fmt: skip
        server.stop()


if __name__ == "__main__":
    main()
