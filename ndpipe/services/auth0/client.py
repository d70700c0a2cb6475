"""The Auth0 Management API client: token, connections, export and import jobs, downloads.

Only the endpoints ndpipe needs (AUTH0.md §1, §2), on httpx. Every call retries what is worth
retrying and nothing else:

- 429 with X-RateLimit-Reset (unix seconds): sleep until the reset plus jitter, capped per wait
  and in total, so a long run rides out a rate-limit storm without hammering the tenant;
- 5xx and connection errors: exponential backoff with jitter, a bounded number of attempts;
- 401: fetch a new client-credentials token once (tokens last 24 h; runs can last longer).

The client secret and the tokens never appear in an exception message, a notice or a repr:
each is registered with `ndpipe.errors.register_secret` as soon as it is known, messages are
built from Auth0's error text and httpx's, both passed through `redact`, and never from URLs
with query strings (a signed download link is a credential too). No httpx exception leaves the
client: a request httpx or h11 refuses to send (a header value with a line break or a non-ASCII
character, a URL it cannot parse) is a UsageError, never retried; anything else is retried like
a dropped connection and ends as a RemoteError.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack
from urllib.parse import quote, urlsplit

import httpx

from ndpipe.errors import Refused, RemoteError, UsageError, redact
from ndpipe.services.http import (
    SENDABLE,
    SURROUNDING_WHITESPACE,
    UNSENDABLE,
    ClientOptions,
    RetryPolicy,
    ServiceClient,
    Token,
    Verdict,
    excerpt,
    json_body,
    make_http,
    register,
)
from ndpipe.services.http import problem as _problem

CONNECTION_ID = re.compile(r"^con_[A-Za-z0-9]{16}$")
GZIP_MAGIC = b"\x1f\x8b"
# Statuses after which a job will never complete; anything unknown counts as still running.
JOB_FAILED = ("failed", "expired", "cancelled")
IMPORT_LIMIT_MESSAGE = "active import users jobs"
# Decompressed chunks are at most this big, whatever the compression ratio: constant memory.
OUTPUT_CHUNK = 256 * 1024
DOWNLOAD_CHUNK = 64 * 1024
__all__ = ["RetryPolicy"]  # re-exported: callers build one with the client


@dataclass(frozen=True)
class Credentials:
    """Where the tenant is and how to authenticate; the secret and token stay out of repr.

    `domain` is a bare domain (tenant.eu.auth0.com, meaning https) or a base URL with a scheme
    (http://127.0.0.1:8080 for tests). Either `token` (a ready Management API token) or
    `client_id` with `client_secret` is needed; with both, the credentials renew the token.
    """

    domain: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # The whitespace around a value (a token file saved with CR LF) is no part of it;
        # the secrets are registered as given and as sent.
        for name in ("client_id", "client_secret", "token"):
            value = getattr(self, name)
            if value is None:
                continue
            stripped = value.strip(SURROUNDING_WHITESPACE) or None
            if name != "client_id":
                register(value)
                register(stripped)
            object.__setattr__(self, name, stripped)
        if not self.domain.strip():
            raise UsageError("no Auth0 domain: give --domain or set AUTH0_DOMAIN")
        self.base_url  # noqa: B018  (a bad domain is a usage error now, not at the first call)
        if not self.token and not (self.client_id and self.client_secret):
            raise UsageError(
                "no Auth0 credentials: give --client-id and --client-secret "
                "(or AUTH0_CLIENT_ID and AUTH0_CLIENT_SECRET), or a token (--token, AUTH0_TOKEN)"
            )
        for label, value in (
            ("client ID", self.client_id),
            ("client secret", self.client_secret),
            ("token", self.token),
        ):
            if value is not None and not SENDABLE.fullmatch(value):
                raise UsageError(
                    f"the Auth0 {label} holds whitespace, a control character or a non-ASCII "
                    "character; only visible ASCII characters are allowed"
                )

    @property
    def base_url(self) -> str:
        """The domain as a URL without a trailing slash; a domain that is no http(s) URL of a
        host is a UsageError (the domain is not quoted: it may hold a user name and password)."""
        domain = self.domain.strip()
        url = domain if "://" in domain else f"https://{domain}"
        if url.split("://", 1)[0].lower() not in ("http", "https"):
            raise UsageError("the Auth0 domain must be a host name or an http(s) URL")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
        except ValueError:
            parts = None  # raised below, so that the ValueError is not the UsageError's context
        if parts is None:
            raise UsageError("the Auth0 domain is not a valid URL: check its host and port")
        if not parts.hostname:
            raise UsageError("the Auth0 domain names no host")
        return url.rstrip("/")

    @property
    def audience(self) -> str:
        """The Management API identifier; it always ends in a slash (AUTH0.md §1.1)."""
        return f"{self.base_url}/api/v2/"

    @property
    def can_renew(self) -> bool:
        return bool(self.client_id and self.client_secret)


class JobFailed(Refused):
    """A job ended failed, expired or cancelled; `job` is what Auth0 returned."""

    def __init__(self, message: str, job: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.job = dict(job)


class ImportTooLarge(Refused):
    """Auth0 refused an import request over its 512,000-byte limit (413)."""


class ImportSlotsBusy(RemoteError):
    """Two import jobs were still active when the client stopped waiting for a slot."""


def _label(job: Mapping[str, Any]) -> str:
    kind = {"users_export": "export", "users_import": "import"}.get(str(job.get("type")), "")
    return f"{kind} job {job.get('id')}".strip()


class Auth0Client(ServiceClient):
    """A Management API client for one tenant. Use it as a context manager, or call close().

    The retries, waits and token handling are ndpipe.services.http's; this class says how
    Auth0 answers (X-RateLimit-Reset, the import slots' 429) and adds the export download.
    """

    service = "Auth0"
    address = "the Auth0 domain"
    settings = (
        "the domain and the credentials (--domain, --client-id, --client-secret, --token or "
        "AUTH0_*)"
    )

    def __init__(
        self,
        credentials: Credentials,
        *,
        job_timeout: float = 8 * 3600.0,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.credentials = credentials
        self.job_timeout = job_timeout
        super().__init__(
            credentials.base_url,
            token=credentials.token,
            can_renew=credentials.can_renew,
            **options,
        )
        # Downloads go through a client that has never seen the token: signed links refuse
        # a second credential, and the token must not travel to the file store.
        self._download = make_http(None, self.timeout, self.transport, "the Auth0 domain")

    def close(self) -> None:
        super().close()
        self._download.close()

    def watch_downloads(self, hook: Callable[[httpx.Response], None]) -> None:
        """Let HOOK see each export download response as soon as its headers arrive, before
        its body is read (its size, and the bytes received so far as it is read): a progress
        line (ndpipe.progress.DownloadProgress.response) needs no more."""
        hooks = self._download.event_hooks
        hooks.setdefault("response", []).append(hook)
        self._download.event_hooks = hooks

    def __enter__(self) -> Auth0Client:
        return self

    # --- connections and jobs ---------------------------------------------------------------

    def resolve_connection(self, name_or_id: str) -> str:
        """The con_ id of a connection given by name (GET /api/v2/connections) or by id."""
        if CONNECTION_ID.match(name_or_id):
            return name_or_id
        found = self.json(
            "GET",
            "/api/v2/connections",
            params={"name": name_or_id, "fields": "id,name", "include_fields": "true"},
        )
        if isinstance(found, dict):  # the include_totals shape
            found = found.get("connections", [])
        # Filtered again here: the name must match exactly, whatever the server did with it.
        ids = [c.get("id") for c in found if isinstance(c, dict) and c.get("name") == name_or_id]
        if not ids or not isinstance(ids[0], str):
            raise Refused(
                f"the tenant has no connection named {name_or_id!r} (names are case-sensitive)"
            )
        return ids[0]

    def start_export(
        self,
        connection_id: str | None = None,
        format: str = "json",
        fields: Sequence[Mapping[str, str]] | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """POST /api/v2/jobs/users-exports; the new job. Omitted options are not sent, since
        Auth0 then exports every connection, its default fields, and every user (§1.2)."""
        body: dict[str, Any] = {"format": format}
        if connection_id is not None:
            body["connection_id"] = connection_id
        if limit is not None:
            body["limit"] = limit
        if fields:
            body["fields"] = [
                {"name": f["name"], **({"export_as": f["export_as"]} if f.get("export_as") else {})}
                for f in fields
            ]
        job = self.json("POST", "/api/v2/jobs/users-exports", json=body, expect=(200, 201, 202))
        return _job_object(job)

    def get_job(self, job_id: str) -> dict[str, Any]:
        """GET /api/v2/jobs/{id} (for a completed export, with a fresh download location)."""
        return _job_object(self.json("GET", f"/api/v2/jobs/{quote(job_id, safe='')}"))

    @staticmethod
    def ended(job: Mapping[str, Any]) -> bool:
        """Has the job ended: completed, or failed, expired or cancelled (unknown statuses
        count as still running)?"""
        status = job.get("status")
        return status == "completed" or status in JOB_FAILED

    def poll_job(
        self,
        job_id: str,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        *,
        interval: float | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Read the job until it completes; on_progress sees every reading.

        A failed, expired or cancelled job raises JobFailed with its status_details. Unknown
        statuses count as still running, until `timeout` (8 h by default, the longest an
        export job runs) has passed.
        """
        interval = self.poll_interval if interval is None else interval
        timeout = self.job_timeout if timeout is None else timeout
        started = self._clock()
        while True:
            job = self.get_job(job_id)
            if on_progress is not None:
                on_progress(job)
            status = job.get("status")
            if status == "completed":
                return job
            if status in JOB_FAILED:
                raise _job_failed(job)
            if self._clock() - started >= timeout:
                raise RemoteError(
                    f"{_label(job)} is still {status!r} after {timeout / 3600:g} h; "
                    "stopped waiting (it may still finish)"
                )
            self._sleep(interval)

    def stream_export(self, job_id: str) -> Iterator[bytes]:
        """The decompressed export file of a completed job, as bytes chunks, in constant memory.

        The job is read again right before each download attempt for a fresh link (links live
        60 s). A download sends no Authorization header. An expired link (403) or a dropped
        connection gets a fresh link and resumes where it stopped, with a Range request when
        the server honours it, else by restarting and skipping what was already read; so the
        chunks never repeat or miss a byte. The file is gunzipped when its first bytes are the
        gzip magic, whatever the link's name or headers say.

        When it finally gives up it raises RemoteError; everything yielded before is an exact
        prefix of the file, so a consumer that emits only complete lines emits no partial record.
        """
        decoder = _Decoder()
        offset = 0  # bytes of the stored (compressed) file received so far
        etag: str | None = None
        use_range = True
        failures = 0
        problem = ""
        while True:
            if failures >= self.retry.download_attempts:
                raise RemoteError(
                    f"could not download export job {job_id} after {failures} attempts: {problem}"
                )
            location = self._location(self.get_job(job_id))
            headers = {"Range": f"bytes={offset}-"} if offset and use_range else {}
            unusable = ""
            try:
                with self._download.stream("GET", location, headers=headers) as response:
                    status = response.status_code
                    if status not in (200, 206):
                        response.read()
                        problem = f"{status} {self.message(response)}"
                        if status == 416:
                            use_range = False  # restart from byte 0, skipping what was read
                        elif status in (400, 401, 403):
                            self.notify(f"download link refused ({problem}); getting a new one")
                        elif status >= 500 or status == 429:
                            self._sleep(self.backoff(failures + 1))
                        else:
                            raise RemoteError(f"download of export job {job_id} failed: {problem}")
                        failures += 1
                        continue
                    new_etag = response.headers.get("etag")
                    if etag and new_etag and new_etag != etag and offset:
                        raise RemoteError(
                            f"the file of export job {job_id} changed between download attempts; "
                            "start a new export"
                        )
                    etag = etag or new_etag
                    skip = offset
                    if status == 206:
                        start = _range_start(response.headers.get("content-range"))
                        if start is None or start > offset:
                            raise RemoteError(
                                f"download of export job {job_id}: the server resumed at the "
                                "wrong place"
                            )
                        skip = offset - start
                    # No chunk_size: httpx would hold back a partial chunk, and lose it when
                    # the connection drops; offset must count every byte that was received.
                    for chunk in response.iter_raw():
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk = chunk[skip:]
                            skip = 0
                        offset += len(chunk)
                        failures = 0
                        yield from decoder.feed(chunk)
                    if skip:
                        raise RemoteError(
                            f"the file of export job {job_id} is shorter than before; "
                            "start a new export"
                        )
            except UNSENDABLE as error:
                # Not httpx's text: it may quote the signed link.
                unusable = type(error).__name__
            except httpx.HTTPError as error:
                failures += 1
                problem = _problem(error)
                self.notify(f"download interrupted ({problem}); resuming at byte {offset}")
                self._sleep(self.backoff(failures))
                continue
            if unusable:
                raise RemoteError(
                    f"Auth0 gave export job {job_id} a download link that cannot be requested "
                    f"({unusable})"
                )
            yield from decoder.finish(job_id)
            return

    def open_export(self, job_id: str) -> io.BufferedReader:
        """stream_export as a binary file object, for readers that want one (ndpipe.io)."""
        return io.BufferedReader(_ChunkReader(self.stream_export(job_id)), DOWNLOAD_CHUNK)

    def start_import(
        self,
        connection_id: str,
        users: bytes,
        *,
        upsert: bool = False,
        external_id: str | None = None,
        send_completion_email: bool = False,
    ) -> dict[str, Any]:
        """POST /api/v2/jobs/users-imports with USERS (a JSON array); the new job.

        send_completion_email defaults to false here (Auth0's default is true: one email to
        every tenant owner per job). While the tenant has 2 active import jobs, Auth0 answers
        429; that waits, with growing pauses, for up to RetryPolicy.import_slot_wait.
        """
        data = {
            "connection_id": connection_id,
            "upsert": "true" if upsert else "false",
            "send_completion_email": "true" if send_completion_email else "false",
        }
        if external_id is not None:
            data["external_id"] = external_id
        files = {"users": ("users.json", users, "text/json")}
        path = "/api/v2/jobs/users-imports"
        started = self._clock()
        pause = max(self.poll_interval, 1.0)
        while True:
            response = self.request("POST", path, data=data, files=files, idempotent=False)
            if response.status_code == 429 and _busy_importing(response):
                if self._clock() - started + pause > self.retry.import_slot_wait:
                    raise ImportSlotsBusy(
                        f"Auth0 still had 2 active import jobs after "
                        f"{self.retry.import_slot_wait / 60:g} minutes: {self.message(response)}"
                    )
                self.notify(f"2 import jobs are active in the tenant; waiting {pause:g} s")
                self._sleep(pause)
                pause = min(pause * 2, 60.0)
                continue
            if response.status_code == 413:
                raise ImportTooLarge(
                    f"Auth0 refused the users file ({len(users)} bytes): "
                    f"{self.message(response)}; send chunks of at most 500,000 bytes"
                )
            if response.status_code not in (200, 201, 202):
                raise self.failure(response, "POST", path)
            return _job_object(self.decode(response, "POST", path))

    def job_errors(self, job_id: str) -> list[dict[str, Any]]:
        """GET /api/v2/jobs/{id}/errors: the users an import job rejected ([] on 204).

        Each item is {"user": {...}, "errors": [{"code", "message", "path"}]}. A job-level
        failure (Auth0 answers with the job instead of a list) raises JobFailed.
        """
        path = f"/api/v2/jobs/{quote(job_id, safe='')}/errors"
        response = self.request("GET", path)
        if response.status_code == 204:
            return []
        if response.status_code != 200:
            raise self.failure(response, "GET", path)
        body = self.decode(response, "GET", path)
        if isinstance(body, dict):
            raise _job_failed({"id": job_id, **body})
        if not isinstance(body, list):
            raise RemoteError(f"Auth0 GET {path} returned {type(body).__name__}, not a list")
        return [item for item in body if isinstance(item, dict)]

    # --- the token and Auth0's answers ------------------------------------------------------

    def fetch_token(self) -> Token:
        credentials = self.credentials
        response = self.request(
            "POST",
            "/oauth/token",
            authorized=False,
            data={
                "grant_type": "client_credentials",
                "client_id": credentials.client_id or "",
                "client_secret": credentials.client_secret or "",
                "audience": credentials.audience,
            },
        )
        if response.status_code in (401, 403):
            raise Refused(
                f"Auth0 refused the client credentials for client ID {credentials.client_id!r} "
                f"at {self.base_url} ({self.message(response)}): check the client ID and "
                "secret, and that the application is authorized for the Management API"
            )
        if response.status_code != 200:
            raise self.failure(response, "POST", "/oauth/token")
        body = self.decode(response, "POST", "/oauth/token")
        if not isinstance(body, dict):
            body = {}
        # Auth0's tokens last 24 h; a run can last longer, and a 401 renews one too.
        return self.token_from(body.get("access_token"), body.get("expires_in"))

    def judge(self, response: httpx.Response, authorized: bool) -> Verdict | None:
        """429 waits until X-RateLimit-Reset (unix seconds); an import's "2 active jobs" 429 is
        returned, since waiting for it is the import's business."""
        if response.status_code == 429:
            if _busy_importing(response):
                return None
            try:
                wait: float | None = float(response.headers["x-ratelimit-reset"]) - self._clock()
            except (KeyError, ValueError):
                wait = None
            return Verdict("rate_limited", "429", wait)
        return super().judge(response, authorized)

    # --- responses --------------------------------------------------------------------------

    def message(self, response: httpx.Response) -> str:
        """Auth0's own explanation of an error response, scrubbed of secrets."""
        text = ""
        body = json_body(response)
        if isinstance(body, dict):
            error, description = body.get("error"), body.get("error_description")
            if "message" in body:
                text = str(body["message"])
            elif error and description:
                text = f"{error}: {description}"
            else:
                text = str(description or error or "")
        else:
            raw = response.text
            code = re.search(r"<Code>(.*?)</Code>", raw)
            message = re.search(r"<Message>(.*?)</Message>", raw)
            if code or message:
                text = ": ".join(m.group(1) for m in (code, message) if m)
            else:
                text = excerpt(raw)
        return redact(text or response.reason_phrase)

    def failure(self, response: httpx.Response, method: str, path: str) -> RemoteError:
        status = response.status_code
        message = self.message(response)
        if status == 401:
            hint = "renewing it did not help" if self.credentials.can_renew else "check the token"
            return Refused(
                f"Auth0 refused the Management API token for {method} {path} "
                f"(401: {message}); {hint}"
            )
        if status == 403:
            return Refused(
                f"Auth0 refused {method} {path} (403: {message}); the application needs the "
                "scopes read:users, create:users and read:connections"
            )
        if status == 404 and "/jobs/" in path:
            return Refused(
                f"Auth0 has no such job ({method} {path}: {message}); job data is deleted "
                "after 24 hours"
            )
        failure = Refused if 400 <= status < 500 and status != 429 else RemoteError
        return failure(f"Auth0 {method} {path} failed: {status} {message}")

    def _location(self, job: dict[str, Any]) -> str:
        status = job.get("status")
        if status in JOB_FAILED:
            raise _job_failed(job)
        if status != "completed":
            raise RemoteError(f"{_label(job)} is {status!r}, not completed; nothing to download")
        location = job.get("location")
        try:
            scheme = urlsplit(location).scheme if isinstance(location, str) else ""
        except ValueError:  # an unclosed [ in the host
            scheme = ""
        if not isinstance(location, str) or scheme not in ("http", "https"):
            raise RemoteError(f"{_label(job)} is completed but has no usable download location")
        return location


# --- helpers ---------------------------------------------------------------------------------


def _job_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise RemoteError("Auth0 returned a job without an id")
    return value


def _job_failed(job: Mapping[str, Any]) -> JobFailed:
    details = redact(str(job.get("status_details") or "Auth0 gave no details"))
    return JobFailed(f"Auth0 {_label(job)} {job.get('status', 'failed')}: {details}", job)


def _busy_importing(response: httpx.Response) -> bool:
    """Is this 429 the "2 active import users jobs" limit rather than a rate limit?"""
    return response.status_code == 429 and IMPORT_LIMIT_MESSAGE in response.text


def _range_start(content_range: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", content_range or "")
    return int(match.group(1)) if match else None


class _Decoder:
    """Gunzips (any number of gzip members) when the data starts with the gzip magic;
    passes anything else through. Output comes in chunks of at most OUTPUT_CHUNK bytes."""

    def __init__(self) -> None:
        self._head = b""
        self._gzip: bool | None = None
        self._inflater = zlib.decompressobj(wbits=31)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._gzip is None:
            self._head += data
            if len(self._head) < len(GZIP_MAGIC):
                return
            data, self._head = self._head, b""
            self._gzip = data.startswith(GZIP_MAGIC)
        if not self._gzip:
            yield data
            return
        while True:
            if self._inflater.eof:
                if not data.strip(b"\0"):  # zero padding after the last member is allowed
                    return
                self._inflater = zlib.decompressobj(wbits=31)
            try:
                out = self._inflater.decompress(data, OUTPUT_CHUNK)
            except zlib.error as error:
                raise RemoteError(f"the export file is not valid gzip: {error}") from None
            if out:
                yield out
            if self._inflater.eof:
                data = self._inflater.unused_data
                if not data:
                    return
                continue
            data = self._inflater.unconsumed_tail
            # A full output chunk may leave more output pending inside zlib.
            if not data and len(out) < OUTPUT_CHUNK:
                return

    def finish(self, job_id: str) -> Iterator[bytes]:
        if self._gzip is None:
            if self._head:
                yield self._head
            return
        if not self._gzip or self._inflater.eof:
            return
        rest = self._inflater.flush()
        if not self._inflater.eof:
            raise RemoteError(f"the file of export job {job_id} ended before its gzip end")
        if rest:
            yield rest


class _ChunkReader(io.RawIOBase):
    """A read-only raw stream over an iterator of bytes chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()
