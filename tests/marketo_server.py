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

import contextlib
import csv
import email.parser
import email.policy
import io
import json
import re
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

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
READ_CHUNK = 64 * 1024


@dataclass
class LoggedRequest:
    """One request as the server received it; header names are lower-case."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_length: int
    status: int = 0
    code: str | None = None  # the Marketo error code answered, if any

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def raw(self) -> bytes:
        """What the client sent besides the upload body, for 'never here' assertions."""
        head = "".join(f"{name}: {value}\n" for name, value in self.headers.items())
        return f"{self.method} {self.path}?{self.query}\n{head}".encode()


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


@dataclass
class _Rule:
    kind: str
    remaining: int | None
    path: str | None
    method: str | None
    params: dict[str, Any]

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        return self.path is None or path.startswith(self.path)


# Each fault takes keyword arguments path (a prefix), method, and after (how many matching
# calls are answered normally first).


class Faults:
    """Faults a test switches on; each applies to the next COUNT matching calls (None: until
    `clear()`). Identity calls are matched only when PATH says so."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._rules: list[_Rule] = []
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

    def hang_up(
        self, count: int | None = 1, *, path: str | None = None, method: str | None = None,
        after: int = 0,
    ) -> None:  # fmt: skip
        """Close the connection without answering."""
        self._add("hang_up", count, path, method, after)

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
            self._rules.clear()
            self.failing_batches.clear()

    def _add(self, kind: str, count: int | None, path: str | None, method: str | None,
             after: int, **params: Any) -> None:  # fmt: skip
        with self._lock:
            self._rules.append(_Rule(kind, count, path, method, {**params, "after": after}))

    def take(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if path.startswith("/identity") and rule.path is None:
                    continue
                if rule.matches(method, path):
                    if rule.params["after"]:
                        rule.params["after"] -= 1
                        continue
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule
        return None


class _Dropped(Exception):
    """A fault closed the connection."""


class _Answer(Exception):
    def __init__(self, status: int, body: Any, content_type: str = "application/json") -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


def marketo_error(code: str, message: str) -> _Answer:
    return _Answer(
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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: FakeMarketo


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.app.dispatch(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeMarketo:
    """A Marketo instance behind a real HTTP server on 127.0.0.1 (a random free port).

    Knobs: `token_ttl`, `custom_fields` (more REST names the header may use), `datetime_fields`,
    `fail_values` / `warn_values`, `lists` (static list ids), `partitions`, `queue_limit`,
    `steps` (status reads a batch spends Importing before it completes).
    """

    def __init__(
        self,
        *,
        client_id: str = "5f0a1c2e-ndpipe-test-client-id-0001",
        client_secret: str = "mkto-s3cr3t-ndpipe-test-client-secret-do-not-print",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
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
        self.lock = threading.RLock()
        self.faults = Faults(self.lock)
        self.log: list[LoggedRequest] = []
        self.internal_errors: list[str] = []
        self.leads: dict[str, dict[str, str]] = {}
        self.batches: dict[int, Batch] = {}
        self.max_importing = 0
        self.tokens_issued = 0
        self._token: str | None = None
        self._token_expires = 0.0
        self._old_tokens: set[str] = set()
        self._next_batch = 3404
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> FakeMarketo:
        self._http = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._http.app = self
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> FakeMarketo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._http is not None, "server not started"
        return f"http://127.0.0.1:{self._http.server_address[1]}"

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

    def requests(self, method: str | None = None, path: str = "") -> list[LoggedRequest]:
        with self.lock:
            return [
                request
                for request in self.log
                if (method is None or request.method == method) and request.path.startswith(path)
            ]

    def check(self) -> None:
        if self.internal_errors:
            raise AssertionError("fake Marketo errors:\n" + "\n".join(self.internal_errors))

    def expire_token(self) -> None:
        """The current token expires now (the next call with it gets 602)."""
        with self.lock:
            self._token_expires = time.monotonic()

    @property
    def token(self) -> str | None:
        return self._token

    # -- dispatch --

    def dispatch(self, handler: _Handler) -> None:
        url = urlsplit(handler.path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        entry = LoggedRequest(handler.command, url.path, url.query, headers, 0)
        with self.lock:
            self.log.append(entry)
        try:
            body = self._read_body(handler, headers, entry)
            self._route(handler, entry, body)
        except _Answer as answer:
            entry.status = answer.status
            if isinstance(answer.body, dict) and answer.body.get("success") is False:
                entry.code = answer.body["errors"][0]["code"]
            self._send(handler, answer.status, answer.body, answer.content_type)
        except _Dropped:
            pass
        except ConnectionError:
            pass
        except Exception as error:  # a bug in the fake: tell the test instead of hanging
            entry.status = 500
            self.internal_errors.append(f"{entry.method} {entry.path}: {error!r}")
            self._send(handler, 500, {"error": "internal"}, "application/json")

    def _read_body(self, handler: _Handler, headers: dict[str, str], entry: LoggedRequest) -> bytes:
        length = int(headers.get("content-length") or 0)
        entry.body_length = length
        if length > BODY_LIMIT:
            remaining = length
            while remaining > 0:
                chunk = handler.rfile.read(min(remaining, READ_CHUNK))
                if not chunk:
                    break
                remaining -= len(chunk)
            raise _Answer(413, b"<html><body>413 Request Entity Too Large</body></html>",
                          "text/html")  # fmt: skip
        return handler.rfile.read(length) if length else b""

    def _send(self, handler: _Handler, status: int, body: Any, content_type: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, handler: _Handler, request: LoggedRequest, body: bytes) -> None:
        path, method = request.path, request.method
        if "//" in path:
            raise _Answer(404, b"double slash", "text/plain")
        rule = self.faults.take(method, path)
        if rule is not None:
            if rule.kind == "hang_up":
                _hang_up(handler)
            if rule.kind == "expire":
                self.expire_token()
                rule = None
        if rule is not None:
            if rule.kind == "status":
                raise _Answer(rule.params["status"], b"<html>Bad Gateway</html>", "text/html")
            code = rule.params["code"]
            if code in ("601", "602") or not path.startswith("/identity"):
                raise marketo_error(code, rule.params.get("message") or MESSAGES.get(code, "Error"))
        if path == "/identity/oauth/token" and method in ("GET", "POST"):
            raise _Answer(200, self._identity(request))
        if not path.startswith("/bulk/v1/"):
            raise _Answer(404, b"<html>Not Found</html>", "text/html")
        self._authorize(request)
        if path == "/bulk/v1/leads.json" and method == "POST":
            raise _Answer(200, self._create(request, body))
        match = re.fullmatch(r"/bulk/v1/leads/batch/([0-9]+)(?:/(failures|warnings))?\.json", path)
        if match is None or method != "GET":
            raise _Answer(404, b"<html>Not Found</html>", "text/html")
        batch = self.batches.get(int(match.group(1)))
        if batch is None:
            raise marketo_error("1013", "Object not found")
        if match.group(2) is None:
            raise _Answer(200, self._status(batch))
        raise self._rows_file(batch, match.group(2))

    # -- identity --

    def _identity(self, request: LoggedRequest) -> dict[str, Any]:
        params = request.params()
        given = {name: (params.get(name) or [""])[0] for name in
                 ("grant_type", "client_id", "client_secret")}  # fmt: skip
        if given["grant_type"] != "client_credentials":
            raise _Answer(400, {"error": "invalid_request", "error_description": "bad grant"})
        if given["client_id"] != self.client_id or given["client_secret"] != self.client_secret:
            raise _Answer(401, {"error": "invalid_client",
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
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        data = None
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                data = part.get_payload(decode=True)
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

    def _rows_file(self, batch: Batch, kind: str) -> _Answer:
        rows = batch.failures if kind == "failures" else batch.warnings
        if batch.status != "Complete" or not rows or kind in self.missing_files:
            return _Answer(404, {"error": "no file"})
        title = "Import Failure Reason" if kind == "failures" else "Import Warning Reason"
        out = io.StringIO()
        # CRLF line ends: a cell holding a CR is then quoted too (and the reader is exercised
        # on line ends other than the upload's).
        writer = csv.writer(out, delimiter=DELIMITERS[batch.format], lineterminator="\r\n")
        writer.writerow([*batch.header, title])
        writer.writerows(rows)
        return _Answer(200, out.getvalue().encode(), "text/plain;charset=UTF-8")


def _hang_up(handler: _Handler) -> NoReturn:
    handler.wfile.flush()
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)
    raise _Dropped


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
