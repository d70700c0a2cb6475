"""Auth0's bulk-import user schema as a checker: which records an import job would refuse.

`check_user(record)` returns the problems of one import record, each with an Auth0-style code,
the path of the offending value and a message; an empty list means the record is importable
as far as the documented schema can tell. Used by `import-clean`, `import` and `upsert-patch`.

Sources (../shared/AUTH0.md section 2.3): the JSON schema in Auth0's docs
(`bulk-user-import-schema.mdx`), the per-algorithm rules for `custom_password_hash` in the same
page, the length limits of the user-profile-structure page, and for `format: email` the
`isEmail` function of the npm `validator` package with its default options, which Auth0 says it
uses (https://community.auth0.com/t/auth0-email-validation/104550).

Codes are the ones Auth0's job errors use (FORMAT, PATTERN, INVALID_TYPE, MIN_LENGTH,
MAX_LENGTH, OBJECT_REQUIRED, ENUM_MISMATCH, ARRAY_LENGTH_SHORT, ARRAY_LENGTH_LONG, MINIMUM,
NOT_PASSED), plus the z-schema codes OBJECT_ADDITIONAL_PROPERTIES and
OBJECT_PROPERTIES_MINIMUM/MAXIMUM for what Auth0's list does not name.
"""

from __future__ import annotations

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
# password_hash is bcrypt only: $2a$ or $2b$, a two-digit cost, then 53 characters of salt+hash.
BCRYPT = re.compile(r"\$2[ab]\$[0-9]{2}\$[./A-Za-z0-9]{53}")

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
NO_SALT_ALGORITHMS = frozenset({"argon2", "ldap", "pbkdf2"})
HASH_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "argon2": ("$argon2",),
    "bcrypt": ("$2a$", "$2b$", "$2y$"),
    "pbkdf2": ("$pbkdf2-",),
}
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
        if self.type_is(value, "string", path) and not BCRYPT.fullmatch(value):
            self.add(
                "PATTERN",
                path,
                "not a bcrypt hash ($2a$ or $2b$, cost, 53 characters); "
                "use custom_password_hash for other algorithms",
            )

    def custom_password_hash(self, value: Any, path: str) -> None:
        if not self.type_is(value, "object", path):
            return
        self.only(value, CUSTOM_HASH_KEYS, path)
        self.required(value, ("algorithm", "hash"), path)
        algorithm = value.get("algorithm")
        if "algorithm" in value:
            self.enum(algorithm, HASH_ALGORITHMS, _join(path, "algorithm"))
        known = algorithm if algorithm in HASH_ALGORITHMS else None

        hash_path = _join(path, "hash")
        hashed = value.get("hash")
        if "hash" in value and self.type_is(hashed, "object", hash_path):
            self.required(hashed, ("value",), hash_path)
            if "value" in hashed and self.type_is(
                hashed["value"], "string", _join(hash_path, "value")
            ):
                prefixes = HASH_PREFIXES.get(known or "")
                if prefixes and not hashed["value"].startswith(prefixes):
                    self.add(
                        "FORMAT",
                        _join(hash_path, "value"),
                        f"a {known} hash starts with {' or '.join(prefixes)}",
                    )
            if "encoding" in hashed:
                encoding_path = _join(hash_path, "encoding")
                self.enum(hashed["encoding"], ENCODINGS, encoding_path)
                allowed = HASH_ENCODINGS_BY_ALGORITHM.get(known or "")
                if (
                    allowed
                    and hashed["encoding"] in ENCODINGS
                    and hashed["encoding"] not in allowed
                ):
                    self.add(
                        "ENUM_MISMATCH",
                        encoding_path,
                        f"{known} hashes take encoding {' or '.join(allowed)}",
                    )
            if "digest" in hashed:
                self.enum(hashed["digest"], HMAC_DIGESTS, _join(hash_path, "digest"))
            elif known == "hmac":
                self.add("OBJECT_REQUIRED", _join(hash_path, "digest"), "hmac needs hash.digest")
            key_path = _join(hash_path, "key")
            if "key" in hashed:
                key = hashed["key"]
                if self.type_is(key, "object", key_path):
                    self.required(key, ("value",), key_path)
                    if "value" in key:
                        self.type_is(key["value"], "string", _join(key_path, "value"))
                    if "encoding" in key:
                        self.enum(key["encoding"], ENCODINGS, _join(key_path, "encoding"))
            elif known == "hmac":
                self.add("OBJECT_REQUIRED", _join(key_path, "value"), "hmac needs hash.key.value")

        salt_path = _join(path, "salt")
        if "salt" in value:
            salt = value["salt"]
            if known in NO_SALT_ALGORITHMS:
                self.add(
                    "NOT_PASSED", salt_path, f"{known} hashes carry their salt; salt is not allowed"
                )
            if self.type_is(salt, "object", salt_path):
                self.required(salt, ("value",), salt_path)
                if "value" in salt:
                    self.type_is(salt["value"], "string", _join(salt_path, "value"))
                if "encoding" in salt:
                    self.enum(salt["encoding"], ENCODINGS, _join(salt_path, "encoding"))
                if "position" in salt:
                    self.enum(salt["position"], SALT_POSITIONS, _join(salt_path, "position"))

        if "password" in value:
            password_path = _join(path, "password")
            password = value["password"]
            if self.type_is(password, "object", password_path) and "encoding" in password:
                self.enum(
                    password["encoding"], PASSWORD_ENCODINGS, _join(password_path, "encoding")
                )

        for key in ("keylen", "cost", "blockSize", "parallelization"):
            if key in value:
                number_path = _join(path, key)
                number = value[key]
                if not self.type_is(number, "integer", number_path):
                    continue
                if key == "cost":
                    cost = int(number)
                    if cost < 2 or cost & (cost - 1):
                        self.add("MINIMUM", number_path, "cost must be a power of two above 1")
                elif number < 1:
                    self.add("MINIMUM", number_path, f"{key} must be at least 1")
        if known == "scrypt" and "keylen" not in value:
            self.add("OBJECT_REQUIRED", _join(path, "keylen"), "scrypt needs keylen")

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
            if not factor:
                self.add(
                    "OBJECT_PROPERTIES_MINIMUM",
                    factor_path,
                    "a factor is one of {totp}, {phone} or {email}",
                )
            elif len(factor) > 1:
                self.add("OBJECT_PROPERTIES_MAXIMUM", factor_path, "a factor has exactly one type")
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
