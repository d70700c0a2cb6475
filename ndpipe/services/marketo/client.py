"""Marketo's REST API, as far as bulk lead import needs it (CRM.md §1).

- Hosts: the REST endpoint from Admin › Web Services is `https://<munchkin>.mktorest.com/rest`;
  the identity service is at `{host}/identity` and the bulk endpoints at `{host}/bulk/v1/...`,
  which are not under `/rest`. URLs are built without `//` (Adobe deprecates them).
- Token: client credentials, sent as query parameters to `/identity/oauth/token` (as the
  OpenAPI file declares them; identity calls do not count against the limits). The access token
  itself is only ever sent in the `Authorization: Bearer` header. `expires_in` is the time
  *left*: asking again before expiry returns the same token, so it is renewed when less than a
  minute is left (ServiceClient), and on 601/602.
- Answers: errors come back as HTTP 200 with `"success": false` and `errors: [{code, message}]`
  (codes are strings). 606 (100 calls / 20 s) waits for the next 20-second window, 615 (10
  concurrent calls) backs off, 604/608/611/713 and 5xx are retried with backoff, 607 (daily
  quota) stops the run (QuotaReached, exit 3), 1016/1019 (too many imports, import in
  progress) are waited out by `create_batch`, and the others are refused with Marketo's own
  message (exit 1).
"""

from __future__ import annotations

from typing import IO, Any, Unpack
from urllib.parse import urlsplit

import httpx

from ndpipe.errors import Refused, RemoteError, UsageError
from ndpipe.services.http import (
    ClientOptions,
    ServiceClient,
    Token,
    Verdict,
    json_body,
    register,
)

# Marketo's rate limit counts calls in windows of this many seconds (100 calls per window).
RATE_WINDOW = 20.0
# A wait after 615 (more than 10 concurrent calls on the instance, all integrations together).
CONCURRENCY_WAIT = 2.0
TOKEN_CODES = frozenset({"601", "602"})
TRANSIENT_CODES = frozenset({"604", "608", "611", "713"})
QUOTA_CODE = "607"
RATE_CODE = "606"
CONCURRENCY_CODE = "615"
# On creating a batch: wait and send again.
BUSY_CODES = frozenset({"1016", "1019"})
BATCH_ENDED = ("Complete", "Failed")
FORMATS = ("csv", "tsv", "ssv")
# What each refusal means for the user, beside Marketo's own message.
ADVICE = {
    "603": "the API user's role lacks the permission (Read-Write Lead), or this machine's IP "
    "address is not on the instance's allowlist",
    "1003": "Marketo found invalid data in the request",
    "1006": "a header name is not a Marketo REST API field name (see Admin › Field Management, "
    "or GET /rest/v1/leads/describe.json: use each field's rest.name)",
    "1011": "the field cannot be used as the lookup field (--lookup-field)",
    "1013": "the object was not found: check --list-id",
    "1018": "the instance syncs natively with a CRM, which blocks this operation",
    "1008": "the API user has no access to the partition (--partition)",
    "1009": "the instance has partitions: give --partition",
}


class QuotaReached(RemoteError):
    """Marketo's daily API quota is used up (607); it resets at 00:00 Central Time."""


def hosts(endpoint: str) -> str:
    """The instance's base URL (scheme and host) from its REST endpoint.

    `https://123-ABC-456.mktorest.com/rest`, with or without `/rest` (or `/identity`, or a
    trailing slash), gives `https://123-ABC-456.mktorest.com`; any other path is a UsageError.
    """
    url = endpoint.strip()
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path not in ("", "/rest", "/identity"):
        raise UsageError(
            "the Marketo endpoint is the REST API endpoint from Admin › Integration › Web "
            "Services (https://123-ABC-456.mktorest.com/rest); its path can only be /rest"
        )
    return f"{parts.scheme}://{parts.netloc}"


def errors_of(body: Any) -> list[tuple[str, str]]:
    """(code, message) of each error in a Marketo answer with `"success": false`."""
    if not isinstance(body, dict) or body.get("success") is not False:
        return []
    found = []
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            found.append((str(error.get("code", "")), str(error.get("message", ""))))
    return found or [("", "Marketo said success: false without an error code")]


class MarketoClient(ServiceClient):
    """A client for one Marketo instance. Use it as a context manager, or call close()."""

    service = "Marketo"
    address = "the Marketo endpoint"
    settings = (
        "the endpoint and the credentials (--endpoint, --client-id, --client-secret or MARKETO_*)"
    )

    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: str,
        **options: Unpack[ClientOptions],
    ) -> None:
        register(client_secret)
        self.client_id = client_id
        self._client_secret = client_secret
        options.setdefault("poll_interval", 15.0)
        options.setdefault("timeout", 120.0)  # a 10 MB upload on a slow link
        super().__init__(hosts(endpoint), can_renew=True, **options)

    def __repr__(self) -> str:
        return f"MarketoClient({self.base_url!r})"

    # --- the token --------------------------------------------------------------------------

    def fetch_token(self) -> Token:
        params = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
        }
        url = "/identity/oauth/token"
        response = self.request("GET", url, authorized=False, params=params)
        if response.status_code != 200:
            kind = Refused if response.status_code in (400, 401, 403) else RemoteError
            raise kind(
                f"Marketo refused the client credentials: {response.status_code} "
                f"{self.message(response)}; check --client-id and --client-secret "
                "(MARKETO_CLIENT_ID, MARKETO_CLIENT_SECRET) and the custom service in Admin › "
                "LaunchPoint"
            )
        body = self.decode(response, "GET", url)
        if not isinstance(body, dict):
            raise RemoteError("Marketo's identity service returned no token")
        return self.token_from(body.get("access_token"), body.get("expires_in"))

    # --- reading answers --------------------------------------------------------------------

    def judge(self, response: httpx.Response, authorized: bool) -> Verdict | None:
        status = response.status_code
        if status >= 500:
            return Verdict("transient", f"{status} {self.message(response)}")
        for code, message in _answer_errors(response):
            text = f"{code} {message}".strip()
            if code in TOKEN_CODES and authorized:
                return Verdict("token", text)
            if code == RATE_CODE:
                return Verdict("rate_limited", text, self.to_next_window())
            if code == CONCURRENCY_CODE:
                return Verdict("rate_limited", text, CONCURRENCY_WAIT)
            if code in TRANSIENT_CODES:
                return Verdict("transient", text)
        return None

    def to_next_window(self) -> float:
        """Seconds until the next 20-second rate-limit window begins."""
        return RATE_WINDOW - (self.now() % RATE_WINDOW)

    def message(self, response: httpx.Response) -> str:
        body = json_body(response) if _is_json(response) else None
        found = errors_of(body)
        if found:
            return "; ".join(f"{code} {message}".strip() for code, message in found)
        if isinstance(body, dict) and body.get("error_description"):
            return f"{body.get('error')}: {body['error_description']}"
        return super().message(response)

    def checked(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The body of a successful answer; otherwise the error it means (see the module)."""
        if response.status_code == 413:
            raise Refused(
                f"Marketo {what} refused the file as too large (413: bulk requests must be under "
                "10 MB); give a smaller --max-bytes"
            )
        if response.status_code != 200:
            raise self.failure(response, *what.split(" ", 1))
        body = self.decode(response, *what.split(" ", 1))
        if not isinstance(body, dict):
            raise RemoteError(f"Marketo {what} returned an unexpected answer")
        found = errors_of(body)
        if not found:
            return body
        code = found[0][0]
        text = "; ".join(f"{c} {m}".strip() for c, m in found)
        if code == QUOTA_CODE:
            raise QuotaReached(
                f"Marketo's daily API quota is used up ({text}); it resets at 00:00 Central "
                "Time (06:00 UTC, 05:00 UTC in summer)"
            )
        if code in TOKEN_CODES:
            raise Refused(f"Marketo {what} refused the access token again ({text})")
        advice = ADVICE.get(code)
        raise Refused(f"Marketo {what} failed: {text}" + (f": {advice}" if advice else ""))

    # --- bulk lead import -------------------------------------------------------------------

    def create_batch(
        self,
        upload: IO[bytes],
        *,
        filename: str,
        format: str,
        lookup_field: str | None,
        list_id: int | None,
        partition: str | None,
        slot_wait: float | None = None,
    ) -> dict[str, Any]:
        """POST /bulk/v1/leads.json with the file (multipart part `file`); returns result[0]
        ({batchId, importId, status}). Too many imports (1016) or an import into the same list
        in progress (1019) is waited out, for at most `slot_wait` seconds in all."""
        params: dict[str, Any] = {"format": format}
        if lookup_field:
            params["lookupField"] = lookup_field
        if list_id is not None:
            params["listId"] = list_id
        if partition:
            params["partitionName"] = partition
        content_type = "text/csv" if format == "csv" else "text/plain"
        files = {"file": (filename, upload, f"{content_type}; charset=utf-8")}
        limit = self.retry.import_slot_wait if slot_wait is None else slot_wait
        waited = 0.0
        what = "POST /bulk/v1/leads.json"
        while True:
            response = self.request(
                "POST", "/bulk/v1/leads.json", params=params, files=files, idempotent=False
            )
            busy = _busy(response)
            if busy is None:
                body = self.checked(response, what)
                return _first_result(body, what)
            if waited >= limit:
                raise RemoteError(
                    f"Marketo kept answering {busy} for {waited / 60:.0f} min: other imports "
                    "fill the instance's queue; try again later"
                )
            wait = max(self.poll_interval, 0.0) + self._jitter()
            self.notify(f"Marketo is busy ({busy}); trying the next file again in {wait:.0f} s")
            self.pause(wait)
            waited += wait

    def batch(self, batch_id: int | str) -> dict[str, Any]:
        """GET /bulk/v1/leads/batch/{id}.json: result[0] (status, numOfLeadsProcessed, ...)."""
        url = f"/bulk/v1/leads/batch/{batch_id}.json"
        body = self.checked(self.request("GET", url), f"GET {url}")
        return _first_result(body, f"GET {url}")

    def batch_rows(self, batch_id: int | str, kind: str) -> bytes | None:
        """The failures or warnings file of a batch (the uploaded rows in the upload's format,
        plus a last reason column); None when there is none (404)."""
        url = f"/bulk/v1/leads/batch/{batch_id}/{kind}.json"
        response = self.request("GET", url)
        if response.status_code == 404:
            return None
        if response.status_code == 200 and _is_json(response):
            self.checked(response, f"GET {url}")  # an error answer raises here
        elif response.status_code != 200:
            raise self.failure(response, "GET", url)
        return response.content


def _is_json(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "")
    return "json" in kind or response.content[:1] == b"{"


def _answer_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """The (code, message) errors of a 200 JSON answer (Marketo's errors come with 200)."""
    if response.status_code != 200 or not _is_json(response):
        return []
    return errors_of(json_body(response))


def _busy(response: httpx.Response) -> str | None:
    for code, message in _answer_errors(response):
        if code in BUSY_CODES:
            return f"{code} {message}".strip()
    return None


def _first_result(body: dict[str, Any], what: str) -> dict[str, Any]:
    result = body.get("result")
    if isinstance(result, list) and result and isinstance(result[0], dict):
        first: dict[str, Any] = result[0]
        return first
    raise RemoteError(f"Marketo {what} returned no result")
