"""What the loopback fakes of remote services share: standard library only.

tests/auth0_server.py, tests/marketo_server.py and tests/salesforce_server.py each fake one
service. The service's own behaviour (routes, error shapes, limits) stays in its module; this
one holds the plumbing under it:

- `FakeService`: a threaded HTTP server on 127.0.0.1 (a free port) started and stopped by the
  fake, `base_url`, the request log (`log`, `requests()`), one `dispatch` that logs a request,
  reads its body (draining an oversized one so that the client gets the answer, not a reset),
  routes it and writes the answer, turning a bug in the fake into a 500 and an entry in
  `internal_errors` instead of a hung client;
- `LoggedRequest`: one request as received, for assertions;
- `HTTPError`: an answer raised from anywhere in a route;
- `Faults`: rules a test switches on, each for the next COUNT matching requests, plus the
  faults every service has (`hang_up`, `server_errors`);
- the checks after a test: `check()` fails on a crashed request and on a credential in any
  URL; `assert_no_secret(*outputs)` on a credential in what a client printed.

A fake subclasses FakeService and implements `route`; it sets `title` (for messages),
`json_content_type` and `internal_error_body`, and overrides the hooks it needs
(`body_limit` / `oversized`, `server_error`, `url_secrets`, `secrets`, `logged_error`).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, NoReturn, Self
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024


@dataclass
class LoggedRequest:
    """One request as the server received it; header names are lower-case. `body` is empty
    where the fake keeps only `body_length` (large uploads in benchmarks)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    status: int = 0
    body_length: int = 0

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def raw(self) -> bytes:
        """Everything the client sent, for 'this secret never appears here' assertions."""
        head = "".join(f"{name}: {value}\n" for name, value in self.headers.items())
        return f"{self.method} {self.path}?{self.query}\n{head}\n".encode() + self.body

    def echo(self, body_limit: int | None = None) -> str:
        """The request's credentials and body quoted back, as a careless proxy or debug page
        does (what an echo fault answers)."""
        body = self.body if body_limit is None else self.body[:body_limit]
        return (
            f"Authorization: {self.header('authorization') or '(none)'} "
            f"in {self.method} {self.path} with body {body.decode(errors='replace')}"
        )


class HTTPError(Exception):
    """An answer (error or not) raised from a route: STATUS, a JSON-able or bytes BODY."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class Dropped(Exception):
    """A fault closed the connection; nothing more is sent."""


def hang_up(handler: BaseHTTPRequestHandler) -> NoReturn:
    """Cut the connection now, after whatever was written (a dropped connection fault)."""
    handler.wfile.flush()
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)
    raise Dropped


def form_parts(content_type: str, body: bytes) -> dict[str, bytes] | None:
    """The named parts of a multipart/form-data BODY (None if it is not multipart)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        return None
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            parts[str(name)] = payload if isinstance(payload, bytes) else b""
    return parts


# --- faults ----------------------------------------------------------------------------------


@dataclass
class FaultRule:
    kind: str
    remaining: int | None  # None: until cleared
    path: str | None
    method: str | None
    after: int = 0  # matching requests answered normally before this rule applies
    params: dict[str, Any] = field(default_factory=dict)


class Faults:
    """Faults a test switches on; each applies to the next COUNT matching requests, in order
    (count=None: until `clear()`), once AFTER matching requests have been answered. A rule
    matches a request by METHOD (any if None) and PATH (a prefix here; a fake may override
    `matches`)."""

    server_error_status = 500

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._rules: list[FaultRule] = []

    def hang_up(
        self,
        count: int | None = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        after: int = 0,
    ) -> None:
        """Close the connection without answering (the request was read, maybe applied)."""
        self._add("hang_up", count, path, method, after)

    def server_errors(
        self,
        count: int | None = 1,
        *,
        status: int | None = None,
        path: str | None = None,
        method: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer STATUS (5xx; the service's usual one by default) with its error page."""
        self._add("status", count, path, method, after, status=status or self.server_error_status)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _add(
        self,
        kind: str,
        count: int | None,
        path: str | None = None,
        method: str | None = None,
        after: int = 0,
        **params: Any,
    ) -> None:
        with self._lock:
            self._rules.append(FaultRule(kind, count, path, method, after, params))

    def matches(self, rule: FaultRule, method: str, path: str) -> bool:
        if rule.method is not None and rule.method != method:
            return False
        return rule.path is None or path.startswith(rule.path)

    def take(self, method: str, path: str, kinds: tuple[str, ...] = ()) -> FaultRule | None:
        """The first rule (of KINDS, if given) this request triggers, counted as used."""
        with self._lock:
            for rule in self._rules:
                if kinds and rule.kind not in kinds:
                    continue
                if not self.matches(rule, method, path):
                    continue
                if rule.after:
                    rule.after -= 1
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule
        return None


# --- the server ------------------------------------------------------------------------------


class ServiceHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: FakeService


class ServiceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each response waits for the
    # client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server: ServiceHTTPServer

    def do_GET(self) -> None:
        self.server.app.dispatch(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is server.log; stderr stays quiet


class FakeService:
    """A fake service behind a real HTTP server on 127.0.0.1 (a random free port)."""

    title: ClassVar[str] = "fake service"  # "fake X errors:" in check()
    handler_class: ClassVar[type[ServiceHandler]] = ServiceHandler
    json_content_type: ClassVar[str] = "application/json"
    internal_error_body: ClassVar[Any] = {"error": "internal"}
    keep_bodies: ClassVar[bool] = True  # False: the log keeps only body_length
    body_limit: int | None = None  # bytes; a longer body is drained and `oversized` answers

    def __init__(self, *, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.lock = threading.RLock()
        self.log: list[Any] = []
        self.internal_errors: list[str] = []
        self._http: ServiceHTTPServer | None = None

    # -- lifecycle --

    def start(self) -> Self:
        self._http = ServiceHTTPServer(("127.0.0.1", 0), self.handler_class)
        self._http.app = self
        thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._http is not None, "server not started"
        return int(self._http.server_address[1])

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    # -- the request log and the checks after a test --

    def requests(self, method: str | None = None, path: str = "") -> list[Any]:
        """Logged requests with this method (any if None) whose path starts with PATH."""
        with self.lock:
            return [
                request
                for request in self.log
                if (method is None or request.method == method) and self.path_matches(request, path)
            ]

    def path_matches(self, request: LoggedRequest, path: str) -> bool:
        return request.path.startswith(path)

    def secrets(self) -> set[str]:
        """Credentials a client must never show: the client secret and the tokens issued."""
        return {self.client_secret}

    def url_secrets(self) -> set[str]:
        """Credentials that must never be in a URL (where proxies and logs keep them)."""
        return self.secrets()

    def check(self) -> None:
        """Raise if a request crashed the server (a bug here, not in the client), or if a
        client put a credential in a URL."""
        if self.internal_errors:
            raise AssertionError(f"{self.title} errors:\n" + "\n".join(self.internal_errors))
        secrets = [secret for secret in self.url_secrets() if secret]
        with self.lock:
            for request in self.log:
                url = f"{request.path}?{request.query}"
                shown = [secret for secret in secrets if secret in url]
                assert not shown, f"a credential in the URL of {request.method} {request.path}"

    def assert_no_secret(self, *outputs: bytes) -> None:
        """No credential of this service in any of OUTPUTS (a client's stdout, stderr, files)."""
        for secret in self.secrets():
            for output in outputs:
                assert not secret or secret.encode() not in output, "a credential was shown"

    # -- dispatch --

    def new_entry(self, method: str, path: str, query: str, headers: dict[str, str]) -> Any:
        return LoggedRequest(method, path, query, headers)

    def dispatch(self, handler: ServiceHandler) -> None:
        url = urlsplit(handler.path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        entry = self.new_entry(handler.command, url.path, url.query, headers)
        with self.lock:
            self.log.append(entry)
        try:
            body = self.read_body(handler, entry)
            if self.keep_bodies:
                entry.body = body
            self.route(handler, entry, body)
        except HTTPError as error:
            entry.status = error.status
            self.logged_error(entry, error)
            self.send(handler, error.status, error.body, error.headers)
        except Dropped:
            pass  # the status line may have gone out before the connection was cut
        except ConnectionError:
            pass  # the client hung up, as a download read by `fetch then head` does
        except Exception as error:  # a bug in the fake: report it to the test instead of hanging
            entry.status = 500
            self.internal_errors.append(f"{entry.method} {entry.path}: {error!r}")
            self.send(handler, 500, self.internal_error_body)

    def read_body(self, handler: ServiceHandler, entry: LoggedRequest) -> bytes:
        length = int(entry.header("content-length") or 0)
        entry.body_length = length
        if self.body_limit is not None and length > self.body_limit:
            # Read and dropped, so that the client gets the answer instead of a reset
            # connection while it is still sending.
            remaining = length
            while remaining > 0:
                chunk = handler.rfile.read(min(remaining, CHUNK))
                if not chunk:
                    break
                remaining -= len(chunk)
            return self.oversized(length)
        return handler.rfile.read(length) if length else b""

    def oversized(self, length: int) -> bytes:
        """What a body over `body_limit` becomes: raise the service's 413, or return b"" for a
        route to refuse."""
        raise HTTPError(413, b"Request Entity Too Large", {"Content-Type": "text/plain"})

    def route(self, handler: ServiceHandler, request: Any, body: bytes) -> None:
        raise NotImplementedError

    def logged_error(self, entry: Any, error: HTTPError) -> None:
        """Note more of an error answer in the log entry (a service's error code)."""

    def reply(
        self,
        handler: ServiceHandler,
        request: LoggedRequest,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        request.status = status
        self.send(handler, status, body, headers)

    def send(
        self,
        handler: ServiceHandler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer STATUS with BODY: bytes as they are, None as nothing, anything else as JSON."""
        headers = dict(headers or {})
        if isinstance(body, bytes):
            data = body
        elif body is None:
            data = b""
        else:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", self.json_content_type)
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    # -- faults --

    def common_fault(self, handler: ServiceHandler, rule: FaultRule | None) -> FaultRule | None:
        """Apply a dropped connection or a server error; any other rule is the service's."""
        if rule is not None and rule.kind == "hang_up":
            hang_up(handler)
        if rule is not None and rule.kind == "status":
            raise self.server_error(rule.params["status"])
        return rule

    def server_error(self, status: int) -> HTTPError:
        """The service's answer to a server_errors fault."""
        return HTTPError(status, {"error": "Internal Server Error"})
