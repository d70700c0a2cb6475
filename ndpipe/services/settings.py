"""Checks for the settings every service takes: URLs, IDs, secrets and tokens.

They run while the command line is parsed (standard library only, no httpx), so a malformed
setting exits 2 before anything is read or sent, and a value is never shown: it may be a
secret, and a URL may hold one too (https://user:password@host).
"""

from __future__ import annotations

import ipaddress
import os
import re
import unicodedata
from typing import Literal
from urllib.parse import urlsplit

from ndpipe.errors import UsageError, register_secret

Kind = Literal["url", "id", "secret", "token"]
# Dropped around every setting: a token file saved on Windows ends in CR LF, a pasted secret in
# a newline. Whitespace left inside is refused: no header, URL or credential holds it.
SURROUNDING_WHITESPACE = " \t\r\n"
# A host name label (RFC 1123; underscores are allowed, as some internal names have them).
HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# host (a name, an IPv4 address or a bracketed IPv6 address) and an optional :port.
NETLOC = re.compile(r"(?P<host>\[[^\[\]]*\]|[^\[\]:@]*)(?::(?P<port>[0-9]*))?")


def check_setting(
    kind: Kind, value: str | None, *, path: bool = False, examples: str = "https://host"
) -> str | None:
    """VALUE without the whitespace around it; None when nothing is left.

    A secret or a token is registered (hidden in every message) before anything can go wrong
    with it. A URL must be a host name (meaning https) or an http(s) URL of a host, with a path
    only when PATH allows one; EXAMPLES shows the user what is expected. Raises UsageError
    saying what is wrong and where, never showing the value.
    """
    if kind in ("secret", "token"):
        register_secret(value)
    if value is None:
        return None
    value = value.strip(SURROUNDING_WHITESPACE)
    if kind == "token" and value[:7].lower() == "bearer ":
        raise UsageError("give the token alone, without 'Bearer ' before it")
    for position, character in enumerate(value, 1):
        if not "!" <= character <= "~":
            raise UsageError(
                f"it holds {_describe(character)} at character {position} of {len(value)}; "
                "only visible ASCII characters are allowed (whitespace around the value is "
                "ignored)"
            )
    if kind == "url" and value:
        check_url(value, path=path, examples=examples)
    return value or None


def _describe(character: str) -> str:
    names = {" ": "a space", "\t": "a tab", "\r": "a carriage return", "\n": "a line break"}
    if character in names:
        return f"{names[character]} (U+{ord(character):04X})"
    # Invisible characters (controls, zero-width and no-break spaces) are named by code point,
    # since the user cannot see them; a visible one is found by its position alone.
    invisible = unicodedata.category(character)[0] in "CZ"
    code = f" (U+{ord(character):04X})" if invisible else ""
    if character.isascii():
        return f"a control character{code}"
    return f"an invisible non-ASCII character{code}" if invisible else "a non-ASCII character"


def check_url(text: str, *, path: bool = False, examples: str = "https://host") -> None:
    """Refuse anything but a host name or an http(s) URL of a host (with a path if PATH), so
    that a client can always be built from what is accepted here."""
    url = text if "://" in text else f"https://{text}"
    scheme, rest = url.split("://", 1)
    expected = f"it must be a host name or an http(s) URL ({examples})"
    if scheme.lower() not in ("http", "https"):
        raise UsageError(expected)
    if "@" in re.split(r"[/?#]", rest, maxsplit=1)[0]:
        raise UsageError(f"{expected}, without a user name or password")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [, or brackets around something else than IPv6
        raise UsageError(f"its host is not a valid [IPv6] address; {expected}") from None
    try:
        port = parts.port
    except ValueError:
        port = 0
    if "?" in url or "#" in url:
        raise UsageError(f"{expected}, without a query or fragment")
    netloc = NETLOC.fullmatch(parts.netloc)
    if netloc is None:
        raise UsageError(f"its host and port are not valid; {expected}")
    host = netloc.group("host")
    if not host:
        raise UsageError(f"it names no host; {expected}")
    if port == 0 or (netloc.group("port") is not None and port is None):
        raise UsageError(f"its port must be a number from 1 to 65535; {expected}")
    if not path and parts.path not in ("", "/"):
        raise UsageError(f"{expected}, without a path (the API's own path is added to it)")
    if "//" in parts.path:
        raise UsageError(f"{expected}, without an empty path segment (//)")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UsageError(f"its host is not a valid [IPv6] address; {expected}") from None
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UsageError(f"its host is not a valid IPv4 address; {expected}") from None
    else:
        labels = host.removesuffix(".").split(".")
        if len(host) > 253 or not all(HOST_LABEL.fullmatch(label) for label in labels):
            raise UsageError(
                "its host is not a valid host name (letters, digits and hyphens, in labels "
                f"separated by dots); {expected}"
            )


def seconds(variable: str, default: float, most: float) -> float:
    """An environment VARIABLE holding seconds, from 0 to MOST; DEFAULT when unset. A bad
    value is a UsageError, so commands read it while the command line is parsed."""
    text = os.environ.get(variable, "")
    try:
        value = float(text) if text else default
    except ValueError:
        raise UsageError(f"{variable} must be seconds, not {text!r}") from None
    if not 0 <= value <= most:
        raise UsageError(f"{variable} must be between 0 and {most:g} seconds, not {text}")
    return value
