"""The Salesforce client: a session by client credentials (or a ready token) and the Bulk API 2.0
ingest calls (CRM.md §2.2, §2.3).

- Session: `POST {My Domain}/services/oauth2/token` with grant_type=client_credentials, form
  encoded; the answer has an access_token and the instance_url to call, and no expires_in, so
  the session is renewed when Salesforce refuses it (401 INVALID_SESSION_ID), once per request.
  A ready token (--token) cannot be renewed: its 401 is the end of the run.
- Rate limits: 403 REQUEST_LIMIT_EXCEEDED for the org's concurrent long-running requests is
  waited out; the same code for TotalRequests (the rolling 24-hour API allocation) ends the run
  (QuotaReached, exit 3) with the resume instruction.
- Uploads: one CSV per job, read from a file and sent with Content-Length (never chunked: that
  Salesforce accepts chunked uploads is undocumented). A dropped upload is not sent again into
  the same job (a second PUT into a job is refused): the caller aborts the job and starts over.
- Results: streamed to a file as they arrive (gzip on the wire), so a large results file
  never sits in memory.
"""

from __future__ import annotations

import re
from typing import Any, BinaryIO, Unpack

import httpx

from ndpipe.errors import NdpipeError, OutputError, Refused, RemoteError, UsageError
from ndpipe.services.http import (
    ClientOptions,
    RetryPolicy,
    ServiceClient,
    Token,
    Verdict,
    json_object,
    make_http,
    problem,
)

# A current API version at the time of writing; any from 41.0 (Bulk API 2.0 ingest) works, and
# failedResults carries sf__Id from 53.0 on.
DEFAULT_API_VERSION = "62.0"
MIN_API_VERSION = 41
MAX_API_VERSION = 99
API_VERSION = re.compile(r"v?([0-9]{2,3})(?:\.0)?")
JOB_ID = re.compile(r"[A-Za-z0-9]{15,18}")
TERMINAL = ("JobComplete", "Failed", "Aborted")
RESULT_KINDS = ("successfulResults", "failedResults", "unprocessedrecords")
DOWNLOAD_CHUNK = 256 * 1024
# Aborting a job while stopping: a few quick tries, never the long backoff of a normal call.
ABORT_RETRY = RetryPolicy(attempts=2, backoff=0.2, max_backoff=0.5, rate_limit_budget=2.0)
ABORT_TIMEOUT = 10.0


class QuotaReached(RemoteError):
    """The org's 24-hour API request allocation is used up (REQUEST_LIMIT_EXCEEDED)."""


def api_version(text: str) -> str:
    """`62.0` (also `62` or `v62.0`) as Salesforce spells it in URLs; a UsageError otherwise."""
    match = API_VERSION.fullmatch(text.strip())
    number = int(match.group(1)) if match else 0
    if not MIN_API_VERSION <= number <= MAX_API_VERSION:
        raise UsageError(
            f"{text!r} is not an API version from {MIN_API_VERSION}.0 (Bulk API 2.0) on, "
            f"such as {DEFAULT_API_VERSION}"
        )
    return f"{number}.0"


def instance_base(url: str) -> str:
    """The My Domain URL as a base URL: https:// when no scheme is given, no trailing slash."""
    url = url.strip()
    return (url if "://" in url else f"https://{url}").rstrip("/")


class SalesforceClient(ServiceClient):
    """A Bulk API 2.0 client for one org. Use it as a context manager, or call close()."""

    service = "Salesforce"
    address = "the Salesforce instance URL"
    settings = (
        "the instance URL and the credentials (--instance-url, --client-id, --client-secret, "
        "--token or SF_*)"
    )

    def __init__(
        self,
        instance_url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        token: str | None = None,
        version: str = DEFAULT_API_VERSION,
        job_timeout: float = 24 * 3600.0,
        **options: Unpack[ClientOptions],
    ) -> None:
        if not token and not (client_id and client_secret):
            raise UsageError(
                "no Salesforce credentials: give --client-id and --client-secret (or "
                "SF_CLIENT_ID and SF_CLIENT_SECRET), or a token (--token, SF_ACCESS_TOKEN)"
            )
        self.client_id = client_id
        self._secret = client_secret
        self.version = api_version(version)
        self.job_timeout = job_timeout
        self.login_url = instance_base(instance_url)
        options.setdefault("poll_interval", 5.0)
        options.setdefault("timeout", 60.0)
        super().__init__(
            self.login_url, token=token, can_renew=bool(client_id and client_secret), **options
        )

    @property
    def api(self) -> str:
        return f"/services/data/v{self.version}/jobs/ingest"

    # --- the session ------------------------------------------------------------------------

    def fetch_token(self) -> Token:
        if not self.can_renew:
            # Only reached for a first token: a ready one is never fetched.
            raise Refused("Salesforce: no client credentials to start a session with")
        response = self.request(
            "POST",
            "/services/oauth2/token",
            authorized=False,
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id or "",
                "client_secret": self._secret or "",
            },
            headers={"Accept": "application/json"},
        )
        if response.status_code in (400, 401, 403):
            raise Refused(
                f"Salesforce refused the client credentials ({self.message(response)}); check "
                "--client-id and --client-secret (SF_CLIENT_ID, SF_CLIENT_SECRET), that the "
                "app has the client credentials flow enabled with a Run As user, and that "
                "--instance-url is the org's My Domain URL (login.salesforce.com does not "
                "take this flow)"
            )
        body = self._decoded(response, "POST", "/services/oauth2/token")
        token = self.token_from(body.get("access_token"))
        self._follow(body.get("instance_url"))
        return token

    def _follow(self, instance_url: Any) -> None:
        """Send the next calls where the token answer says the org lives (its instance_url),
        when that is an http(s) URL other than the one given."""
        if not isinstance(instance_url, str) or not instance_url:
            return
        base = instance_url.rstrip("/")
        if base == self.base_url or not re.fullmatch(r"https?://[^/\s?#@]+", base):
            return
        old = self._http
        self._http = make_http(base, self.timeout, self.transport, self.address)
        self.base_url = base
        old.close()

    # --- how Salesforce answers -------------------------------------------------------------

    def judge(self, response: httpx.Response, authorized: bool) -> Verdict | None:
        if response.status_code == 403 and self.error_code(response) == "REQUEST_LIMIT_EXCEEDED":
            if "TotalRequests" in self.message(response):
                return None  # the daily allocation: waiting minutes would not help
            return Verdict("rate_limited", f"403 {self.message(response)}", None)
        return super().judge(response, authorized)

    def error_code(self, response: httpx.Response) -> str | None:
        body = json_object(response)
        code = body.get("errorCode") if body is not None else None
        return str(code) if code else None

    def failure(self, response: httpx.Response, method: str, url: str) -> RemoteError:
        code = self.error_code(response)
        if code == "REQUEST_LIMIT_EXCEEDED":
            return QuotaReached(
                f"Salesforce refused {method} {_path(url)}: the org's API request limit is "
                f"reached ({self.message(response)}); it frees up over a rolling 24 hours"
            )
        error = super().failure(response, method, url)
        if response.status_code == 401:
            hint = (
                "the session expired again right after a new one was started"
                if self.can_renew
                else "the token (--token, SF_ACCESS_TOKEN) has expired or is not valid for "
                "this org: give a new one, or client credentials to renew it"
            )
            error.message += f"; {hint}"
        elif response.status_code == 404 and code == "NOT_FOUND":
            error.message += (
                f"; check --instance-url and that the org knows API version {self.version} "
                "(--api-version)"
            )
        return error

    def _decoded(self, response: httpx.Response, method: str, url: str) -> dict[str, Any]:
        if response.status_code not in (200, 201):
            raise self.failure(response, method, url)
        body = self.decode(response, method, url)
        if not isinstance(body, dict):
            raise RemoteError(f"Salesforce {method} {url} returned {type(body).__name__}")
        return body

    # --- ingest jobs ------------------------------------------------------------------------

    def create_job(
        self, object_name: str, operation: str, external_id: str | None
    ) -> dict[str, Any]:
        """A new Open ingest job for CSV with LF line ends and commas. Sent again after a
        dropped connection: a job that was created anyway has no data, is never closed and so
        never processes anything (Salesforce removes it after a day)."""
        body: dict[str, Any] = {
            "object": object_name,
            "operation": operation,
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if external_id is not None:
            body["externalIdFieldName"] = external_id
        job = self._decoded(self.request("POST", self.api, json=body), "POST", self.api)
        job_id = job.get("id")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise RemoteError("Salesforce created a job without a valid id")
        return job

    def upload(self, job_id: str, data: BinaryIO, size: int) -> None:
        """PUT the job's one CSV (DATA, SIZE bytes from its start) with Content-Length. Not sent
        again after a dropped connection (RemoteError): Salesforce refuses a second upload into
        a job, so the caller aborts this one and starts a new job."""
        url = f"{self.api}/{job_id}/batches"
        headers = {"Content-Type": "text/csv", "Content-Length": str(size)}
        data.seek(0)
        response = self.request(
            "PUT", url, content=_Reader(data), headers=headers, idempotent=False
        )
        if response.status_code not in (200, 201):
            raise self.failure(response, "PUT", url)

    def set_state(self, job_id: str, state: str, **options: Any) -> dict[str, Any]:
        url = f"{self.api}/{job_id}"
        response = self.request("PATCH", url, json={"state": state}, **options)
        if response.status_code == 409 or response.status_code == 400:
            # Sent twice after a dropped connection, the first may have done it already.
            info = self.job_info(job_id)
            done = TERMINAL if state == "Aborted" else ("UploadComplete", "InProgress", *TERMINAL)
            if info.get("state") in done:
                return info
        return self._decoded(response, "PATCH", url)

    def close_job(self, job_id: str) -> dict[str, Any]:
        """UploadComplete: without it Salesforce never processes the data."""
        return self.set_state(job_id, "UploadComplete")

    def abort_job(self, job_id: str) -> bool:
        """Abort the job, best effort and quickly (the run is stopping): True if it worked."""
        normal = self.retry
        self.retry = ABORT_RETRY
        try:
            self.set_state(job_id, "Aborted", timeout=ABORT_TIMEOUT)
            return True
        except NdpipeError:
            return False
        finally:
            self.retry = normal

    def job_info(self, job_id: str) -> dict[str, Any]:
        url = f"{self.api}/{job_id}"
        return self._decoded(self.request("GET", url), "GET", url)

    def download(self, job_id: str, kind: str, target: BinaryIO) -> None:
        """A result file (successfulResults, failedResults, unprocessedrecords) into TARGET,
        decompressed, streamed; retried from the start after a broken transfer."""
        assert kind in RESULT_KINDS
        url = f"{self.api}/{job_id}/{kind}/"
        failures = 0
        renewed = False
        rate_limited = 0.0
        while True:
            trouble, response = self._download_once(url, target)
            if response is None and not trouble:
                return
            if response is not None:
                verdict = self.judge(response, True)
                if verdict is None:
                    raise self.failure(response, "GET", url)
                if verdict.kind == "token" and self.can_renew and not renewed:
                    renewed = True
                    self.forget_token()
                    self.notify("Salesforce refused the session; starting a new one")
                    continue
                if verdict.kind == "token":
                    raise self.failure(response, "GET", url)
                if verdict.kind == "rate_limited":
                    rate_limited += self.wait_for_rate_limit(verdict, f"GET {url}", rate_limited)
                    continue
                trouble = verdict.problem
            failures += 1
            self.retry_or_raise(f"GET {url}", failures, trouble)

    def _download_once(self, url: str, target: BinaryIO) -> tuple[str, httpx.Response | None]:
        """("", None) when the file is in TARGET; (problem, None) after a broken transfer;
        ("", response) for an answer other than 200, read whole (an error is short)."""
        headers = {
            "Authorization": f"Bearer {self.access_token()}",
            "Accept-Encoding": "gzip",
            "Accept": "text/csv",
        }
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    return "", response
                target.seek(0)
                target.truncate()
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                    target.write(chunk)
                target.flush()
                return "", None
        except httpx.HTTPError as error:
            trouble = problem(error)
        except OSError as error:
            raise OutputError(f"cannot write a scratch file: {error.strerror}") from None
        return trouble, None


class _Reader:
    """A file's bytes as an iterator for httpx, read in chunks from the start (a retried
    request reads it again from the start)."""

    def __init__(self, data: BinaryIO) -> None:
        self.data = data

    def __iter__(self) -> Any:
        self.data.seek(0)
        while chunk := self.data.read(DOWNLOAD_CHUNK):
            yield chunk


def _path(url: str) -> str:
    return url.split("?", 1)[0]
