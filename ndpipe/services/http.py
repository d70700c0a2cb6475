"""One HTTP client for every service: Auth0, Marketo, Salesforce.

A service subclasses ServiceClient and says three things: how to get a token (`fetch_token`),
how to read its answers (`judge`: rate limited, worth retrying, token refused, or final) and how
to explain a failure (`message`). Everything else is shared and behaves the same everywhere:

- rate limits: wait as long as the service says (or a short default), plus jitter, capped per
  wait and in total, so a long run rides out a storm without hammering the service;
- 5xx, transient codes and dropped connections: exponential backoff with jitter, a bounded
  number of attempts, then RemoteError (exit 3);
- tokens: fetched when first needed, refreshed before they expire (when the service says when)
  and once per request when the service refuses one; sent only in the Authorization header;
- secrets: every credential and every token is registered with `ndpipe.errors.register_secret`
  as soon as it is known, and every message built here is passed through `redact`. No httpx
  exception leaves the client: a request httpx refuses to send (a header value with a line break
  or a non-ASCII character, a URL it cannot parse) is a UsageError, never retried; anything else
  is retried like a dropped connection and ends as a RemoteError.

`sleep`, `clock` (unix seconds), `jitter` (0 <= x < 1) and `transport` can be replaced by tests;
`notify` receives one-line notices (retries, waits) meant for stderr.
"""

from __future__ import annotations

import functools
import random
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, Unpack
from urllib.parse import quote, quote_plus

import httpx

from ndpipe.errors import Refused, RemoteError, UsageError, redact, register_secret

USER_AGENT = "ndpipe"
# What a credential can hold once the whitespace around it is gone: visible ASCII, the only
# characters an HTTP header carries and the only ones these services issue.
SENDABLE = re.compile(r"[!-~]+")
SURROUNDING_WHITESPACE = " \t\r\n"
# What httpx raises for a request it refuses to send: a header value h11 rejects (a line break),
# a header it cannot encode (non-ASCII), a URL it cannot parse, a scheme it does not speak. The
# same request would fail the same way again: these are settings to fix, never retried.
UNSENDABLE = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeError)
# A token with less than this left is renewed before it is sent (Marketo's tokens live an hour,
# and asking again before they expire returns the same token with what is left of its life).
TOKEN_MARGIN = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries before it raises RemoteError."""

    attempts: int = 6  # per request, for 5xx answers, transient codes and connection errors
    backoff: float = 0.5  # first wait in seconds, doubled after each failure
    max_backoff: float = 30.0
    max_rate_limit_wait: float = 60.0  # one wait; a reset further away is clock skew
    rate_limit_budget: float = 900.0  # total seconds one request may wait for rate limits
    download_attempts: int = 8  # consecutive download failures that made no progress
    import_slot_wait: float = 3 * 3600.0  # waiting for a service's job slots to free up


class ClientOptions(TypedDict, total=False):
    """How a client behaves, the same for every service; subclasses pass these on as given."""

    retry: RetryPolicy | None
    poll_interval: float  # seconds between two reads of a job
    timeout: float  # seconds for one request
    sleep: Callable[[float], None]
    clock: Callable[[], float]  # unix seconds
    jitter: Callable[[], float]  # 0 <= x < 1
    notify: Callable[[str], None] | None  # one-line notices (retries, waits) for stderr
    transport: httpx.BaseTransport | None


@dataclass(frozen=True)
class Verdict:
    """What a service's answer means for the request that got it (see ServiceClient.judge).

    rate_limited: wait `wait` seconds (None: a short default) and send again;
    transient: back off and send again, up to RetryPolicy.attempts;
    token: the token was refused or has expired: get a new one and send again, once.
    """

    kind: Literal["rate_limited", "transient", "token"]
    problem: str
    wait: float | None = None


@dataclass(frozen=True)
class Token:
    """An access token and, when the service says, the unix time it expires."""

    value: str
    expires: float | None = None


def register(secret: str | None) -> None:
    """Hide SECRET in every message, also as a form body or a query string encodes it."""
    if secret:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            register_secret(form)


def clean_secret(value: str | None, service: str, label: str) -> str | None:
    """A credential as it will be sent: the whitespace around it (a token file saved with CR LF)
    is no part of it; registered as given and as sent; one that still holds whitespace, a
    control or a non-ASCII character is a UsageError that does not show it."""
    if value is None:
        return None
    register(value)
    stripped = value.strip(SURROUNDING_WHITESPACE) or None
    register(stripped)
    check_sendable(stripped, service, label)
    return stripped


def check_sendable(value: str | None, service: str, label: str) -> None:
    if value is not None and not SENDABLE.fullmatch(value):
        raise UsageError(
            f"the {service} {label} holds whitespace, a control character or a non-ASCII "
            "character; only visible ASCII characters are allowed"
        )


def problem(error: Exception) -> str:
    """An httpx error as one line: its type and its text, which names the failure, not the URL.
    A remote protocol error may quote what the server sent, which may echo a credential."""
    detail = redact(" ".join(str(error).split()))
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def unsendable(error: Exception) -> str:
    """What is wrong with a request httpx refused to send, without the text of its error: h11
    quotes the whole offending header value, the token included, in a form `redact` may miss
    (bytes repr, with escapes)."""
    name = type(error).__name__
    if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return problem(error)
    if isinstance(error, UnicodeError):
        return f"{name}: a header value holds a non-ASCII character"
    return f"{name}: a header value holds a line break, a control character or a space"


@functools.cache
def tls_context() -> ssl.SSLContext:
    # Loading the CA bundle is the slowest part of making a client; all clients share one.
    return httpx.create_ssl_context()


def make_http(
    base_url: str | None, timeout: float, transport: httpx.BaseTransport | None, what: str
) -> httpx.Client:
    """An httpx client with ndpipe's timeouts and headers; a base URL or proxy variable httpx
    cannot use, or certificates it cannot load, is a UsageError."""
    timeouts = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    failure = ""
    try:
        return httpx.Client(
            base_url=base_url or "",
            timeout=timeouts,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            verify=tls_context(),
        )
    except (httpx.InvalidURL, ValueError) as error:  # the URL, or a proxy variable
        failure = (
            f"{what}, or a proxy variable (HTTPS_PROXY, ALL_PROXY), is not a usable URL "
            f"({problem(error)})"
        )
    except OSError as error:
        failure = (
            f"could not load the TLS certificates ({problem(error)}); check SSL_CERT_FILE "
            "and SSL_CERT_DIR"
        )
    # Raised here, out of the except clause, so that httpx's exception is not its context.
    raise UsageError(failure)


class ServiceClient:
    """The shared machinery; a service subclass sets `service` and `settings`, and overrides
    `fetch_token`, `judge` and `message` where its API differs from plain HTTP."""

    service = "the service"  # its name in messages: "Auth0", "Marketo", "Salesforce"
    settings = "the settings"  # the options to check when a request cannot be sent
    address = "the service's URL"  # what the base URL is called: "the Auth0 domain"

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        can_renew: bool = False,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.base_url = base_url
        self.retry = options.get("retry") or RetryPolicy()
        self.poll_interval = options.get("poll_interval", 2.0)
        self.can_renew = can_renew
        self._sleep = options.get("sleep", time.sleep)
        self._clock = options.get("clock", time.time)
        self._jitter = options.get("jitter", random.random)
        self._notify = options.get("notify") or (lambda message: None)
        self._token: Token | None = Token(token) if token else None
        self.timeout = options.get("timeout", 30.0)
        self.transport = options.get("transport")
        self._http = make_http(base_url, self.timeout, self.transport, self.address)

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"{type(self).__name__}({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> float:
        """The client's clock (unix seconds); tests replace it."""
        return self._clock()

    def pause(self, seconds: float | None = None) -> None:
        """Wait one poll interval (or SECONDS)."""
        self._sleep(self.poll_interval if seconds is None else seconds)

    def notify(self, message: str) -> None:
        self._notify(redact(message))

    # --- for subclasses ---------------------------------------------------------------------

    def fetch_token(self) -> Token:
        """Get a new access token (register it with `register` before anything else)."""
        raise RemoteError(f"{self.service} gave no way to get a token")

    def judge(self, response: httpx.Response, authorized: bool) -> Verdict | None:
        """What RESPONSE means; None hands it to the caller. The default: 429 is a rate limit
        (Retry-After seconds), 5xx is transient, 401 on an authorized request a refused token."""
        status = response.status_code
        if status == 429:
            return Verdict("rate_limited", f"429 {self.message(response)}", retry_after(response))
        if status >= 500:
            return Verdict("transient", f"{status} {self.message(response)}")
        if status == 401 and authorized:
            return Verdict("token", f"401 {self.message(response)}")
        return None

    def message(self, response: httpx.Response) -> str:
        """The service's own explanation of an error response, scrubbed of secrets."""
        text = ""
        body = json_object(response)
        if body is not None:
            code = body.get("errorCode") or body.get("error")
            text = str(body.get("message") or body.get("error_description") or "")
            if code and str(code) not in text:
                text = f"{code}: {text}" if text else str(code)
        else:
            text = excerpt(response.text)
        return redact(text or response.reason_phrase)

    # --- the token --------------------------------------------------------------------------

    def access_token(self) -> str:
        token = self._token
        expires = token.expires if token is not None else None
        if expires is not None and self.can_renew and expires - self._clock() < TOKEN_MARGIN:
            token = None
        if token is None:
            token = self._token = self.fetch_token()
        return token.value

    def forget_token(self) -> None:
        self._token = None

    def token_from(self, value: Any, expires_in: Any = None) -> Token:
        """A token the service returned, registered as a secret at once and checked to be
        sendable in a header; `expires_in` (seconds) when the service gives it."""
        if not isinstance(value, str) or not value:
            raise RemoteError(f"{self.service} returned no access token")
        register(value)
        if not SENDABLE.fullmatch(value):
            raise RemoteError(
                f"{self.service} returned an access token that cannot be sent in a header (it "
                "holds whitespace, a control character or a non-ASCII character)"
            )
        expires = None
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            expires = self._clock() + float(expires_in)
        return Token(value, expires)

    # --- requests and retries ---------------------------------------------------------------

    def json(
        self, method: str, url: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> Any:
        response = self.request(method, url, **kwargs)
        if response.status_code not in expect:
            raise self.failure(response, method, url)
        return self.decode(response, method, url)

    def request(
        self,
        method: str,
        url: str,
        *,
        authorized: bool = True,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send, waiting out rate limits, retrying transient failures, and renewing the token
        once when it is refused; returns the first other response, for the caller to judge.

        A non-idempotent request that may have reached the service before its connection
        dropped is not sent again (it could start a second job): that is a RemoteError.
        """
        failures = 0
        rate_limited = 0.0
        renewed = False
        what = f"{method} {_path(url)}"
        extra = kwargs.pop("headers", None) or {}
        while True:
            headers = dict(extra)
            if authorized:
                headers["Authorization"] = f"Bearer {self.access_token()}"
            response, trouble, may_have_arrived = self._send_once(method, url, headers, kwargs)
            if response is None:
                if may_have_arrived and not idempotent:
                    raise RemoteError(
                        f"{self.service} {what} failed ({trouble}); it may or may not have "
                        "started a job: check the service's jobs before retrying"
                    )
                failures += 1
                self.retry_or_raise(what, failures, trouble)
                continue
            verdict = self.judge(response, authorized)
            if verdict is None:
                return response
            if verdict.kind == "rate_limited":
                rate_limited += self.wait_for_rate_limit(verdict, what, rate_limited)
            elif verdict.kind == "transient":
                failures += 1
                self.retry_or_raise(what, failures, verdict.problem)
            elif renewed or not self.can_renew:
                return response
            else:
                renewed = True
                self._token = None
                self.notify(f"{self.service} refused the access token; getting a new one")

    def _send_once(
        self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> tuple[httpx.Response | None, str, bool]:
        """(response, "", False), or (None, problem, may have arrived) on a transport error
        or a garbled response; a request httpx refuses to send is a UsageError.

        Errors become values here, and the UsageError is raised outside the except clause, so
        that no ndpipe error carries httpx's exception (and the request in it) as its context.
        """
        try:
            return self._http.request(method, url, headers=headers, **kwargs), "", False
        except (*UNSENDABLE, ValueError) as error:
            refused = unsendable(error)
        except httpx.HTTPError as error:
            arrived = not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
            return None, problem(error), arrived
        raise UsageError(
            f"{self.service} {method} {_path(url)} could not be sent ({refused}); check "
            f"{self.settings}"
        )

    def retry_or_raise(self, what: str, failures: int, trouble: str) -> None:
        """After the FAILURES-th failure of WHAT: wait (backoff) or give up with RemoteError."""
        if failures >= self.retry.attempts:
            raise RemoteError(f"{self.service} {what} failed after {failures} attempts: {trouble}")
        wait = self.backoff(failures)
        self.notify(f"{self.service} {what}: {trouble}; retrying in {wait:.1f} s")
        self._sleep(wait)

    def backoff(self, failures: int) -> float:
        base = min(self.retry.backoff * 2.0 ** (failures - 1), self.retry.max_backoff)
        return base * (0.5 + self._jitter() / 2)

    def wait_for_rate_limit(self, verdict: Verdict, what: str, waited: float) -> float:
        """Sleep as the verdict says (capped), plus jitter; returns the wait."""
        wait = 1.0 if verdict.wait is None else verdict.wait
        wait = min(max(wait, 0.0), self.retry.max_rate_limit_wait) + self._jitter()
        if waited + wait > self.retry.rate_limit_budget:
            raise RemoteError(
                f"{self.service} {what}: still rate limited ({verdict.problem}) after waiting "
                f"{waited:.0f} s; try again later"
            )
        self.notify(f"{self.service} rate limit reached; waiting {wait:.1f} s ({verdict.problem})")
        self._sleep(wait)
        return wait

    # --- responses --------------------------------------------------------------------------

    def decode(self, response: httpx.Response, method: str, url: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise RemoteError(
                f"{self.service} {method} {_path(url)} returned invalid JSON"
            ) from None

    def failure(self, response: httpx.Response, method: str, url: str) -> RemoteError:
        """The error for an answer the caller did not expect: a 4xx other than 429 is the
        service refusing (exit 1: retrying would not help), anything else exit 3."""
        status = response.status_code
        kind = Refused if 400 <= status < 500 and status != 429 else RemoteError
        return kind(
            f"{self.service} {method} {_path(url)} failed: {status} {self.message(response)}"
        )


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, or None when it is none."""
    try:
        return response.json()
    except ValueError:
        return None


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The response's JSON object (the first, when it is a list of them, as Salesforce's
    errors are), or None."""
    body = json_body(response)
    if isinstance(body, list) and body:
        body = body[0]
    return body if isinstance(body, dict) else None


def excerpt(text: str) -> str:
    """A body that is not JSON, for a message: one line, at most 200 characters, redacted
    before it is cut short (half a secret is no longer found)."""
    return " ".join(redact(text).split())[:200]


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, when the service sent it as a number."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _path(url: str) -> str:
    """A URL for messages: its path only, never the query (a signed link is a credential)."""
    if "://" in url:
        url = "/" + url.split("://", 1)[1].partition("/")[2]
    return url.split("?", 1)[0]
