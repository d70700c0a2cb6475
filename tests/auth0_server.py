"""A loopback Auth0-compatible server for tests: real HTTP on 127.0.0.1, standard library only.

It implements what /work/shared/AUTH0.md documents about the Management API calls ndpipe makes:
the client-credentials token (§1.1), the connections lookup, export jobs with progress, signed
short-lived download links serving gzip NDJSON or Auth0-escaped CSV (§1.2-1.7), import jobs with
multipart upload, the 512,000-byte limit, the 2-active-jobs 429, per-user schema validation and
the real upsert semantics (§2), and rate-limit headers (§1.8).

It is deterministic: a job advances one step each time it is read (GET /api/v2/jobs/{id}), never
with the wall clock, and ids come from a seeded generator. Faults are switched on per test through
`server.faults`; every request is kept in `server.log`.

    with FakeAuth0() as server:
        server.add_user("jane@example.com", given_name="Jane")
        server.faults.rate_limit(count=2, reset_in=3)
        ... point a client at server.base_url with server.client_id / server.client_secret ...
        assert all(r.header("authorization") is None for r in server.requests("GET", "/downloads/"))

Points where Auth0's behaviour is undocumented ([?] in AUTH0.md) are decided here as follows, and
can be switched where a test needs the other option:
- a dotted field name without export_as becomes a flat key ("user_metadata.country");
- a missing attribute is omitted from a JSON line (`export_missing = "null"` writes null instead)
  and is an empty cell in CSV;
- objects and arrays in a CSV export are written as JSON text, escaped like any string;
- without `fields`, a JSON export holds whole profiles (no password hashes) and a CSV export
  the columns user_id, email, email_verified, created_at;
- an additionalProperties violation has the code OBJECT_ADDITIONAL_PROPERTIES (z-schema's name);
- a file that is not a JSON array is refused with 400 when the job is created.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import hmac
import io
import json
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

from tests import fake_service
from tests.fake_service import HTTPError

DEFAULT_CONNECTION = "Username-Password-Authentication"
IMPORT_LIMIT = 512000
ALL_SCOPES = frozenset(
    {"read:users", "create:users", "update:users", "read:connections", "read:users_app_metadata"}
)
SCOPES = {
    ("POST", "users-exports"): ("read:users",),
    ("POST", "users-imports"): ("create:users",),
    ("GET", "job"): ("create:users", "read:users"),
    ("GET", "errors"): ("create:users", "read:users"),
    ("GET", "connections"): ("read:connections",),
}
TOO_MANY_IMPORTS = (
    "There are 2 active import users jobs, please wait until some of them are finished "
    "and try again"
)
# Any other status (pending, processing, or one a test invents) is a job still running.
FINISHED = ("completed", "failed", "expired", "cancelled")
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
CONNECTION_ID = re.compile(r"^con_[A-Za-z0-9]{16}$")
E164 = re.compile(r"^\+[0-9]{1,15}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# Attributes Auth0 itself generates as ISO dates: the only strings a CSV export leaves unescaped.
AUTH0_DATES = frozenset(
    {"created_at", "updated_at", "last_login", "last_password_reset", "multifactor_last_modified"}
)
FORBIDDEN_APP_METADATA = (
    "__tenant", "_id", "blocked", "clientID", "created_at", "email_verified", "email",
    "globalClientID", "global_client_id", "identities", "lastIP", "lastLogin", "loginsCount",
    "metadata", "multifactor_last_modified", "multifactor", "updated_at", "user_id",
)  # fmt: skip
UPSERTABLE = (
    "email_verified", "given_name", "family_name", "name", "nickname", "picture",
    "custom_password_hash", "app_metadata", "user_metadata",
)  # fmt: skip
HASH_ALGORITHMS = (
    "argon2", "bcrypt", "hmac", "ldap", "md4", "md5", "sha1", "sha256", "sha512", "pbkdf2",
    "scrypt",
)  # fmt: skip
# Export-only attributes and secrets never appear in a default (fields omitted) export.
NOT_EXPORTED = ("password_hash", "custom_password_hash")
DOWNLOAD_CHUNK = 64 * 1024
MISSING: Any = object()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- tenant state ----------------------------------------------------------------------------


@dataclass
class Connection:
    id: str
    name: str
    strategy: str = "auth0"
    enabled: bool = True

    @property
    def database(self) -> bool:
        return self.strategy == "auth0"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "strategy": self.strategy,
            "enabled_clients": [],
            "is_domain_connection": False,
            "realms": [self.name],
            "options": {},
        }


@dataclass
class LoggedRequest(fake_service.LoggedRequest):
    """One request as the server received it, with the JSON it was answered."""

    response: bytes = b""  # the JSON body answered, for API calls (not file downloads)


@dataclass
class Job:
    id: str
    type: str
    connection: Connection | None
    created_at: str
    timeline: list[str]
    status: str = "pending"
    polls: int = 0
    failure: tuple[str, str] | None = None  # (final status, status_details) forced by a fault
    status_details: str | None = None
    # export
    format: str = "json"
    limit: int | None = None
    fields: list[dict[str, str]] | None = None
    file: Path | None = None
    etag: str = ""
    # import
    users: list[Any] = field(default_factory=list)
    upsert: bool = False
    external_id: str | None = None
    send_completion_email: bool = True
    summary: dict[str, int] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status not in FINISHED


# --- faults ----------------------------------------------------------------------------------


class Faults(fake_service.Faults):
    """Faults a test switches on; each applies to the next N matching requests, in order.
    Without a path, rate limits and server errors hit the API, not the file store."""

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__(lock)
        self.failing_jobs: dict[str, list[tuple[str, str]]] = {
            "users_export": [],
            "users_import": [],
        }

    def rate_limit(
        self,
        count: int | None = 1,
        *,
        reset_in: float = 1,
        reset_at: int | None = None,
        path: str | None = None,
    ) -> None:
        """Answer 429 with X-RateLimit-* (Reset = unix seconds) to the next COUNT API requests.

        count=None is a storm that lasts until `clear()`. reset_at fixes the Reset header;
        otherwise it is now + reset_in, rounded up.
        """
        self._add("rate_limit", count, path, reset_in=reset_in, reset_at=reset_at)

    def storm(self, *, reset_in: float = 1, path: str | None = None) -> None:
        self.rate_limit(None, reset_in=reset_in, path=path)

    def echo_credentials(
        self,
        count: int | None = 1,
        *,
        status: int = 400,
        path: str | None = None,
        text: bool = False,
        padding: int = 0,
    ) -> None:
        """Answer STATUS to the next COUNT API requests (the token request too) with an error
        that quotes the request's Authorization header and body, as a careless proxy or debug
        page does: a JSON error by default; with `text`, a plain-text page in which PADDING
        filler characters come before "Authorization: Bearer TOKEN"."""
        self._add("echo", count, path, status=status, text=text, padding=padding)

    def drop_downloads(self, count: int = 1, *, after_bytes: int | None = None) -> None:
        """Send headers and part of the body (default: half), then close the socket."""
        self._add("drop", count, after_bytes=after_bytes)

    def expire_downloads(self, count: int = 1) -> None:
        """The next COUNT downloads find their link expired (403), however fresh it is."""
        self._add("expire", count)

    def fail_next_job(
        self,
        kind: str = "users_export",
        *,
        status: str = "failed",
        status_details: str = "Job failed: internal error while processing the job",
    ) -> None:
        """The next job of KIND created ends with STATUS (failed or expired) and these details."""
        with self._lock:
            self.failing_jobs[kind].append((status, status_details))

    def clear(self) -> None:
        with self._lock:
            super().clear()
            for queue in self.failing_jobs.values():
                queue.clear()

    def matches(self, rule: fake_service.FaultRule, method: str, path: str) -> bool:
        download = path.startswith("/downloads/")
        if rule.path is None and download != (rule.kind in ("drop", "expire")):
            return False
        return super().matches(rule, method, path)


# --- HTTP plumbing ---------------------------------------------------------------------------


class _Handler(fake_service.ServiceHandler):
    do_HEAD = fake_service.ServiceHandler.do_GET


def api_error(status: int, message: str, error_code: str | None = None) -> HTTPError:
    reasons = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        413: "Request Entity Too Large",
        429: "Too Many Requests",
    }
    body: dict[str, Any] = {
        "statusCode": status,
        "error": reasons.get(status, "Error"),
        "message": message,
    }
    if error_code:
        body["errorCode"] = error_code
    return HTTPError(status, body)


def _echo(request: LoggedRequest, status: int, text: bool, padding: int) -> HTTPError:
    echoed = request.echo()
    if text:
        page = "x" * padding + " " + echoed
        return HTTPError(status, page.encode(), {"Content-Type": "text/plain; charset=utf-8"})
    return HTTPError(status, {"statusCode": status, "error": "Bad Request", "message": echoed})


def s3_error(status: int, code: str, message: str) -> HTTPError:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return HTTPError(status, xml.encode(), {"Content-Type": "application/xml"})


# --- the server ------------------------------------------------------------------------------


class FakeAuth0(fake_service.FakeService):
    """An Auth0 tenant behind a real HTTP server on 127.0.0.1 (a random free port).

    Tenant state: `connections`, `users` (user_id -> full profile), `jobs`. Knobs a test may set:
    `link_ttl` (seconds a download link stays valid after each job read, default 60),
    `export_timeline` / `import_timeline` (statuses a job shows on successive reads before it
    completes; unknown statuses such as "waiting" are allowed), `range_support` (honour Range on
    downloads), `export_missing` ("omit" or "null"), `export_gzip` (False stores the file plain,
    still named .gz, for clients that must sniff), `scopes` (granted to new tokens).
    """

    title = "fake Auth0 server"
    handler_class = _Handler
    json_content_type = "application/json; charset=utf-8"
    internal_error_body: ClassVar[Any] = {"statusCode": 500, "error": "Internal Server Error"}
    # An oversized upload is still read (and dropped) so that the client gets the 413
    # instead of a reset connection while it is still sending.
    body_limit = IMPORT_LIMIT

    def __init__(
        self,
        *,
        client_id: str = "ndpipeTestClientId0000000000001",
        client_secret: str = "s3cr3t-ndpipe-test-client-secret-do-not-print",
        tenant: str = "ndpipe-test",
        seed: int = 5,
    ) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret)
        self.tenant = tenant
        self.link_ttl = 60.0
        self.export_timeline = ["pending", "processing", "processing"]
        self.import_timeline = ["pending", "processing"]
        self.range_support = True
        self.export_missing = "omit"
        self.export_gzip = True
        self.scopes = set(ALL_SCOPES)
        self.faults = Faults(self.lock)
        self.connections: list[Connection] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.passwords: dict[str, Any] = {}
        self.jobs: dict[str, Job] = {}
        self.tokens: dict[str, set[str]] = {}
        self.tokens_issued = 0
        self.synthetic_users = 0
        self._random = random.Random(seed)
        self._links: dict[str, tuple[str, float]] = {}
        self._signing_key = b"fake-s3-signing-key"
        self._files = Path(tempfile.mkdtemp(prefix="fake-auth0-"))
        self.add_connection(DEFAULT_CONNECTION)
        self.add_connection("google-oauth2", strategy="google-oauth2")

    # -- lifecycle --

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._files, ignore_errors=True)

    @property
    def base_url(self) -> str:
        """What a test passes as the domain: http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def audience(self) -> str:
        return f"{self.base_url}/api/v2/"

    # -- tenant set-up --

    def _id(self, prefix: str, length: int = 16) -> str:
        return prefix + "".join(self._random.choice(ID_ALPHABET) for _ in range(length))

    def add_connection(
        self, name: str, *, strategy: str = "auth0", id: str | None = None, enabled: bool = True
    ) -> Connection:
        """A connection; strategy "auth0" is a database connection (the only kind imports take)."""
        connection = Connection(id or self._id("con_"), name, strategy, enabled)
        assert CONNECTION_ID.match(connection.id), connection.id
        with self.lock:
            self.connections.append(connection)
        return connection

    def connection(self, name_or_id: str = DEFAULT_CONNECTION) -> Connection:
        for connection in self.connections:
            if name_or_id in (connection.name, connection.id):
                return connection
        raise KeyError(name_or_id)

    def add_user(
        self, email: str, *, connection: str = DEFAULT_CONNECTION, **attributes: Any
    ) -> dict[str, Any]:
        """A user with the profile Auth0 would store; ATTRIBUTES override or add anything."""
        conn = self.connection(connection)
        with self.lock:
            bare_id = _bare_id(conn.id, email)
            provider = "auth0" if conn.database else conn.strategy
            user: dict[str, Any] = {
                "user_id": f"{provider}|{bare_id}",
                "email": email.lower() if conn.database else email,
                "email_verified": False,
                "name": email,
                "nickname": email.split("@")[0],
                "picture": f"https://s.gravatar.com/avatar/{bare_id}.png",
                "identities": [
                    {
                        "connection": conn.name,
                        "provider": provider,
                        "user_id": bare_id,
                        "isSocial": not conn.database,
                    }
                ],
                "created_at": "2021-09-16T03:24:32.897Z",
                "updated_at": "2021-09-16T03:24:32.897Z",
                "logins_count": 0,
            }
            user.update(attributes)
            self.users[user["user_id"]] = user
            return user

    def load_users(self, records: Iterable[dict[str, Any]]) -> None:
        """Users exactly as given, e.g. the lines of fixtures/users.ndjson (an export)."""
        with self.lock:
            for record in records:
                self.users[record["user_id"]] = copy.deepcopy(record)

    def seed_users(self, count: int, *, connection: str = DEFAULT_CONNECTION) -> None:
        for number in range(count):
            self.add_user(f"user{number}@example.com", connection=connection)

    def seed_synthetic(self, count: int) -> None:
        """COUNT more users in the default connection, generated while an export is written
        and never stored: for large-export memory tests."""
        self.synthetic_users = count

    def user_by_email(
        self, email: str, connection: str = DEFAULT_CONNECTION
    ) -> dict[str, Any] | None:
        for user in self.users_in(connection):
            if user.get("email", "").lower() == email.lower():
                return user
        return None

    def users_in(self, connection: str = DEFAULT_CONNECTION) -> list[dict[str, Any]]:
        with self.lock:
            return [user for user in self.users.values() if _connection_of(user) == connection]

    def issue_token(self, scopes: Iterable[str] | None = None) -> str:
        """A valid Management API token (what a test passes as a ready token)."""
        token = "eyJ" + self._id("", 40)
        with self.lock:
            self.tokens[token] = set(self.scopes if scopes is None else scopes)
        return token

    def expire_tokens(self) -> None:
        """Every token issued so far answers 401 from now on (the 24 h expiry, compressed)."""
        with self.lock:
            self.tokens.clear()

    def finish_job(self, job_id: str) -> Job:
        """Advance a job to its end, as if polled until then (for tests that need it done)."""
        with self.lock:
            job = self.jobs[job_id]
            while job.active:
                self._advance(job)
            return job

    # -- request log --

    def secrets(self) -> set[str]:
        with self.lock:
            return {self.client_secret, *self.tokens}

    # -- dispatch --

    def new_entry(self, method: str, path: str, query: str, headers: dict[str, str]) -> Any:
        return LoggedRequest(method, path, query, headers)

    def oversized(self, length: int) -> bytes:
        return b""  # the import route answers 413

    def server_error(self, status: int) -> HTTPError:
        return HTTPError(status, {"statusCode": status, "error": "Internal Server Error"})

    def route(
        self, handler: fake_service.ServiceHandler, request: LoggedRequest, body: bytes
    ) -> None:
        path, method = request.path, request.method
        download = path.startswith("/downloads/")
        rule = self.faults.take(method, path, ("rate_limit", "status", "hang_up", "echo"))
        rule = self.common_fault(handler, rule)
        if rule is not None and rule.kind == "echo":
            raise _echo(request, **rule.params)
        if rule is not None and rule.kind == "rate_limit":
            reset = rule.params["reset_at"] or int(time.time() + rule.params["reset_in"] + 0.999)
            error = api_error(429, "Global limit has been reached", "too_many_requests")
            error.headers = self._rate_headers(remaining=0, reset=reset)
            raise error

        if download and method in ("GET", "HEAD"):
            return self._download(handler, request)
        if path == "/oauth/token" and method == "POST":
            return self._token(handler, request)
        if not path.startswith("/api/v2/"):
            raise api_error(404, "Not Found")
        resource = path[len("/api/v2/") :].rstrip("/").split("/")
        if resource == ["connections"] and method == "GET":
            self._authorize(request, SCOPES[("GET", "connections")])
            return self._json(handler, request, 200, self._connections(request))
        if resource == ["jobs", "users-exports"] and method == "POST":
            self._authorize(request, SCOPES[("POST", "users-exports")])
            return self._json(handler, request, 201, self._create_export(request))
        if resource == ["jobs", "users-imports"] and method == "POST":
            self._authorize(request, SCOPES[("POST", "users-imports")])
            return self._json(handler, request, 202, self._create_import(request))
        if len(resource) == 2 and resource[0] == "jobs" and method == "GET":
            self._authorize(request, SCOPES[("GET", "job")])
            return self._json(handler, request, 200, self._read_job(resource[1]))
        if resource[:1] == ["jobs"] and resource[2:] == ["errors"] and method == "GET":
            self._authorize(request, SCOPES[("GET", "errors")])
            status, body = self._job_errors(resource[1])
            return self._json(handler, request, status, body)
        raise api_error(404, "Not Found")

    def _json(
        self, handler: fake_service.ServiceHandler, request: LoggedRequest, status: int, body: Any
    ) -> None:
        request.response = json.dumps(body).encode() if body is not None else b""
        self.reply(handler, request, status, body, self._rate_headers())

    @staticmethod
    def _rate_headers(remaining: int = 49, reset: int | None = None) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset if reset is not None else int(time.time()) + 1),
        }

    # -- token --

    def _token(self, handler: fake_service.ServiceHandler, request: LoggedRequest) -> None:
        content_type = request.header("content-type") or ""
        try:
            if content_type.startswith("application/json"):
                params = json.loads(request.body or b"{}")
            else:
                params = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(
                400, {"error": "invalid_request", "error_description": "bad body"}
            ) from None
        if params.get("grant_type") != "client_credentials":
            raise HTTPError(
                403,
                {"error": "unauthorized_client", "error_description": "Grant type not allowed"},
            )
        good = hmac.compare_digest(
            str(params.get("client_id", "")), self.client_id
        ) and hmac.compare_digest(str(params.get("client_secret", "")), self.client_secret)
        if not good:
            raise HTTPError(401, {"error": "access_denied", "error_description": "Unauthorized"})
        if params.get("audience") != self.audience:
            raise HTTPError(
                403,
                {
                    "error": "access_denied",
                    "error_description": f"Service not found: {params.get('audience')}",
                },
            )
        token = self.issue_token()
        with self.lock:
            self.tokens_issued += 1
        self.reply(
            handler,
            request,
            200,
            {
                "access_token": token,
                "expires_in": 86400,
                "scope": " ".join(sorted(self.scopes)),
                "token_type": "Bearer",
            },
        )

    def _authorize(self, request: LoggedRequest, any_of: tuple[str, ...]) -> None:
        header = request.header("authorization") or ""
        if not header.startswith("Bearer "):
            raise api_error(401, "Missing authentication")
        with self.lock:
            scopes = self.tokens.get(header[len("Bearer ") :])
        if scopes is None:
            raise api_error(401, "Expired token received for JSON Web Token validation")
        if not scopes.intersection(any_of):
            raise api_error(
                403,
                f"Insufficient scope, expected any of: {','.join(any_of)}",
                "insufficient_scope",
            )

    # -- connections --

    def _connections(self, request: LoggedRequest) -> Any:
        query = parse_qs(request.query)
        found = self.connections
        if "name" in query:
            found = [c for c in found if c.name == query["name"][-1]]
        if "strategy" in query:
            strategies = {s for value in query["strategy"] for s in value.split(",")}
            found = [c for c in found if c.strategy in strategies]
        items = [c.to_json() for c in found]
        if "fields" in query:
            names = query["fields"][-1].split(",")
            include = query.get("include_fields", ["true"])[-1] != "false"
            items = [{k: v for k, v in item.items() if (k in names) == include} for item in items]
        per_page = int(query.get("per_page", ["50"])[-1])
        page = int(query.get("page", ["0"])[-1])
        shown = items[page * per_page : (page + 1) * per_page]
        if query.get("include_totals", ["false"])[-1] == "true":
            return {"connections": shown, "start": page * per_page, "limit": per_page,
                    "total": len(items)}  # fmt: skip
        return shown

    # -- export jobs --

    def _create_export(self, request: LoggedRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body)
        except ValueError:
            raise api_error(400, "Invalid request payload JSON format", "invalid_body") from None
        if not isinstance(body, dict):
            raise api_error(400, "Payload validation error: 'Expected type object'", "invalid_body")
        extra = sorted(set(body) - {"connection_id", "format", "limit", "fields"})
        if extra:
            raise _invalid_body(f"Additional properties not allowed: {','.join(extra)}")
        connection = None
        if "connection_id" in body:
            if not isinstance(body["connection_id"], str) or not CONNECTION_ID.match(
                body["connection_id"]
            ):
                raise _invalid_body(
                    "String does not match pattern ^con_[A-Za-z0-9]{16}$: "
                    f"{body['connection_id']} on property connection_id"
                )
            try:
                connection = self.connection(body["connection_id"])
            except KeyError:
                raise api_error(
                    404, "The connection does not exist", "inexistent_connection"
                ) from None
        format = body.get("format", "json")
        if format not in ("json", "csv"):
            raise _invalid_body(f"No enum match for: {format} on property format")
        limit = body.get("limit")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise _invalid_body("limit must be an integer of at least 1")
        fields = body.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or not fields:
                raise _invalid_body("Expected type array with at least 1 item on property fields")
            for item in fields:
                if not isinstance(item, dict) or set(item) - {"name", "export_as"}:
                    raise _invalid_body("Additional properties not allowed on property fields")
                for key in ("name", "export_as"):
                    value = item.get(key, "x" if key == "export_as" else None)
                    if not isinstance(value, str) or not 1 <= len(value) <= 100:
                        raise _invalid_body(f"Invalid {key} on property fields")
        with self.lock:
            failure = self._next_failure("users_export")
            job = Job(
                id=self._id("job_"),
                type="users_export",
                connection=connection,
                created_at=now_iso(),
                timeline=list(self.export_timeline),
                failure=failure,
                format=format,
                limit=limit,
                fields=fields,
            )
            self.jobs[job.id] = job
        return self._job_json(job)

    def _next_failure(self, kind: str) -> tuple[str, str] | None:
        queue = self.faults.failing_jobs[kind]
        return queue.pop(0) if queue else None

    def _read_job(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise api_error(404, "The job does not exist", "inexistent_job")
            if job.active:
                self._advance(job)
            return self._job_json(job, fresh_link=True)

    def _advance(self, job: Job) -> None:
        """One step: the next status of the timeline, or the job's end when it runs out."""
        job.polls += 1
        if job.timeline:
            job.status = job.timeline.pop(0)
            return
        if job.failure is not None:
            job.status, job.status_details = job.failure
            return
        if job.type == "users_export":
            self._write_export(job)
        else:
            self._apply_import(job)
        job.status = "completed"

    def _job_json(self, job: Job, fresh_link: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {"type": job.type, "status": job.status}
        if job.connection is not None:
            result["connection_id"] = job.connection.id
            result["connection"] = job.connection.name
        if job.type == "users_export":
            result["format"] = job.format
            if job.limit is not None:
                result["limit"] = job.limit
            if job.fields is not None:
                result["fields"] = job.fields
        else:
            if job.external_id is not None:
                result["external_id"] = job.external_id
            result["upsert"] = job.upsert
            result["send_completion_email"] = job.send_completion_email
        result["created_at"] = job.created_at
        result["id"] = job.id
        if job.status == "processing" and job.type == "users_export":
            steps = job.polls + len(job.timeline)
            result["percentage_done"] = int(100 * (job.polls - 1) / max(steps, 1))
            result["time_left_seconds"] = 5 * (len(job.timeline) + 1)
        if job.status_details is not None:
            result["status_details"] = job.status_details
        if job.summary is not None:
            result["summary"] = job.summary
        if job.status == "completed" and job.type == "users_export" and fresh_link:
            result["location"] = self._sign(job)
        return result

    def _sign(self, job: Job) -> str:
        assert job.file is not None
        expires = time.time() + self.link_ttl
        signature = hmac.new(
            self._signing_key, f"{job.id}/{expires}/{len(self._links)}".encode(), "sha256"
        ).hexdigest()
        self._links[signature] = (job.id, expires)
        return (
            f"{self.base_url}/downloads/{job.id}/{job.file.name}"
            f"?Expires={int(expires)}&Key-Pair-Id=APKAFAKE&Signature={signature}"
        )

    def _export_users(self, job: Job) -> Iterator[dict[str, Any]]:
        name = job.connection.name if job.connection else None
        for user in list(self.users.values()):
            if name is None or _connection_of(user) == name:
                yield user
        if name in (None, DEFAULT_CONNECTION):
            for number in range(self.synthetic_users):
                yield synthetic_user(number)

    def _write_export(self, job: Job) -> None:
        job.file = self._files / job.id / f"{self.tenant}.{job.format}.gz"
        job.file.parent.mkdir()
        digest = hashlib.md5()
        with contextlib.ExitStack() as stack:
            out: Any = stack.enter_context(open(job.file, "wb"))
            if self.export_gzip:
                out = stack.enter_context(
                    gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6)
                )
                # One compressor call per line is slow for million-user exports.
                out = stack.enter_context(io.BufferedWriter(out, 1 << 20))
            if job.format == "csv":
                header = [f.get("export_as", f["name"]) for f in job.fields or _default_fields()]
                out.write((",".join(_csv_plain(h) for h in header) + "\n").encode())
            for count, user in enumerate(self._export_users(job)):
                if job.limit is not None and count >= job.limit:
                    break
                out.write(self._export_line(job, user))
        with open(job.file, "rb") as raw:
            for chunk in iter(lambda: raw.read(DOWNLOAD_CHUNK), b""):
                digest.update(chunk)
        job.etag = f'"{digest.hexdigest()}"'

    def _export_line(self, job: Job, user: dict[str, Any]) -> bytes:
        if job.format == "json":
            if job.fields is None:
                line = {k: v for k, v in user.items() if k not in NOT_EXPORTED}
            else:
                line = {}
                for spec in job.fields:
                    value = resolve_path(user, spec["name"])
                    if value is MISSING:
                        if self.export_missing == "omit":
                            continue
                        value = None
                    line[spec.get("export_as", spec["name"])] = value
            return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        cells = []
        for spec in job.fields or _default_fields():
            value = resolve_path(user, spec["name"])
            leaf = spec["name"].rsplit(".", 1)[-1]
            cells.append(auth0_csv_cell(value, date=leaf in AUTH0_DATES))
        return (",".join(cells) + "\n").encode()

    def _download(self, handler: fake_service.ServiceHandler, request: LoggedRequest) -> None:
        parts = request.path.split("/")
        query = {k: v[-1] for k, v in parse_qs(request.query).items()}
        if request.header("authorization"):
            # What S3 answers when a signed URL also carries a header credential.
            raise s3_error(
                400, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm"
                " query parameter, Signature query string parameter or the Authorization header"
                " should be specified",
            )  # fmt: skip
        with self.lock:
            link = self._links.get(query.get("Signature", ""))
            job = self.jobs.get(parts[2]) if len(parts) > 3 else None
        if link is None or job is None or job.file is None or link[0] != job.id:
            raise s3_error(403, "AccessDenied", "Access denied")
        if time.time() > link[1] or self.faults.take(request.method, request.path, ("expire",)):
            raise s3_error(403, "AccessDenied", "Request has expired")
        size = job.file.stat().st_size
        start, end, status = 0, size - 1, 200
        range_header = request.header("range")
        if range_header and self.range_support:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if match is None or int(match.group(1)) >= size:
                raise HTTPError(416, b"", {"Content-Range": f"bytes */{size}"})
            start = int(match.group(1))
            end = min(int(match.group(2) or size - 1), size - 1)
            status = 206
        drop = self.faults.take(request.method, request.path, ("drop",))
        length = end - start + 1
        handler.send_response(status)
        handler.send_header("Content-Type", "binary/octet-stream")
        handler.send_header("Content-Length", str(length))
        handler.send_header("ETag", job.etag)
        handler.send_header("Accept-Ranges", "bytes" if self.range_support else "none")
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        handler.end_headers()
        request.status = status
        if request.method == "HEAD":
            return
        allowed = length
        if drop is not None:
            allowed = drop.params["after_bytes"]
            if allowed is None:
                allowed = length // 2
            allowed = min(allowed, length - 1)
        with open(job.file, "rb") as file:
            file.seek(start)
            while allowed > 0:
                chunk = file.read(min(DOWNLOAD_CHUNK, allowed))
                if not chunk:
                    break
                handler.wfile.write(chunk)
                allowed -= len(chunk)
        if drop is not None:
            fake_service.hang_up(handler)

    # -- import jobs --

    def _create_import(self, request: LoggedRequest) -> dict[str, Any]:
        length = int(request.header("content-length") or 0)
        if length > IMPORT_LIMIT:
            raise api_error(
                413, f"Payload content length greater than maximum allowed: {IMPORT_LIMIT}"
            )
        content_type = request.header("content-type") or ""
        if not content_type.startswith("multipart/form-data"):
            raise api_error(400, "Content-Type must be multipart/form-data", "invalid_body")
        parts = _parse_multipart(content_type, request.body)
        extra = sorted(
            set(parts)
            - {"users", "connection_id", "upsert", "external_id", "send_completion_email"}
        )
        if extra:
            raise _invalid_body(f"Additional properties not allowed: {','.join(extra)}")
        for required in ("users", "connection_id"):
            if required not in parts:
                raise _invalid_body(f"Missing required property: {required}")
        connection_id = parts["connection_id"].decode()
        if not CONNECTION_ID.match(connection_id):
            raise _invalid_body(
                f"String does not match pattern ^con_[A-Za-z0-9]{{16}}$: {connection_id}"
            )
        try:
            connection = self.connection(connection_id)
        except KeyError:
            raise api_error(400, "Connection does not exist", "inexistent_connection") from None
        if not connection.database:
            raise api_error(400, "Connection must be a database connection")
        if not connection.enabled:
            raise api_error(400, "Connection must be enabled")
        flags = {}
        for name, default in (("upsert", False), ("send_completion_email", True)):
            value = parts.get(name, str(default).lower().encode()).decode()
            if value not in ("true", "false"):
                raise _invalid_body(f"Expected type boolean but found type string on {name}")
            flags[name] = value == "true"
        if not parts["users"].strip():
            raise api_error(400, "Users file must not be empty")
        try:
            users = json.loads(parts["users"])
        except (ValueError, UnicodeDecodeError):
            raise api_error(400, "Users file must be a valid JSON array") from None
        if not isinstance(users, list):
            raise api_error(400, "Users file must be a valid JSON array")
        if not users:
            raise api_error(400, "Users file must not be empty")
        with self.lock:
            active = sum(1 for j in self.jobs.values() if j.type == "users_import" and j.active)
            if active >= 2:
                error = api_error(429, TOO_MANY_IMPORTS, "too_many_requests")
                error.headers = self._rate_headers()
                raise error
            job = Job(
                id=self._id("job_"),
                type="users_import",
                connection=connection,
                created_at=now_iso(),
                timeline=list(self.import_timeline),
                failure=self._next_failure("users_import"),
                users=users,
                upsert=flags["upsert"],
                external_id=parts["external_id"].decode() if "external_id" in parts else None,
                send_completion_email=flags["send_completion_email"],
            )
            self.jobs[job.id] = job
        return self._job_json(job)

    def _apply_import(self, job: Job) -> None:
        assert job.connection is not None
        summary = {"failed": 0, "updated": 0, "inserted": 0, "total": len(job.users)}
        members = self.users_in(job.connection.name)
        by_email = {str(u.get("email", "")).lower(): u for u in members}
        by_username = {u["username"]: u for u in members if "username" in u}
        seen: set[str] = set()
        for user in job.users:
            errors = validate_import_user(user)
            if not errors:
                email_key = user["email"].lower()
                if email_key in seen:
                    message = "The user is duplicated in the import file."
                    errors = [_error("DUPLICATED_USER", message, "email")]
                else:
                    seen.add(email_key)
                    errors, outcome = self._store(job, user, by_email, by_username)
                    if outcome:
                        summary[outcome] += 1
            if errors:
                summary["failed"] += 1
                job.errors.append({"user": _redacted(user), "errors": errors})
        job.summary = summary

    def _store(
        self,
        job: Job,
        record: dict[str, Any],
        by_email: dict[str, dict[str, Any]],
        by_username: dict[str, dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], str]:
        """Insert or (upsert) update one valid user; (errors, "inserted" | "updated" | "")."""
        assert job.connection is not None
        existing = by_email.get(record["email"].lower())
        if existing is not None and not job.upsert:
            return [_error("DUPLICATED_USER", "The user already exist.", "email")], ""
        stamp = now_iso()
        if existing is not None:
            # Non-upsertable attributes (user_id, username, phone_number, blocked, password_hash)
            # are ignored on update; so is everything the record does not mention, except
            # email_verified, which resets.
            for key in UPSERTABLE:
                if key in record:
                    if key == "custom_password_hash":
                        self.passwords[existing["user_id"]] = record[key]
                    else:
                        # app_metadata and user_metadata are replaced whole, never merged.
                        existing[key] = copy.deepcopy(record[key])
            if "email_verified" not in record:
                existing["email_verified"] = False
            existing["updated_at"] = stamp
            return [], "updated"
        bare_id = record.get("user_id") or _bare_id(job.connection.id, record["email"])
        user_id = f"auth0|{bare_id}"
        if user_id in self.users:
            return [_error("CONFLICT", f"A user with id {user_id} already exists.", "user_id")], ""
        if record.get("username") in by_username:
            return [_error("CONFLICT_USERNAME", "The username already exists.", "username")], ""
        user = {
            "user_id": user_id,
            "email": record["email"].lower(),
            "email_verified": record.get("email_verified", False),
        }
        for key, value in record.items():
            if key in ("password_hash", "custom_password_hash"):
                self.passwords[user_id] = value
            elif key not in ("user_id", "email", "email_verified"):
                user[key] = copy.deepcopy(value)
        user.setdefault("name", user["email"])
        user.setdefault("nickname", user["email"].split("@")[0])
        user["identities"] = [
            {
                "connection": job.connection.name,
                "provider": "auth0",
                "user_id": bare_id,
                "isSocial": False,
            }
        ]
        user["created_at"] = user["updated_at"] = stamp
        user["logins_count"] = 0
        self.users[user_id] = user
        by_email[user["email"]] = user
        if "username" in user:
            by_username[user["username"]] = user
        return [], "inserted"

    def _job_errors(self, job_id: str) -> tuple[int, Any]:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise api_error(404, "The job does not exist", "inexistent_job")
            if job.status in ("failed", "expired"):
                generic: dict[str, Any] = {
                    "id": job.id,
                    "type": job.type,
                    "status": job.status,
                    "created_at": job.created_at,
                    "status_details": job.status_details,
                }
                if job.connection is not None:
                    generic["connection_id"] = job.connection.id
                return 200, generic
            if job.errors:
                return 200, job.errors
            return 204, None


# --- helpers shared with tests ---------------------------------------------------------------


def _connection_of(user: dict[str, Any]) -> str | None:
    identities = user.get("identities") or [{}]
    connection = identities[0].get("connection")
    return connection if isinstance(connection, str) else None


def _bare_id(connection_id: str, email: str) -> str:
    """A stable id per connection and email, so repeated test runs build the same tenant."""
    return hashlib.sha1(f"{connection_id}/{email.lower()}".encode()).hexdigest()[:24]


def _default_fields() -> list[dict[str, str]]:
    return [{"name": name} for name in ("user_id", "email", "email_verified", "created_at")]


def _invalid_body(message: str) -> HTTPError:
    return api_error(400, f"Payload validation error: '{message}'.", "invalid_body")


def _error(code: str, message: str, path: str) -> dict[str, str]:
    return {"code": code, "message": message, "path": path}


def _redacted(user: Any) -> Any:
    """The user as submitted, with password hashes shown as ***** (as /errors does)."""
    if not isinstance(user, dict):
        return user
    shown = copy.deepcopy(user)
    if isinstance(shown.get("password_hash"), str):
        shown["password_hash"] = "*****"
    hashed = shown.get("custom_password_hash")
    if isinstance(hashed, dict) and isinstance(hashed.get("hash"), dict):
        hashed["hash"]["value"] = "*****"
    return shown


def _parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    parts = fake_service.form_parts(content_type, body)
    if parts is None:
        raise api_error(400, "Bad multipart body", "invalid_body")
    return parts


def synthetic_user(number: int) -> dict[str, Any]:
    bare_id = f"{number:024x}"
    return {
        "user_id": f"auth0|{bare_id}",
        "email": f"synthetic{number}@example.com",
        "email_verified": number % 2 == 0,
        "name": f"Synthetic User {number}",
        "given_name": "Synthetic",
        "family_name": f'O"Brien {number}',
        "identities": [
            {
                "connection": DEFAULT_CONNECTION,
                "provider": "auth0",
                "user_id": bare_id,
                "isSocial": False,
            }
        ],
        "app_metadata": {"plan": "free", "number": number},
        "user_metadata": {"country": "NZ", "note": "=1+1"},
        "created_at": "2021-09-16T03:24:32.897Z",
        "updated_at": "2021-09-16T03:24:32.897Z",
        "logins_count": number % 100,
    }


_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def resolve_path(value: Any, path: str) -> Any:
    """An export field name (`identities[0].connection`, `user_metadata.name`) on a user."""
    for match in _PATH_TOKEN.finditer(path):
        key, index = match.groups()
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                return MISSING
            value = value[key]
        else:
            position = int(index)
            if not isinstance(value, list) or position >= len(value):
                return MISSING
            value = value[position]
    return value


def _csv_plain(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def auth0_csv_cell(value: Any, *, date: bool = False) -> str:
    """One cell as Auth0 writes it (§1.6): every string gets a leading ', is quoted, and has its
    quotes doubled; Auth0's own ISO dates, numbers and booleans are bare; missing is empty."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str) and date and ISO_DATE.match(value):
        return value
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    )
    return "\"'" + text.replace('"', '""') + '"'


# --- import schema (§2.3) --------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check(
    errors: list[dict[str, Any]], value: Any, path: str, kind: str, *, low: int = 0, high: int = 0
) -> bool:
    if not isinstance(value, _TYPES[kind]):
        errors.append(
            _error("INVALID_TYPE", f"Expected type {kind} but found type {_type_name(value)}", path)
        )
        return False
    if not isinstance(value, str):
        return True
    if low and len(value) < low:
        errors.append(
            _error("MIN_LENGTH", f"String is too short ({len(value)} chars), minimum {low}", path)
        )
        return False
    if high and len(value) > high:
        errors.append(
            _error("MAX_LENGTH", f"String is too long ({len(value)} chars), maximum {high}", path)
        )
        return False
    return True


_PROPERTIES: dict[str, tuple[str, int, int]] = {
    "email": ("string", 1, 254),
    "email_verified": ("boolean", 0, 0),
    "phone_number": ("string", 0, 0),
    "phone_verified": ("boolean", 0, 0),
    "user_id": ("string", 1, 0),
    "username": ("string", 1, 128),
    "given_name": ("string", 1, 150),
    "family_name": ("string", 1, 150),
    "name": ("string", 1, 150),
    "nickname": ("string", 1, 350),
    "picture": ("string", 0, 0),
    "blocked": ("boolean", 0, 0),
    "password_hash": ("string", 0, 0),
    "custom_password_hash": ("object", 0, 0),
    "app_metadata": ("object", 0, 0),
    "user_metadata": ("object", 0, 0),
    "mfa_factors": ("array", 0, 0),
}


def validate_import_user(user: Any) -> list[dict[str, Any]]:
    """Per-user errors as an import job reports them ([] for a valid user)."""
    errors: list[dict[str, Any]] = []
    if not isinstance(user, dict):
        return [_error("INVALID_TYPE", f"Expected type object but found {_type_name(user)}", "")]
    extra = [key for key in user if key not in _PROPERTIES]
    if extra:
        errors.append(
            _error(
                "OBJECT_ADDITIONAL_PROPERTIES",
                f"Additional properties not allowed: {','.join(extra)}",
                extra[0],
            )
        )
    if "email" not in user:
        errors.append(_error("OBJECT_REQUIRED", "Missing required property: email", "email"))
    for key, (kind, low, high) in _PROPERTIES.items():
        if key in user and not _check(errors, user[key], key, kind, low=low, high=high):
            continue
        value = user.get(key)
        if key == "email" and value is not None:
            local = value.split("@")[0]
            if not EMAIL.match(value) or len(local) > 64:
                errors.append(
                    _error(
                        "FORMAT", f"Object didn't pass validation for format email: {value}", key
                    )
                )
        elif key == "phone_number" and value is not None and not E164.match(value):
            errors.append(
                _error("PATTERN", f"String does not match pattern {E164.pattern}: {value}", key)
            )
        elif key == "app_metadata" and value is not None:
            for forbidden in FORBIDDEN_APP_METADATA:
                if forbidden in value:
                    errors.append(
                        _error(
                            "NOT_PASSED",
                            f"Forbidden attribute in app_metadata: {forbidden}",
                            f"app_metadata.{forbidden}",
                        )
                    )
        elif key == "custom_password_hash" and value is not None:
            _check_custom_hash(errors, value)
        elif key == "mfa_factors" and value is not None:
            _check_mfa(errors, value)
    if "password_hash" in user and "custom_password_hash" in user:
        errors.append(
            _error(
                "NOT_PASSED",
                "password_hash and custom_password_hash cannot both be present",
                "custom_password_hash",
            )
        )
    return errors


def _check_custom_hash(errors: list[dict[str, Any]], value: dict[str, Any]) -> None:
    path = "custom_password_hash"
    allowed = {
        "algorithm", "hash", "salt", "password", "keylen", "cost", "blockSize", "parallelization",
    }  # fmt: skip
    extra = [key for key in value if key not in allowed]
    if extra:
        errors.append(
            _error(
                "OBJECT_ADDITIONAL_PROPERTIES",
                f"Additional properties not allowed: {','.join(extra)}",
                f"{path}.{extra[0]}",
            )
        )
    for required in ("algorithm", "hash"):
        if required not in value:
            errors.append(
                _error(
                    "OBJECT_REQUIRED",
                    f"Missing required property: {required}",
                    f"{path}.{required}",
                )
            )
    if "algorithm" in value and value["algorithm"] not in HASH_ALGORITHMS:
        errors.append(
            _error("ENUM_MISMATCH", f"No enum match for: {value['algorithm']}", f"{path}.algorithm")
        )
    if "hash" in value:
        hashed = value["hash"]
        if _check(errors, hashed, f"{path}.hash", "object") and "value" not in hashed:
            errors.append(
                _error("OBJECT_REQUIRED", "Missing required property: value", f"{path}.hash.value")
            )


def _check_mfa(errors: list[dict[str, Any]], factors: list[Any]) -> None:
    if not factors:
        errors.append(
            _error("ARRAY_LENGTH_SHORT", "Array is too short (0), minimum 1", "mfa_factors")
        )
    if len(factors) > 10:
        errors.append(
            _error(
                "ARRAY_LENGTH_LONG",
                f"Array is too long ({len(factors)}), maximum 10",
                "mfa_factors",
            )
        )
    patterns = {"totp": ("secret", r"^[A-Z2-7]+$"), "phone": ("value", E164.pattern),
                "email": ("value", r"^[^@\s]+@[^@\s]+$")}  # fmt: skip
    for index, factor in enumerate(factors):
        path = f"mfa_factors[{index}]"
        if not isinstance(factor, dict) or len(factor) != 1 or next(iter(factor)) not in patterns:
            errors.append(_error("MFA_FACTORS_FAILED", "Invalid MFA factor", path))
            continue
        kind = next(iter(factor))
        key, pattern = patterns[kind]
        inner = factor[kind]
        if not isinstance(inner, dict) or not re.match(pattern, str(inner.get(key, ""))):
            errors.append(_error("MFA_FACTORS_FAILED", f"Invalid {kind} factor", path))
