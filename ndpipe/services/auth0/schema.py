"""Auth0's bulk-import user schema as a checker: which records an import job would refuse.

`check_user(record)` returns the problems of one import record, each with an Auth0-style code,
the path of the offending value and a message; an empty list means the record is importable
as far as the documented schema can tell. Used by `import-clean`, `import` and `upsert-patch`.

Sources (../shared/AUTH0.md section 2.3): the JSON schema in Auth0's docs
(`bulk-user-import-schema.mdx`), the per-algorithm rules for `custom_password_hash` in the same
page ("Supported hash algorithms"), the length limits of the user-profile-structure page, and for
`format: email` the `isEmail` function of the npm `validator` package with its default options,
which Auth0 says it uses (https://community.auth0.com/t/auth0-email-validation/104550). For
argon2 the docs require what auth0/magic's `verify.password` reads, which is libsodium's
`crypto_pwhash_str_verify`.

Where this checker refuses what the published schema and docs let through, it is because the
user would be imported but could never log in (README, import-clean, "Where import-clean is
stricter than Auth0's schema"): a hash without a value; a bcrypt hash that is not a whole bcrypt
hash (prefix, cost 04-31, 53 characters); a hex or base64 hash that does not decode, or decodes
to a length its algorithm cannot produce (an md5 of 12 bytes, a pbkdf2 hash shorter than its
`l`, a scrypt hash other than `keylen` bytes); an argon2 string libsodium cannot read; a salt
inside `hash`, which Auth0 ignores.

Codes are the ones Auth0's job errors use (FORMAT, PATTERN, INVALID_TYPE, MIN_LENGTH,
MAX_LENGTH, OBJECT_REQUIRED, ENUM_MISMATCH, ARRAY_LENGTH_SHORT, ARRAY_LENGTH_LONG, MINIMUM,
NOT_PASSED), plus the z-schema codes OBJECT_ADDITIONAL_PROPERTIES and OBJECT_PROPERTIES_MAXIMUM
for what Auth0's list does not name.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# --- the schema, as constants other modules share ------------------------------------------

# Every top-level key the import accepts (the schema has additionalProperties: false).
SCHEMA_FIELDS = (
    "email",
    "email_verified",
    "phone_number",
    "phone_verified",
    "user_id",
    "username",
    "given_name",
    "family_name",
    "name",
    "nickname",
    "picture",
    "blocked",
    "password_hash",
    "custom_password_hash",
    "app_metadata",
    "user_metadata",
    "mfa_factors",
)
REQUIRED_FIELDS = ("email",)

# What an upsert (upsert=true, matched on email) may change, in the order ndpipe writes them;
# email is the match key.
UPSERTABLE_ORDER = (
    "email_verified",
    "given_name",
    "family_name",
    "name",
    "nickname",
    "picture",
    "custom_password_hash",
    "app_metadata",
    "user_metadata",
)
UPSERTABLE_FIELDS = frozenset(UPSERTABLE_ORDER)

# Keys app_metadata must not contain ("Forbidden attribute in appUser").
FORBIDDEN_APP_METADATA_KEYS = frozenset(
    {
        "__tenant",
        "_id",
        "blocked",
        "clientID",
        "created_at",
        "email_verified",
        "email",
        "globalClientID",
        "global_client_id",
        "identities",
        "lastIP",
        "lastLogin",
        "loginsCount",
        "metadata",
        "multifactor_last_modified",
        "multifactor",
        "updated_at",
        "user_id",
    }
)

# Attributes an export carries that the import refuses (AUTH0.md 1.7).
EXPORT_ONLY_FIELDS = frozenset(
    {
        "created_at",
        "updated_at",
        "identities",
        "last_ip",
        "last_login",
        "last_password_reset",
        "logins_count",
        "multifactor",
        "multifactor_last_modified",
    }
)

# The User Import/Export extension's default column names (AUTH0.md section 3) and the schema
# field each one holds; None marks the export-only columns.
EXTENSION_COLUMNS: Mapping[str, str | None] = {
    "Id": "user_id",
    "Given Name": "given_name",
    "Family Name": "family_name",
    "Nickname": "nickname",
    "Name": "name",
    "Email": "email",
    "Email Verified": "email_verified",
    "Picture": "picture",
    "Connection": None,
    "Created At": None,
    "Updated At": None,
}

STRING_FIELDS = frozenset(
    {"email", "phone_number", "user_id", "username", "given_name", "family_name", "name"}
    | {"nickname", "picture", "password_hash"}
)
BOOLEAN_FIELDS = frozenset({"email_verified", "phone_verified", "blocked"})
OBJECT_FIELDS = frozenset({"custom_password_hash", "app_metadata", "user_metadata"})

# (minimum, maximum) length in characters (code points, as JSON Schema counts).
STRING_LENGTHS: Mapping[str, tuple[int, int]] = {
    "given_name": (1, 150),
    "family_name": (1, 150),
    "name": (1, 150),
    "nickname": (1, 350),
    # Each connection sets its own username length, within 1 to 128.
    "username": (1, 128),
}

E164 = re.compile(r"\+[0-9]{1,15}")
TOTP_SECRET = re.compile(r"[A-Z2-7]+")
# A whole bcrypt hash: $2a$ (or 2b, 2y), a two-digit cost, $, then 22 characters of salt and 31
# of hash in bcrypt's base64 alphabet.
BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$([./A-Za-z0-9]*)")
BCRYPT_BODY_LENGTH = 53
# bcrypt implementations refuse a cost (log2 of the rounds) outside this range.
BCRYPT_COSTS = range(4, 32)
# password_hash takes these two only; $2y$ goes in custom_password_hash.
PASSWORD_HASH_PREFIXES = ("$2a$", "$2b$")

HASH_ALGORITHMS = (
    "argon2",
    "bcrypt",
    "hmac",
    "ldap",
    "md4",
    "md5",
    "sha1",
    "sha256",
    "sha512",
    "pbkdf2",
    "scrypt",
)
ENCODINGS = ("base64", "hex", "utf8")
HMAC_DIGESTS = (
    "md4",
    "md5",
    "ripemd160",
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "whirlpool",
)
SALT_POSITIONS = ("prefix", "suffix")
PASSWORD_ENCODINGS = ("ascii", "utf8", "utf16le", "ucs2", "latin1", "binary")
CUSTOM_HASH_KEYS = frozenset(
    {"algorithm", "hash", "salt", "password", "keylen", "cost", "blockSize", "parallelization"}
)
# The documented per-algorithm rules: allowed hash.encoding, and whether a salt object is allowed.
HASH_ENCODINGS_BY_ALGORITHM: Mapping[str, tuple[str, ...]] = {
    "argon2": ("utf8",),
    "bcrypt": ("utf8",),
    "hmac": ("hex", "base64"),
    "ldap": ("utf8",),
    "md4": ("hex", "base64"),
    "md5": ("hex", "base64"),
    "sha1": ("hex", "base64"),
    "sha256": ("hex", "base64"),
    "sha512": ("hex", "base64"),
    "pbkdf2": ("utf8",),
    "scrypt": ("hex", "base64"),
}
# These carry their salt inside hash.value; the docs say salt is not allowed with them.
NO_SALT_ALGORITHMS = frozenset({"argon2", "ldap", "pbkdf2"})
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# Digest sizes in bytes: the md/sha algorithms, and hmac by its hash.digest.
DIGEST_BYTES: Mapping[str, int] = {
    "md4": 16,
    "md5": 16,
    "ripemd160": 20,
    "sha1": 20,
    "sha224": 28,
    "sha256": 32,
    "sha384": 48,
    "sha512": 64,
    "whirlpool": 64,
}
# pbkdf2's PHC id is pbkdf2-<digest>; the digests the docs list, spelled as listed.
PBKDF2_DIGESTS = frozenset(
    {
        "RSA-MD4",
        "RSA-MD5",
        "RSA-MDC2",
        "RSA-RIPEMD160",
        "RSA-SHA1",
        "RSA-SHA1-2",
        "RSA-SHA224",
        "RSA-SHA256",
        "RSA-SHA384",
        "RSA-SHA512",
        "md4",
        "md4WithRSAEncryption",
        "md5",
        "md5WithRSAEncryption",
        "mdc2",
        "mdc2WithRSA",
        "ripemd",
        "ripemd160",
        "ripemd160WithRSA",
        "rmd160",
        "sha1",
        "sha1WithRSAEncryption",
        "sha224",
        "sha224WithRSAEncryption",
        "sha256",
        "sha256WithRSAEncryption",
        "sha384",
        "sha384WithRSAEncryption",
        "sha512",
        "sha512WithRSAEncryption",
        "ssl3-md5",
        "ssl3-sha1",
        "whirlpool",
    }
)
# The key length the docs say Auth0 assumes when a pbkdf2 string leaves out l.
PBKDF2_DEFAULT_KEYLEN = 64
# RFC 2307 schemes, upper-cased, and their digest sizes: the docs allow md5, smd5, sha* and
# ssha*; an S scheme is the digest followed by its salt.
LDAP_DIGEST_BYTES: Mapping[str, int] = {
    "MD5": 16,
    "SHA": 20,
    "SHA1": 20,
    "SHA224": 28,
    "SHA256": 32,
    "SHA384": 48,
    "SHA512": 64,
}
# What libsodium's argon2 verifier (behind auth0/magic) requires of an encoded hash.
ARGON2_VERSION = 19
ARGON2_MIN_SALT_BYTES = 8
ARGON2_MIN_HASH_BYTES = 16
ARGON2_MAX_LANES = 0xFFFFFF
UINT32_MAX = 0xFFFFFFFF
# scrypt is the only algorithm that uses these; the docs' limits apply to it alone.
SCRYPT_NUMBERS = ("keylen", "cost", "blockSize", "parallelization")
MFA_FACTOR_TYPES = ("totp", "phone", "email")
MFA_FACTORS_MAX = 10


@dataclass(frozen=True)
class Problem:
    """One reason the import would refuse a record."""

    code: str
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.code} {self.path or '(record)'}: {self.message}"


# --- email: validator.js isEmail with its default options ------------------------------------

# The ranges are UTF-16 code units in the JavaScript original; characters outside the Basic
# Multilingual Plane are surrogate pairs there, which the local-part class does not match (so
# they are refused) and the domain-label class does (so they are allowed). The classes below
# give the same answers on Python's code points.
_LOCAL_ATOM = re.compile("[A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~\u00a1-\ud7ff\uf900-\ufdcf\ufdf0-\uffef]+")
_QUOTED_LOCAL = re.compile(
    "(?:[\\s\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\\x21\\x23-\\x5b\\x5d-\\x7e"
    "\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef]"
    "|\\\\[\\x01-\\x09\\x0b\\x0c\\x0d-\\x7f\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef])*"
)
_TLD = re.compile(
    "[A-Za-z\u00a1-\u00a8\u00aa-\ud7ff\uf900-\ufdcf\ufdf0-\uffef]{2,}|[xX][nN][A-Za-z0-9-]{2,}"
)
_LABEL = re.compile("[A-Za-z0-9_\u00a1-\U0010ffff-]+")
_FULL_WIDTH = re.compile("[\uff01-\uff5e]")
_WHITESPACE = re.compile(r"\s")
EMAIL_MAX_LENGTH = 254
LOCAL_PART_MAX_BYTES = 64
DOMAIN_MAX_BYTES = 254
# The common case, all ASCII, in one expression: everything it matches (within the length
# limits) the full rules accept; anything else goes through the full rules.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def _utf16_length(text: str) -> int:
    """Length as JavaScript counts it (UTF-16 code units), which the original's limits use."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _domain_problem(domain: str) -> str | None:
    """Why `domain` fails validator.js isFQDN (require_tld, no underscores), or None."""
    labels = domain.split(".")
    tld = labels[-1]
    if len(labels) < 2:
        return "the domain has no top-level domain"
    if not _TLD.fullmatch(tld) or _WHITESPACE.search(tld):
        return f"the top-level domain {tld!r} is not letters (or an xn-- name)"
    for label in labels:
        if not label:
            return "the domain has an empty label (two dots in a row, or a dot at an end)"
        if _utf16_length(label) > 63:
            return "a domain label is longer than 63 characters"
        if not _LABEL.fullmatch(label) or _FULL_WIDTH.search(label):
            return f"the domain label {label!r} has a character a host name cannot have"
        if label.startswith("-") or label.endswith("-"):
            return f"the domain label {label!r} starts or ends with '-'"
        if "_" in label:
            return f"the domain label {label!r} contains '_'"
    return None


def email_problem(value: str) -> str | None:
    """Why `value` fails Auth0's email format check (validator.js isEmail defaults), or None."""
    if (
        len(value) <= EMAIL_MAX_LENGTH
        and _PLAIN_EMAIL.fullmatch(value)
        and value.index("@") <= LOCAL_PART_MAX_BYTES
    ):
        return None
    return _email_rules(value)


def _email_rules(value: str) -> str | None:
    """validator.js isEmail, rule by rule, naming the first rule `value` breaks."""
    if _utf16_length(value) > EMAIL_MAX_LENGTH:
        return f"longer than {EMAIL_MAX_LENGTH} characters"
    if "@" not in value:
        return "no '@'"
    local, _, domain = value.rpartition("@")
    if len(local.encode("utf-8", "surrogatepass")) > LOCAL_PART_MAX_BYTES:
        return f"the part before '@' is longer than {LOCAL_PART_MAX_BYTES} bytes"
    if len(domain.encode("utf-8", "surrogatepass")) > DOMAIN_MAX_BYTES:
        return f"the domain is longer than {DOMAIN_MAX_BYTES} bytes"
    reason = _domain_problem(domain)
    if reason:
        return reason
    if local.startswith('"') and local.endswith('"'):
        if _QUOTED_LOCAL.fullmatch(local[1:-1]):
            return None
        return "the quoted part before '@' has a character that must be escaped"
    for atom in local.split("."):
        if not atom:
            return "the part before '@' is empty or has an empty dot-separated piece"
        if not _LOCAL_ATOM.fullmatch(atom):
            bad = next(char for char in atom if not _LOCAL_ATOM.fullmatch(char))
            return f"the part before '@' contains {bad!r}"
    return None


def is_email(value: Any) -> bool:
    return isinstance(value, str) and email_problem(value) is None


# --- password hash values ----------------------------------------------------------------------

_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
# Standard or URL-safe base64 (the docs: "url-encoded base64" is supported), padding optional.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*")
# PHC's B64: the standard alphabet without '=' padding.
_PHC_B64 = re.compile(r"[A-Za-z0-9+/]+")
_PHC_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_POSITIVE_DECIMAL = re.compile(r"[1-9][0-9]*")
_PHC_PARAMETER = re.compile(r"([a-z0-9-]{1,32})=([a-zA-Z0-9/+.-]+)")
_PHC_VERSION = re.compile(r"v=[0-9]+")
_ARGON2 = re.compile(
    r"\$(argon2(?:id|i))\$v=([0-9]+)\$m=([0-9]+),t=([0-9]+),p=([0-9]+)\$([^$]*)\$([^$]*)"
)
_LDAP = re.compile(r"\{([^{}]*)\}(.*)", re.DOTALL)


def decoded_size(text: str, encoding: str) -> int | None:
    """Bytes `text` decodes to as `hex` or `base64`; None if it is not that encoding."""
    if encoding == "hex":
        return len(text) // 2 if _HEX.fullmatch(text) else None
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if not _BASE64.fullmatch(body) or len(body) % 4 == 1 or padding > 2:
        return None
    if padding and len(text) % 4:
        return None
    return len(body) * 3 // 4


def _phc_b64_size(text: str, *, canonical: bool = False) -> int | None:
    """Bytes of a PHC B64 field; None if it is not B64. `canonical`: unused bits must be 0,
    as libsodium's decoder requires."""
    if not _PHC_B64.fullmatch(text) or len(text) % 4 == 1:
        return None
    if canonical:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4))
        if base64.b64encode(decoded).decode().rstrip("=") != text:
            return None
    return len(text) * 3 // 4


def bcrypt_problem(value: str, prefixes: tuple[str, ...] = BCRYPT_PREFIXES) -> str | None:
    """Why `value` is not a whole bcrypt hash with one of `prefixes`, or None."""
    if not value.startswith(prefixes):
        return f"a bcrypt hash starts with {' or '.join(prefixes)}"
    match = BCRYPT.fullmatch(value)
    if not match:
        return (
            "not a whole bcrypt hash: the prefix, a two-digit cost, '$', then 53 characters "
            "of ./A-Za-z0-9"
        )
    cost, body = match.groups()
    if int(cost) not in BCRYPT_COSTS:
        return f"cost {cost}: bcrypt takes a cost from 04 to 31"
    if len(body) != BCRYPT_BODY_LENGTH:
        return (
            f"{len(body)} characters after the cost; a bcrypt hash has {BCRYPT_BODY_LENGTH} "
            "(22 of salt, 31 of hash)"
        )
    return None


def argon2_problem(value: str) -> str | None:
    """Why libsodium's argon2 verifier, which auth0/magic uses, cannot read `value`, or None."""
    if value.startswith("$argon2d$"):
        return (
            "argon2d cannot be verified: libsodium (behind auth0/magic) reads only argon2i and "
            "argon2id"
        )
    match = _ARGON2.fullmatch(value)
    if not match:
        return (
            "not an argon2 PHC string as auth0/magic reads it: "
            "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash> (or $argon2i$), "
            "salt and hash in base64 without '='"
        )
    numbers = match.group(2, 3, 4, 5)
    # Checking the length first keeps int() away from a hostile thousands-digit number.
    if not all(
        _PHC_DECIMAL.fullmatch(number) and len(number) <= 10 and int(number) <= UINT32_MAX
        for number in numbers
    ):
        return f"a number in it has a leading zero or is above {UINT32_MAX}"
    version, memory, passes, lanes = (int(number) for number in numbers)
    if version != ARGON2_VERSION:
        return f"v={version}: libsodium reads v={ARGON2_VERSION} (Argon2 1.3) only"
    salt_size = _phc_b64_size(match[6], canonical=True)
    hash_size = _phc_b64_size(match[7], canonical=True)
    if salt_size is None or hash_size is None:
        which = "salt" if salt_size is None else "hash"
        return f"the {which} is not base64 without '=' padding (PHC's B64, canonical)"
    if salt_size < ARGON2_MIN_SALT_BYTES:
        return f"the salt is {salt_size} bytes; libsodium needs at least {ARGON2_MIN_SALT_BYTES}"
    if hash_size < ARGON2_MIN_HASH_BYTES:
        return f"the hash is {hash_size} bytes; libsodium needs at least {ARGON2_MIN_HASH_BYTES}"
    if passes < 1:
        return "t=0: argon2 needs at least 1 pass"
    if not 1 <= lanes <= ARGON2_MAX_LANES:
        return f"p={lanes}: argon2 takes 1 to {ARGON2_MAX_LANES} lanes"
    if memory < 8 * lanes:
        return f"m={memory}: argon2 needs at least 8 KiB per lane (m >= 8 * p)"
    return None


def pbkdf2_problem(value: str) -> str | None:
    """Why `value` is not the PHC string Auth0 reads for pbkdf2, or None.

    $pbkdf2-<digest>[$i=<iterations>,l=<keylen>]$<salt>$<hash>, salt and hash in B64; i and l
    default to 100000 and 64.
    """
    if not value.startswith("$pbkdf2-"):
        return (
            "not a PHC string $pbkdf2-<digest>$i=<iterations>,l=<keylen>$<salt>$<hash> "
            "(the id names the digest, as in pbkdf2-sha512)"
        )
    identifier, *fields = value[1:].split("$")
    digest = identifier.removeprefix("pbkdf2-")
    if digest not in PBKDF2_DIGESTS:
        return (
            f"the digest {_show(digest)} is not one Auth0 lists for pbkdf2 "
            "(sha1, sha256, sha512, md5, RSA-SHA256, ..., spelled as in the docs)"
        )
    if fields and _PHC_VERSION.fullmatch(fields[0]):
        fields = fields[1:]
    parameters: dict[str, str] = {}
    # B64 has no '=' but padding, so a field with another '=' is the parameters.
    if fields and "=" in fields[0].rstrip("="):
        for item in fields[0].split(","):
            match = _PHC_PARAMETER.fullmatch(item)
            if not match:
                return f"the parameter {_show(item)} is not name=value (PHC)"
            parameters[match[1]] = match[2]
        fields = fields[1:]
    for name in ("i", "l"):
        if name in parameters and not _POSITIVE_DECIMAL.fullmatch(parameters[name]):
            return f"{name}={parameters[name]}: {name} is a whole number above 0"
    if len(fields) != 2:
        return (
            "needs $<salt>$<hash> after the digest and parameters; "
            f"this has {len(fields)} field{'s' * (len(fields) != 1)} there"
        )
    salt, hashed = fields
    for name, text in (("salt", salt), ("hash", hashed)):
        if "=" in text:
            return f"the {name} has '=' padding; PHC's B64 leaves it out"
        if _phc_b64_size(text) is None:
            return f"the {name} is not base64 (PHC's B64: A-Z a-z 0-9 + /, no padding)"
    keylen = parameters.get("l", str(PBKDF2_DEFAULT_KEYLEN))
    size = _phc_b64_size(hashed)
    if str(size) != keylen:
        default = "" if "l" in parameters else ", the default when l is left out"
        return f"the hash is {size} bytes but l is {keylen}{default}: they must agree"
    return None


def ldap_problem(value: str) -> str | None:
    """Why `value` is not an RFC 2307 userPassword in a scheme Auth0 supports, or None."""
    match = _LDAP.fullmatch(value)
    if not match:
        return "not an RFC 2307 userPassword value: {SCHEME} then the base64 digest, as {SSHA}..."
    scheme, digest = match[1], match[2]
    upper = scheme.upper()
    shown = _show("{" + scheme + "}")
    if upper == "CRYPT":
        return (
            "the {CRYPT} scheme is not supported (Auth0's docs: its result depends on the "
            "system that made it); only md5, smd5, sha* and ssha* are"
        )
    if not (upper in ("MD5", "SMD5") or upper.startswith(("SHA", "SSHA"))):
        return f"the scheme {shown} is not supported; only md5, smd5, sha* and ssha* are"
    size = decoded_size(digest, "base64")
    if not size:
        return f"the part after {shown} is not base64"
    salted = upper == "SMD5" or upper.startswith("SSHA")
    base = upper[1:] if salted else upper
    expected = LDAP_DIGEST_BYTES.get(base)
    if expected is None:
        return None
    if salted and size <= expected:
        return (
            f"{size} bytes after {shown}; a salted {base} value is the {expected}-byte digest "
            "followed by its salt"
        )
    if not salted and size != expected:
        return f"{size} bytes after {shown}; a {base} digest is {expected} bytes"
    return None


# --- the checker -------------------------------------------------------------------------------

_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 60) -> str:
    """A value as JSON text, shortened: safe to print (control characters are escaped)."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _is_integer(value: Any) -> bool:
    if type(value) is int:
        return True
    return type(value) is float and value.is_integer()


class _Checker:
    """Collects the problems of one record."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, code: str, path: str, message: str) -> None:
        self.problems.append(Problem(code, path, message))

    def type_is(self, value: Any, expected: str, path: str) -> bool:
        if _JSON_TYPES.get(type(value)) == expected:
            return True
        actual = _type_name(value)
        if expected == "integer":
            ok = _is_integer(value)
        elif expected == "number":
            ok = actual in ("integer", "number")
        else:
            ok = actual == expected
        if not ok:
            self.add("INVALID_TYPE", path, f"expected type {expected} but found type {actual}")
        return ok

    def enum(self, value: Any, allowed: tuple[str, ...], path: str) -> None:
        if self.type_is(value, "string", path) and value not in allowed:
            self.add("ENUM_MISMATCH", path, f"{_show(value)} is not one of {', '.join(allowed)}")

    def required(self, value: Mapping[str, Any], keys: tuple[str, ...], path: str) -> None:
        for key in keys:
            if key not in value:
                self.add("OBJECT_REQUIRED", _join(path, key), f"missing required property {key}")

    def only(
        self, value: Mapping[str, Any], allowed: frozenset[str] | tuple[str, ...], path: str
    ) -> None:
        for key in value:
            if key not in allowed:
                self.add(
                    "OBJECT_ADDITIONAL_PROPERTIES",
                    _join(path, key),
                    f"additional property {_show(key)} is not allowed",
                )

    # --- fields ---

    def email(self, value: Any, path: str) -> None:
        if not self.type_is(value, "string", path):
            return
        reason = email_problem(value)
        if reason:
            self.add("FORMAT", path, f"not a valid email address ({reason}): {_show(value)}")

    def phone(self, value: Any, path: str) -> None:
        if self.type_is(value, "string", path) and not E164.fullmatch(value):
            self.add(
                "PATTERN",
                path,
                f"not an E.164 phone number ('+' and 1 to 15 digits): {_show(value)}",
            )

    def string(self, value: Any, path: str, field: str) -> None:
        if not self.type_is(value, "string", path):
            return
        limits = STRING_LENGTHS.get(field)
        if limits is None:
            return
        low, high = limits
        if len(value) < low:
            self.add("MIN_LENGTH", path, f"shorter than {low} character{'s' * (low != 1)}")
        elif len(value) > high:
            self.add("MAX_LENGTH", path, f"{len(value)} characters; at most {high}")

    def password_hash(self, value: Any, path: str) -> None:
        if not self.type_is(value, "string", path):
            return
        reason = bcrypt_problem(value, PASSWORD_HASH_PREFIXES)
        if reason and value.startswith("$2y$"):
            reason += "; put a $2y$ hash in custom_password_hash with algorithm bcrypt"
        elif reason and not value.startswith("$2"):
            reason += "; use custom_password_hash for other algorithms"
        if reason:
            self.add("PATTERN", path, f"not a bcrypt hash Auth0 takes here: {reason}")

    def custom_password_hash(self, value: Any, path: str) -> None:
        if not self.type_is(value, "object", path):
            return
        self.only(value, CUSTOM_HASH_KEYS, path)
        self.required(value, ("algorithm", "hash"), path)
        algorithm = value.get("algorithm")
        if "algorithm" in value:
            self.enum(algorithm, HASH_ALGORITHMS, _join(path, "algorithm"))
        known = algorithm if algorithm in HASH_ALGORITHMS else None
        if "hash" in value:
            self.hash_object(value["hash"], known, value, _join(path, "hash"))
        if "salt" in value:
            self.salt(value["salt"], known, _join(path, "salt"))
        if "password" in value:
            password_path = _join(path, "password")
            password = value["password"]
            if self.type_is(password, "object", password_path) and "encoding" in password:
                self.enum(
                    password["encoding"], PASSWORD_ENCODINGS, _join(password_path, "encoding")
                )
        for key in SCRYPT_NUMBERS:
            if key not in value:
                continue
            number_path = _join(path, key)
            number = value[key]
            # The schema types them for every algorithm; only scrypt reads them.
            if not self.type_is(number, "integer", number_path) or known != "scrypt":
                continue
            if key == "cost":
                cost = int(number)
                if cost < 2 or cost & (cost - 1):
                    self.add("MINIMUM", number_path, "cost must be a power of two above 1")
            elif number < 1:
                self.add("MINIMUM", number_path, f"{key} must be at least 1")
        if known == "scrypt" and "keylen" not in value:
            self.add("OBJECT_REQUIRED", _join(path, "keylen"), "scrypt needs keylen")

    def hash_object(
        self, hashed: Any, known: str | None, custom: Mapping[str, Any], path: str
    ) -> None:
        """custom_password_hash.hash: its fields, then its value in the algorithm's format."""
        if not self.type_is(hashed, "object", path):
            return
        value_path = _join(path, "value")
        if "value" not in hashed:
            self.add(
                "OBJECT_REQUIRED",
                value_path,
                "missing hash.value: Auth0's schema lets it through, but a hash without a "
                "value matches no password, so the user could never log in",
            )
        allowed = HASH_ENCODINGS_BY_ALGORITHM.get(known or "")
        encoding = hashed.get("encoding", "utf8")
        encoding_path = _join(path, "encoding")
        encoding_ok = True
        if "encoding" in hashed:
            self.enum(encoding, ENCODINGS, encoding_path)
            encoding_ok = isinstance(encoding, str) and encoding in ENCODINGS
            if encoding_ok and allowed and encoding not in allowed:
                self.add(
                    "ENUM_MISMATCH",
                    encoding_path,
                    f"{known} hashes take encoding {' or '.join(allowed)}",
                )
                encoding_ok = False
        elif allowed and "utf8" not in allowed:
            # The docs give hash.encoding no default, and their examples leave it out only
            # where utf8 is the rule.
            self.add(
                "OBJECT_REQUIRED",
                encoding_path,
                f"{known} needs hash.encoding {' or '.join(allowed)} (the docs say it must be "
                "one of them)",
            )
            encoding_ok = False

        digest = hashed.get("digest")
        if "digest" in hashed:
            self.enum(digest, HMAC_DIGESTS, _join(path, "digest"))
        elif known == "hmac":
            self.add("OBJECT_REQUIRED", _join(path, "digest"), "hmac needs hash.digest")
        key_path = _join(path, "key")
        if "key" in hashed:
            key = hashed["key"]
            if self.type_is(key, "object", key_path):
                self.required(key, ("value",), key_path)
                self.encoded_value(key, key_path, "the hmac key")
        elif known == "hmac":
            self.add("OBJECT_REQUIRED", _join(key_path, "value"), "hmac needs hash.key.value")
        if "salt" in hashed:
            where = (
                f"{known} carries its salt in hash.value"
                if known in NO_SALT_ALGORITHMS
                else "a salt goes at custom_password_hash.salt"
            )
            self.add(
                "NOT_PASSED",
                _join(path, "salt"),
                f"salt is not allowed inside hash: {where}; Auth0 ignores a salt here, so the "
                "hash would be checked without it and the user could not log in",
            )

        if "value" not in hashed or not self.type_is(hashed["value"], "string", value_path):
            return
        if known is None or not encoding_ok:
            return
        text = hashed["value"]
        if known == "bcrypt":
            reason = bcrypt_problem(text)
        elif known == "argon2":
            reason = argon2_problem(text)
        elif known == "pbkdf2":
            reason = pbkdf2_problem(text)
            if reason and "must agree" in reason and "keylen" in custom:
                reason += " (the top-level keylen is scrypt's, not pbkdf2's)"
        elif known == "ldap":
            reason = ldap_problem(text)
        else:
            reason = self.digest_problem(known, text, encoding, digest, custom)
        if reason:
            self.add("FORMAT", value_path, reason)

    @staticmethod
    def digest_problem(
        known: str, text: str, encoding: str, digest: Any, custom: Mapping[str, Any]
    ) -> str | None:
        """Why a hex or base64 hash (md/sha, hmac, scrypt) cannot be its algorithm's output."""
        size = decoded_size(text, encoding)
        if size is None:
            return f"not {encoding}: {_show(text, 40)}"
        if known == "hmac":
            expected = DIGEST_BYTES.get(digest) if isinstance(digest, str) else None
            why = f"hmac hashes with digest {digest} are {expected} bytes"
        elif known == "scrypt":
            keylen: Any = custom.get("keylen")
            expected = int(keylen) if _is_integer(keylen) and keylen >= 1 else None
            why = f"keylen is {keylen}, so the scrypt hash is {keylen} bytes"
        else:
            expected = DIGEST_BYTES[known]
            why = f"{known} hashes are {expected} bytes"
        if expected is not None and size != expected:
            return f"{size} bytes as {encoding}, but {why}"
        return None

    def salt(self, salt: Any, known: str | None, path: str) -> None:
        if known in NO_SALT_ALGORITHMS:
            self.add(
                "NOT_PASSED",
                path,
                f"{known} hashes carry their salt in hash.value; salt is not allowed",
            )
        if self.type_is(salt, "object", path):
            self.required(salt, ("value",), path)
            self.encoded_value(salt, path, "the salt")
            if "position" in salt:
                self.enum(salt["position"], SALT_POSITIONS, _join(path, "position"))

    def encoded_value(self, holder: Mapping[str, Any], path: str, what: str) -> None:
        """A {value, encoding} object (salt, hmac key): encoding utf8 by default."""
        encoding = holder.get("encoding", "utf8")
        if "encoding" in holder:
            self.enum(encoding, ENCODINGS, _join(path, "encoding"))
        if "value" not in holder:
            return
        value_path = _join(path, "value")
        text = holder["value"]
        if (
            self.type_is(text, "string", value_path)
            and encoding in ("hex", "base64")
            and decoded_size(text, encoding) is None
        ):
            self.add(
                "FORMAT",
                value_path,
                f"encoding is {encoding} but {what} is not {encoding}: {_show(text, 40)}",
            )

    def app_metadata(self, value: Any, path: str) -> None:
        if not self.type_is(value, "object", path):
            return
        for key in value:
            if key in FORBIDDEN_APP_METADATA_KEYS:
                self.add(
                    "NOT_PASSED", _join(path, key), f"app_metadata must not contain {_show(key)}"
                )

    def mfa_factors(self, value: Any, path: str) -> None:
        if not self.type_is(value, "array", path):
            return
        if not value:
            self.add("ARRAY_LENGTH_SHORT", path, "needs at least 1 factor (or leave it out)")
        elif len(value) > MFA_FACTORS_MAX:
            self.add("ARRAY_LENGTH_LONG", path, f"{len(value)} factors; at most {MFA_FACTORS_MAX}")
        for index, factor in enumerate(value):
            factor_path = _join(path, index)
            if not self.type_is(factor, "object", factor_path):
                continue
            self.only(factor, MFA_FACTOR_TYPES, factor_path)
            kinds = [kind for kind in MFA_FACTOR_TYPES if kind in factor]
            # The schema has maxProperties 1 and no minimum: an empty factor passes (and
            # enrolls nothing; import-clean drops it).
            if len(factor) > 1:
                self.add(
                    "OBJECT_PROPERTIES_MAXIMUM",
                    factor_path,
                    "a factor has one type: {totp}, {phone} or {email}",
                )
            for kind in kinds:
                self.mfa_factor(kind, factor[kind], _join(factor_path, kind))

    def mfa_factor(self, kind: str, value: Any, path: str) -> None:
        if not self.type_is(value, "object", path):
            return
        field = "secret" if kind == "totp" else "value"
        self.only(value, (field,), path)
        self.required(value, (field,), path)
        if field not in value:
            return
        field_path = _join(path, field)
        if kind == "totp":
            secret = value[field]
            if self.type_is(secret, "string", field_path) and not TOTP_SECRET.fullmatch(secret):
                self.add("PATTERN", field_path, "not unpadded upper-case Base32 (A-Z, 2-7)")
        elif kind == "phone":
            self.phone(value[field], field_path)
        else:
            self.email(value[field], field_path)


def check_user(record: Any) -> list[Problem]:
    """The problems that would make Auth0's bulk import refuse `record`; [] if none are known."""
    checker = _Checker()
    if not checker.type_is(record, "object", ""):
        return checker.problems
    checker.required(record, REQUIRED_FIELDS, "")
    for key, value in record.items():
        if key == "email":
            checker.email(value, key)
        elif key == "phone_number":
            checker.phone(value, key)
        elif key == "password_hash":
            checker.password_hash(value, key)
        elif key in STRING_FIELDS:
            checker.string(value, key, key)
        elif key in BOOLEAN_FIELDS:
            checker.type_is(value, "boolean", key)
        elif key == "custom_password_hash":
            checker.custom_password_hash(value, key)
        elif key == "app_metadata":
            checker.app_metadata(value, key)
        elif key == "user_metadata":
            checker.type_is(value, "object", key)
        elif key == "mfa_factors":
            checker.mfa_factors(value, key)
        else:
            checker.add(
                "OBJECT_ADDITIONAL_PROPERTIES",
                key,
                f"additional property {_show(key)} is not allowed",
            )
    if "password_hash" in record and "custom_password_hash" in record:
        checker.add(
            "NOT_PASSED",
            "password_hash",
            "password_hash and custom_password_hash are mutually exclusive",
        )
    return checker.problems
