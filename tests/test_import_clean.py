"""import-clean and the import-schema checker (ndpipe.services.auth0.schema)."""

from __future__ import annotations

import base64
import copy
import string

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndpipe.ops.import_clean import CleanStats, Rejected, clean_user, import_clean
from ndpipe.services.auth0.schema import (
    DIGEST_BYTES,
    FORBIDDEN_APP_METADATA_KEYS,
    HASH_ALGORITHMS,
    PBKDF2_DEFAULT_KEYLEN,
    PBKDF2_DIGESTS,
    SCHEMA_FIELDS,
    _email_rules,
    check_user,
    email_problem,
    is_email,
)
from tests.conftest import FIXTURES, ndjson, records, run_ndpipe

BCRYPT = "$2b$10$nFguVi9LsCAcvTZFKQlRKeLVydo8ETv483lkNsSFI/Wl1Rz1Ypo1K"
ARGON2 = (
    "$argon2id$v=19$m=65536,t=2,p=1$J6Q/82PCyaNpYKRELJyTZg$"
    "m04qUAB8rexWDR4+/0f+SFB+4XMFxt7YAvAq2UycYos"
)


def codes(record: dict) -> list[tuple[str, str]]:
    return [(problem.code, problem.path) for problem in check_user(record)]


# --- the schema checker -------------------------------------------------------------------------

# The valid examples of Auth0's bulk-import schema page, verbatim.
DOCS_EXAMPLES = [
    {
        "email": "john.doe@contoso.com",
        "email_verified": False,
        "app_metadata": {"roles": ["admin"], "plan": "premium"},
        "user_metadata": {"theme": "light"},
    },
    {
        "email": "antoinette@contoso.com",
        "email_verified": False,
        "custom_password_hash": {
            "algorithm": "md4",
            "hash": {"value": "AbuUujgF0pPPkJPSFRTpmA==", "encoding": "base64"},
        },
    },
    {
        "email": "mary@contoso.com",
        "custom_password_hash": {
            "algorithm": "sha256",
            "hash": {
                "value": "d24e794fce503c3ddb1cd1ba1dd5d9b250cf9917336a0316fefd87fecf79200f",
                "encoding": "hex",
            },
            "salt": {"value": "abc123", "position": "prefix"},
        },
    },
    {
        "email": "velma@contoso.com",
        "custom_password_hash": {
            "algorithm": "bcrypt",
            "hash": {"value": "$2b$10$C9hB01.YxRSTcn/ZOOo4j.TW7xCKKFKBSF.C7E0xiUwumqIDqWUXG"},
        },
    },
    {
        "email": "edward@contoso.com",
        "custom_password_hash": {
            "algorithm": "argon2",
            "hash": {
                "value": "$argon2id$v=19$m=65536,t=2,p=1$J6Q/82PCyaNpYKRELJyTZg$"
                "m04qUAB8rexWDR4+/0f+SFB+4XMFxt7YAvAq2UycYos"
            },
        },
    },
    {
        "email": "terrell@contoso.com",
        "custom_password_hash": {
            "algorithm": "pbkdf2",
            "hash": {
                "value": "$pbkdf2-md4$i=100000,l=64$+N375B8q0Fw$fp2R9KAM4hK/votGHC5Fu+jhqbxUD8+Ni"
                "c/EMSGvNC3UP/k7wSHI0uXluHRSkZfl/BOheYqNOemayG90ZaSSQw",
                "encoding": "utf8",
            },
        },
    },
    {
        "email": "cecil@contoso.com",
        "custom_password_hash": {
            "algorithm": "pbkdf2",
            "hash": {
                "value": "$pbkdf2-sha512$i=100000,l=64$KNyFsA2rWoE$I2CQGI9H0JxdDf3kERRI97kPCGxh0K"
                "WBIV3MxyaS191gDGfzVBGyS4BibhgqWQ0/ails8mHuU9ckASxHOOq58w"
            },
        },
    },
    {
        "email": "sean@contoso.com",
        "custom_password_hash": {
            "algorithm": "ldap",
            "hash": {
                "value": "{SSHA384}/cgEjdoZh85DhurDeOQEMO1rMlAur93SVPbYe5XSD4lF7nNuvrBju5hUeg9A6agR"
                "emgSXGl5YuE=",
                "encoding": "utf8",
            },
        },
    },
    {
        "email": "peter@contoso.com",
        "custom_password_hash": {
            "algorithm": "hmac",
            "hash": {
                "value": "cg7f42jH39/2EaAU4wNd4s2lKIk=",
                "encoding": "base64",
                "digest": "sha1",
                "key": {"value": "736868", "encoding": "hex"},
            },
        },
    },
    {
        "email": "carmella@contoso.com",
        "custom_password_hash": {
            "algorithm": "scrypt",
            "hash": {
                "value": "097f6197e1b41538f723e32aa7a68e8d76227d8e432ce5faa4882a913032db29",
                "encoding": "hex",
            },
            "salt": {"value": "abc123", "encoding": "utf8"},
            "keylen": 32,
            "cost": 4096,
        },
    },
    {
        "email": "antoinette@contoso.com",
        "mfa_factors": [
            {"totp": {"secret": "2PRXZWZAYYDAWCD"}},
            {"phone": {"value": "+15551112233"}},
            {"email": {"value": "antoinette@antoinette.biz"}},
        ],
    },
    {
        "email": "full@example.com",
        "email_verified": True,
        "phone_number": "+12125550001",
        "phone_verified": False,
        "user_id": "6142b8f00a19ee006a344f47",
        "username": "jane_doe",
        "given_name": "J",
        "family_name": "D" * 150,
        "name": "Jane Doe",
        "nickname": "n" * 350,
        "picture": "https://example.com/a.png",
        "blocked": False,
        "password_hash": BCRYPT,
    },
]


@pytest.mark.parametrize("record", DOCS_EXAMPLES)
def test_valid_records_have_no_problems(record):
    assert check_user(record) == []


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({}, [("OBJECT_REQUIRED", "email")]),
        ({"email": None}, [("INVALID_TYPE", "email")]),
        ({"email": "nobody"}, [("FORMAT", "email")]),
        ({"email": "a@b.com", "Email": "a@b.com"}, [("OBJECT_ADDITIONAL_PROPERTIES", "Email")]),
        (
            {"email": "a@b.com", "created_at": "2021"},
            [("OBJECT_ADDITIONAL_PROPERTIES", "created_at")],
        ),
        ({"email": "a@b.com", "email_verified": "true"}, [("INVALID_TYPE", "email_verified")]),
        ({"email": "a@b.com", "blocked": 1}, [("INVALID_TYPE", "blocked")]),
        ({"email": "a@b.com", "phone_number": "555-0100"}, [("PATTERN", "phone_number")]),
        ({"email": "a@b.com", "phone_number": "+1234567890123456"}, [("PATTERN", "phone_number")]),
        ({"email": "a@b.com", "phone_number": "+64215550100\n"}, [("PATTERN", "phone_number")]),
        ({"email": "a@b.com", "given_name": ""}, [("MIN_LENGTH", "given_name")]),
        ({"email": "a@b.com", "name": "x" * 151}, [("MAX_LENGTH", "name")]),
        ({"email": "a@b.com", "nickname": "x" * 351}, [("MAX_LENGTH", "nickname")]),
        ({"email": "a@b.com", "username": "u" * 129}, [("MAX_LENGTH", "username")]),
        ({"email": "a@b.com", "user_id": 12}, [("INVALID_TYPE", "user_id")]),
        ({"email": "a@b.com", "user_metadata": []}, [("INVALID_TYPE", "user_metadata")]),
        (
            {"email": "a@b.com", "app_metadata": {"email": "x"}},
            [("NOT_PASSED", "app_metadata.email")],
        ),
        ({"email": "a@b.com", "password_hash": "md5:abc"}, [("PATTERN", "password_hash")]),
        (
            {
                "email": "a@b.com",
                "password_hash": BCRYPT,
                "custom_password_hash": {"algorithm": "bcrypt", "hash": {"value": BCRYPT}},
            },
            [("NOT_PASSED", "password_hash")],
        ),
        (
            {
                "email": "a@b.com",
                "custom_password_hash": {"algorithm": "rot13", "hash": {"value": "x"}},
            },
            [("ENUM_MISMATCH", "custom_password_hash.algorithm")],
        ),
        (
            {"email": "a@b.com", "custom_password_hash": {"hash": {"value": "x"}, "iterations": 3}},
            [
                ("OBJECT_ADDITIONAL_PROPERTIES", "custom_password_hash.iterations"),
                ("OBJECT_REQUIRED", "custom_password_hash.algorithm"),
            ],
        ),
        (
            {
                "email": "a@b.com",
                "custom_password_hash": {
                    "algorithm": "md5",
                    "hash": {"value": "x", "encoding": "utf8"},
                },
            },
            [("ENUM_MISMATCH", "custom_password_hash.hash.encoding")],
        ),
        (
            {
                "email": "a@b.com",
                "custom_password_hash": {
                    "algorithm": "hmac",
                    "hash": {"value": "cafe", "encoding": "hex"},
                },
            },
            [
                ("OBJECT_REQUIRED", "custom_password_hash.hash.digest"),
                ("OBJECT_REQUIRED", "custom_password_hash.hash.key.value"),
            ],
        ),
        (
            {
                "email": "a@b.com",
                "custom_password_hash": {
                    "algorithm": "scrypt",
                    "hash": {"value": "ab", "encoding": "hex"},
                    "cost": 1000,
                },
            },
            [
                ("MINIMUM", "custom_password_hash.cost"),
                ("OBJECT_REQUIRED", "custom_password_hash.keylen"),
            ],
        ),
        (
            {
                "email": "a@b.com",
                "custom_password_hash": {
                    "algorithm": "argon2",
                    "hash": {"value": ARGON2},
                    "salt": {"value": "s"},
                },
            },
            [("NOT_PASSED", "custom_password_hash.salt")],
        ),
        (
            {
                "email": "a@b.com",
                "custom_password_hash": {"algorithm": "bcrypt", "hash": {"value": "$2x$10$abc"}},
            },
            [("FORMAT", "custom_password_hash.hash.value")],
        ),
        ({"email": "a@b.com", "mfa_factors": []}, [("ARRAY_LENGTH_SHORT", "mfa_factors")]),
        (
            {"email": "a@b.com", "mfa_factors": [{"totp": {"secret": "A"}}] * 11},
            [("ARRAY_LENGTH_LONG", "mfa_factors")],
        ),
        (
            {"email": "a@b.com", "mfa_factors": [{"totp": {"secret": "jbtwy3dp"}}]},
            [("PATTERN", "mfa_factors[0].totp.secret")],
        ),
        (
            {
                "email": "a@b.com",
                "mfa_factors": [{"phone": {"value": "+1"}, "email": {"value": "x"}}],
            },
            [
                ("OBJECT_PROPERTIES_MAXIMUM", "mfa_factors[0]"),
                ("FORMAT", "mfa_factors[0].email.value"),
            ],
        ),
        (
            {"email": "a@b.com", "mfa_factors": [{"sms": {"value": "+1"}}]},
            [("OBJECT_ADDITIONAL_PROPERTIES", "mfa_factors[0].sms")],
        ),
        ([], [("INVALID_TYPE", "")]),
    ],
)
def test_problems_have_auth0_codes_and_paths(record, expected):
    assert sorted(codes(record)) == sorted(expected)


def test_every_forbidden_app_metadata_key_is_named():
    record = {"email": "a@b.com", "app_metadata": dict.fromkeys(FORBIDDEN_APP_METADATA_KEYS, 1)}
    record["app_metadata"]["plan"] = "free"
    paths = {path for code, path in codes(record) if code == "NOT_PASSED"}
    assert paths == {f"app_metadata.{key}" for key in FORBIDDEN_APP_METADATA_KEYS}


def test_problem_messages_are_printable_and_serialisable():
    record = {"email": "bad\x1b[31m@x", "given_name": 5}
    problems = check_user(record)
    assert {problem.code for problem in problems} == {"FORMAT", "INVALID_TYPE"}
    for problem in problems:
        assert "\x1b" not in problem.message  # values are shown as JSON, escaped
        orjson.dumps(problem.as_dict())


# --- custom_password_hash against the docs' per-algorithm rules ---------------------------------


TOP_LEVEL = ("salt", "password", "keylen", "cost", "blockSize", "parallelization")


def hashed(algorithm: str, value: str | None = None, **fields) -> dict:
    """A record with a custom_password_hash; `fields` go into hash unless they are top-level
    (hash_salt is hash.salt)."""
    top = {key: fields.pop(key) for key in TOP_LEVEL if key in fields}
    hash_object = {} if value is None else {"value": value}
    fields = {key.removeprefix("hash_"): item for key, item in fields.items()}
    return {
        "email": "a@b.com",
        "custom_password_hash": {"algorithm": algorithm, "hash": {**hash_object, **fields}, **top},
    }


def b64(data: bytes) -> str:
    """PHC's B64: standard base64 without padding."""
    return base64.b64encode(data).decode().rstrip("=")


SSHA = "{SSHA}" + base64.b64encode(bytes(20) + b"salt").decode()
PBKDF2 = f"$pbkdf2-sha256$i=1000,l=32${b64(b'saltsalt')}${b64(bytes(32))}"
HEX_MD5 = "5f4dcc3b5aa765d61d8327deb882cf99"
VALUE_PATH = "custom_password_hash.hash.value"


@pytest.mark.parametrize(
    ("record", "expected", "reason"),
    [
        # ldap: RFC 2307 {SCHEME}base64, schemes md5|smd5|sha*|ssha*, never crypt.
        (hashed("ldap", "{CRYPT}abJnggxhB/yWI", encoding="utf8"), "FORMAT", "{CRYPT}"),
        (hashed("ldap", "{crypt}$1$salt$hash"), "FORMAT", "not supported"),
        (hashed("ldap", "{CLEARTEXT}secret"), "FORMAT", "is not supported"),
        (hashed("ldap", "{PBKDF2-SHA256}AAAA"), "FORMAT", "md5, smd5, sha* and ssha*"),
        (hashed("ldap", "qUqP5cyxm6YcTAhz05Hph5gvu9M="), "FORMAT", "RFC 2307"),
        (hashed("ldap", "{SHA}not base64!"), "FORMAT", "not base64"),
        (hashed("ldap", "{SHA}" + base64.b64encode(bytes(16)).decode()), "FORMAT", "20 bytes"),
        (hashed("ldap", "{SSHA}" + base64.b64encode(bytes(20)).decode()), "FORMAT", "salt"),
        (hashed("ldap", "{SMD5}" + base64.b64encode(bytes(16)).decode()), "FORMAT", "salt"),
        (hashed("ldap", SSHA, encoding="hex"), "ENUM_MISMATCH", "utf8"),
        # pbkdf2: PHC $pbkdf2-<digest>$i=..,l=..$salt$hash, a listed digest, B64, no salt.
        (hashed("pbkdf2", PBKDF2.replace("sha256", "sha3-256")), "FORMAT", "digest"),
        (hashed("pbkdf2", PBKDF2.replace("sha256", "SHA256")), "FORMAT", "digest"),
        (hashed("pbkdf2", PBKDF2.replace("pbkdf2-sha256", "pbkdf2")), "FORMAT", "digest"),
        (hashed("pbkdf2", "pbkdf2_sha256$1000$salt$hash"), "FORMAT", "PHC"),
        (hashed("pbkdf2", PBKDF2.rsplit("$", 1)[0]), "FORMAT", "$<salt>$<hash>"),
        (hashed("pbkdf2", PBKDF2 + "="), "FORMAT", "padding"),
        (hashed("pbkdf2", PBKDF2.replace("i=1000", "i=0")), "FORMAT", "i=0"),
        (hashed("pbkdf2", PBKDF2.replace("i=1000", "i=x")), "FORMAT", "i=x"),
        (hashed("pbkdf2", PBKDF2.replace("i=1000", "i=1000;")), "FORMAT", "name=value"),
        (hashed("pbkdf2", PBKDF2.replace("l=32", "l=64")), "FORMAT", "must agree"),
        (hashed("pbkdf2", PBKDF2.replace(",l=32", "")), "FORMAT", "the default"),
        (hashed("pbkdf2", PBKDF2, encoding="hex"), "ENUM_MISMATCH", "utf8"),
        # argon2: what libsodium (behind auth0/magic) reads.
        (hashed("argon2", ARGON2.replace("argon2id", "argon2d")), "FORMAT", "argon2d"),
        (hashed("argon2", ARGON2.replace("$v=19", "")), "FORMAT", "auth0/magic"),
        (hashed("argon2", ARGON2.replace("v=19", "v=16")), "FORMAT", "v=16"),
        (hashed("argon2", ARGON2.replace("t=2,p=1", "p=1,t=2")), "FORMAT", "PHC"),
        (hashed("argon2", ARGON2.replace("m=65536", "m=065536")), "FORMAT", "leading zero"),
        (hashed("argon2", ARGON2.replace("m=65536", "m=4")), "FORMAT", "8 KiB per lane"),
        (hashed("argon2", ARGON2.replace("t=2", "t=0")), "FORMAT", "t=0"),
        (hashed("argon2", ARGON2.replace("p=1", "p=0")), "FORMAT", "p=0"),
        (hashed("argon2", ARGON2 + "="), "FORMAT", "base64"),
        (hashed("argon2", ARGON2.replace("J6Q/82PCyaNpYKRELJyTZg", "J6Q/82PC")), "FORMAT", "8"),
        (
            hashed("argon2", ARGON2.replace("J6Q/82PCyaNpYKRELJyTZg", "J6Q/82PCyaNpYKRELJyTZh")),
            "FORMAT",
            "canonical",
        ),
        (
            hashed("argon2", "$argon2id$v=19$m=65536,t=2,p=1$J6Q/82PCyaNpYKRELJyTZg"),
            "FORMAT",
            "PHC",
        ),
        # bcrypt: the whole hash, $2a$/$2b$/$2y$, cost 04 to 31.
        (hashed("bcrypt", BCRYPT[:-1]), "FORMAT", "52 characters"),
        (hashed("bcrypt", BCRYPT.replace("$10$", "$03$")), "FORMAT", "04 to 31"),
        (hashed("bcrypt", BCRYPT.replace("$10$", "$32$")), "FORMAT", "04 to 31"),
        (hashed("bcrypt", BCRYPT.replace("$2b$", "$2$")), "FORMAT", "starts with"),
        (hashed("bcrypt", BCRYPT, encoding="base64"), "ENUM_MISMATCH", "utf8"),
        # md/sha: hex or base64 (required), and the digest's length.
        (hashed("md5", HEX_MD5), "OBJECT_REQUIRED", "hex or base64"),
        (hashed("md5", HEX_MD5[:24], encoding="hex"), "FORMAT", "md5 hashes are 16 bytes"),
        (hashed("sha1", HEX_MD5, encoding="hex"), "FORMAT", "sha1 hashes are 20 bytes"),
        (hashed("sha256", "zz" * 32, encoding="hex"), "FORMAT", "not hex"),
        (hashed("sha512", "a" * 127, encoding="hex"), "FORMAT", "not hex"),
        (hashed("md4", "AbuUujgF0pPPkJPSFRTpmA=", encoding="base64"), "FORMAT", "not base64"),
        (hashed("md4", "AbuU ujgF0pPPkJPSFRTpmA==", encoding="base64"), "FORMAT", "not base64"),
        # hmac: digest and key required; the digest's length; the key in its encoding.
        (
            hashed("hmac", "00" * 20, encoding="hex", digest="sha256", key={"value": "k"}),
            "FORMAT",
            "32 bytes",
        ),
        (
            hashed(
                "hmac",
                "00" * 20,
                encoding="hex",
                digest="sha1",
                key={"value": "zz", "encoding": "hex"},
            ),
            "FORMAT",
            "the hmac key is not hex",
        ),
        (
            hashed("hmac", "00" * 20, encoding="hex", digest="sha1", key={"encoding": "hex"}),
            "OBJECT_REQUIRED",
            "value",
        ),
        (
            hashed("hmac", "00" * 20, encoding="hex", digest="blake2", key={"value": "k"}),
            "ENUM_MISMATCH",
            "whirlpool",
        ),
        # scrypt: keylen required and at least 1, and the hash that long.
        (hashed("scrypt", "00" * 16, encoding="hex", keylen=32), "FORMAT", "keylen is 32"),
        (hashed("scrypt", "00" * 16, encoding="hex", keylen=0), "MINIMUM", "at least 1"),
        (hashed("scrypt", "00" * 16, encoding="hex", keylen=16, cost=3), "MINIMUM", "power"),
        # salt: not with argon2, ldap or pbkdf2; its value in its encoding; never inside hash.
        (hashed("ldap", SSHA, salt={"value": "s"}), "NOT_PASSED", "salt is not allowed"),
        (hashed("pbkdf2", PBKDF2, salt={"value": "s"}), "NOT_PASSED", "salt is not allowed"),
        (
            hashed("md5", HEX_MD5, encoding="hex", salt={"value": "xyz", "encoding": "hex"}),
            "FORMAT",
            "the salt is not hex",
        ),
        (
            hashed("md5", HEX_MD5, encoding="hex", salt={"value": "s", "position": "middle"}),
            "ENUM_MISMATCH",
            "prefix",
        ),
        (hashed("md5", HEX_MD5, encoding="hex", hash_salt="abc"), "NOT_PASSED", "inside hash"),
        (hashed("pbkdf2", PBKDF2, hash_salt="abc"), "NOT_PASSED", "carries its salt"),
        # a hash without a value: the schema lets it through, the user could never log in.
        (hashed("bcrypt"), "OBJECT_REQUIRED", "log in"),
        (hashed("md5", encoding="hex"), "OBJECT_REQUIRED", "log in"),
    ],
)
def test_custom_password_hash_rules_name_the_path_and_say_why(record, expected, reason):
    problems = check_user(record)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert problem.code == expected
    assert problem.path.startswith("custom_password_hash.")
    assert reason in problem.message, problem.message


@pytest.mark.parametrize(
    "record",
    [
        hashed(
            "ldap",
            "{SSHA384}/cgEjdoZh85DhurDeOQEMO1rMlAur93SVPbYe5XSD4lF7nNuvrBju5hUeg9A6agRemgSXGl5YuE=",
        ),
        hashed("ldap", SSHA),
        hashed("ldap", "{ssha}" + SSHA[len("{SSHA}") :]),
        hashed("ldap", "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="),
        hashed("ldap", "{MD5}X03MO1qnZdYdgyfeuILPmQ=="),
        hashed("ldap", "{SMD5}" + base64.b64encode(bytes(16) + b"s").decode()),
        hashed("ldap", "{SHA512}" + base64.b64encode(bytes(64)).decode()),
        hashed("ldap", "{SHA3-256}" + base64.b64encode(bytes(32)).decode()),  # sha*, as listed
        hashed("pbkdf2", PBKDF2),
        hashed("pbkdf2", PBKDF2.replace("sha256", "RSA-SHA256")),
        hashed("pbkdf2", PBKDF2.replace("sha256", "sha512WithRSAEncryption")),
        hashed("pbkdf2", PBKDF2.replace("i=1000,", "")),
        hashed("pbkdf2", PBKDF2.replace("i=1000,l=32", "l=32,i=1000")),
        hashed("pbkdf2", PBKDF2.replace("$i=1000,l=32", "$v=1$i=1000,l=32")),
        hashed("pbkdf2", f"$pbkdf2-sha512${b64(b'salt')}${b64(bytes(64))}"),  # i, l by default
        hashed("argon2", ARGON2, encoding="utf8"),
        hashed("argon2", ARGON2.replace("argon2id", "argon2i")),
        hashed("argon2", ARGON2.replace("p=1", "p=4")),
        hashed("bcrypt", BCRYPT.replace("$2b$", "$2y$")),
        hashed("bcrypt", BCRYPT.replace("$2b$", "$2a$").replace("$10$", "$31$")),
        # bcrypt allows a salt ("in conjunction with salt encoding and position").
        hashed("bcrypt", BCRYPT, salt={"value": "pepper", "position": "suffix"}),
        hashed("md5", HEX_MD5.upper(), encoding="hex"),
        hashed("md5", "X03MO1qnZdYdgyfeuILPmQ", encoding="base64"),  # unpadded
        hashed("sha1", "-_-_" * 6 + "AAA", encoding="base64"),  # URL-safe base64
        hashed("sha512", "ab" * 64, encoding="hex", salt={"value": "YWJj", "encoding": "base64"}),
        hashed("hmac", "00" * 64, encoding="hex", digest="whirlpool", key={"value": "s3cret"}),
        hashed("scrypt", "00" * 16, encoding="hex", keylen=16, cost=1024, blockSize=8),
        # The scrypt numbers are only used by scrypt, so their limits bind scrypt alone.
        hashed("md5", HEX_MD5, encoding="hex", cost=3, keylen=0, parallelization=0),
    ],
)
def test_custom_password_hashes_auth0_takes_pass(record):
    assert check_user(record) == []


def test_scrypt_numbers_are_still_typed_for_every_algorithm():
    record = hashed("md5", HEX_MD5, encoding="hex", cost="16384")
    assert codes(record) == [("INVALID_TYPE", "custom_password_hash.cost")]


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (BCRYPT.replace("$2b$", "$2y$"), "custom_password_hash with algorithm bcrypt"),
        (BCRYPT.replace("$10$", "$00$"), "04 to 31"),
        (BCRYPT + "x", "54 characters"),
        ("md5:abc", "use custom_password_hash"),
    ],
)
def test_password_hash_is_a_whole_2a_or_2b_bcrypt_hash(value, hint):
    (problem,) = check_user({"email": "a@b.com", "password_hash": value})
    assert (problem.code, problem.path) == ("PATTERN", "password_hash")
    assert hint in problem.message


def test_an_empty_mfa_factor_passes_the_schema_and_import_clean_drops_it():
    record = {"email": "a@b.com", "mfa_factors": [{}, {"totp": {"secret": "JBTWY3DPEHPK3PNP"}}]}
    assert check_user(record) == []  # the schema's factor has maxProperties 1, no minimum
    cleaned, stats = clean(record)
    assert cleaned["mfa_factors"] == [{"totp": {"secret": "JBTWY3DPEHPK3PNP"}}]
    assert stats.fixes["empty mfa_factors entries dropped"] == 1
    cleaned, stats = clean({"email": "a@b.com", "mfa_factors": [{}]})
    assert "mfa_factors" not in cleaned
    assert stats.fixes["empty or null values dropped"] == 1


phc_b64 = st.binary(min_size=1, max_size=48).map(b64)


LISTED_DIGESTS = st.sampled_from(sorted(PBKDF2_DIGESTS))


@st.composite
def pbkdf2_strings(draw):
    digest = draw(LISTED_DIGESTS)
    iterations = draw(st.none() | st.integers(1, 10**7))
    keylen = draw(st.none() | st.integers(1, 128))
    parameters = []
    if iterations is not None:
        parameters.append(f"i={iterations}")
    if keylen is not None:
        parameters.append(f"l={keylen}")
    if draw(st.booleans()):
        parameters.reverse()
    size = PBKDF2_DEFAULT_KEYLEN if keylen is None else keylen
    fields = [f"pbkdf2-{digest}"]
    if parameters:
        fields.append(",".join(parameters))
    fields += [draw(phc_b64), b64(draw(st.binary(min_size=size, max_size=size)))]
    return "$" + "$".join(fields)


@settings(max_examples=300)
@given(pbkdf2_strings())
def test_valid_pbkdf2_phc_strings_are_accepted(value):
    assert check_user(hashed("pbkdf2", value)) == []


@settings(max_examples=300)
@given(
    st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=24).filter(
        lambda digest: digest not in PBKDF2_DIGESTS
    ),
    pbkdf2_strings(),
)
def test_pbkdf2_digests_outside_the_docs_list_are_refused(digest, valid):
    value = "$pbkdf2-" + digest + "$" + valid.split("$", 2)[2]
    (problem,) = check_user(hashed("pbkdf2", value))
    assert (problem.code, problem.path) == ("FORMAT", VALUE_PATH)
    assert "digest" in problem.message


@st.composite
def argon2_strings(draw):
    lanes = draw(st.integers(1, 16))
    memory = draw(st.integers(8 * lanes, 2**20))
    passes = draw(st.integers(1, 10))
    salt = draw(st.binary(min_size=8, max_size=32))
    digest = draw(st.binary(min_size=16, max_size=64))
    variant = draw(st.sampled_from(["argon2i", "argon2id"]))
    return f"${variant}$v=19$m={memory},t={passes},p={lanes}${b64(salt)}${b64(digest)}"


@settings(max_examples=300)
@given(argon2_strings())
def test_valid_argon2_strings_are_accepted(value):
    assert check_user(hashed("argon2", value)) == []


@settings(max_examples=200)
@given(
    st.sampled_from(["2a", "2b", "2y"]),
    st.integers(4, 31),
    st.text(alphabet="./" + string.ascii_letters + string.digits, min_size=53, max_size=53),
)
def test_whole_bcrypt_hashes_are_accepted(prefix, cost, body):
    value = f"${prefix}${cost:02d}${body}"
    assert check_user(hashed("bcrypt", value)) == []
    password_hash = codes({"email": "a@b.com", "password_hash": value})
    assert password_hash == ([("PATTERN", "password_hash")] if prefix == "2y" else [])


def encode(data: bytes, style: str) -> str:
    if style == "hex":
        return data.hex()
    if style == "HEX":
        return data.hex().upper()
    text = base64.urlsafe_b64encode(data) if "url" in style else base64.b64encode(data)
    return text.decode().rstrip("=" if "bare" in style else "")


ENCODING_STYLES = ["hex", "HEX", "base64", "base64 bare", "base64 url", "base64 url bare"]


@settings(max_examples=300)
@given(
    st.sampled_from(["md4", "md5", "sha1", "sha256", "sha512"]),
    st.sampled_from(ENCODING_STYLES),
    st.integers(0, 80),
    st.data(),
)
def test_md_and_sha_hashes_must_have_the_digest_length(algorithm, style, size, data):
    value = encode(data.draw(st.binary(min_size=size, max_size=size)), style)
    encoding = "hex" if style.lower() == "hex" else "base64"
    problems = codes(hashed(algorithm, value, encoding=encoding))
    expected = [] if size == DIGEST_BYTES[algorithm] else [("FORMAT", VALUE_PATH)]
    assert problems == expected


@settings(max_examples=300)
@given(
    st.text(min_size=0, max_size=12).filter(lambda scheme: "{" not in scheme and "}" not in scheme)
)
def test_ldap_schemes_outside_md5_smd5_sha_ssha_are_refused(scheme):
    upper = scheme.upper()
    supported = upper in ("MD5", "SMD5") or upper.startswith(("SHA", "SSHA"))
    value = "{" + scheme + "}" + base64.b64encode(bytes(80)).decode()
    problems = check_user(hashed("ldap", value))
    refused = [problem for problem in problems if "not supported" in problem.message]
    if supported:
        assert refused == []
    else:
        assert [(problem.code, problem.path) for problem in problems] == [("FORMAT", VALUE_PATH)]
        assert refused == problems
    assert not any(ord(char) < 0x20 for problem in problems for char in problem.message)


custom_hash_fields = st.sampled_from(
    ["algorithm", "hash", "salt", "password", "keylen", "cost", "blockSize", "parallelization", "x"]
)
hash_fields = st.sampled_from(["value", "encoding", "digest", "key", "salt"])
likely_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(hash_fields, inner, max_size=2),
    max_leaves=4,
) | st.sampled_from(
    [*HASH_ALGORITHMS, "hex", "base64", "utf8", "sha1", "prefix", BCRYPT, ARGON2, PBKDF2, SSHA,
     HEX_MD5, "", 16384, {"value": "abc"}, {"value": "zz", "encoding": "hex"}]
)  # fmt: skip


@settings(max_examples=500)
@given(
    st.dictionaries(custom_hash_fields, likely_values, max_size=6),
    st.dictionaries(hash_fields, likely_values, max_size=5),
)
def test_every_hash_problem_names_its_path_and_says_why(custom, hash_object):
    if "hash" in custom and isinstance(custom["hash"], dict):
        custom["hash"] = hash_object
    problems = check_user({"email": "a@b.com", "custom_password_hash": custom})
    for problem in problems:
        assert problem.path.startswith("custom_password_hash")
        assert problem.code in AUTH0_CODES
        assert len(problem.message) > 10
        assert not any(ord(char) < 0x20 for char in problem.message)  # shown as JSON, escaped
        orjson.dumps(problem.as_dict())


AUTH0_CODES = {
    "FORMAT", "PATTERN", "INVALID_TYPE", "MIN_LENGTH", "MAX_LENGTH", "OBJECT_REQUIRED",
    "ENUM_MISMATCH", "ARRAY_LENGTH_SHORT", "ARRAY_LENGTH_LONG", "MINIMUM", "NOT_PASSED",
    "OBJECT_ADDITIONAL_PROPERTIES", "OBJECT_PROPERTIES_MAXIMUM",
}  # fmt: skip


def test_cli_check_names_the_path_and_reason_of_a_hash_auth0_would_refuse():
    given_records = [
        hashed("ldap", "{CRYPT}abJnggxhB/yWI"),
        hashed("pbkdf2", PBKDF2.replace("sha256", "sha3-256")),
        hashed("ldap", SSHA),
    ]
    result = run_ndpipe("import-clean", "--check", input=ndjson(given_records))
    assert result.returncode == 1
    lines = [line for line in result.stderr.decode().splitlines() if ": rejected: " in line]
    assert len(lines) == 2
    assert (
        "line 1: rejected: FORMAT custom_password_hash.hash.value: the {CRYPT} scheme" in (lines[0])
    )
    assert "line 2: rejected: FORMAT custom_password_hash.hash.value: the digest" in lines[1]


# validator.js isEmail with default options (what Auth0 uses).
VALID_EMAILS = [
    "jane@example.com",
    "Jane.Doe+tag@Example.COM",
    "josé.okafor3@example.com",
    "李.王5@example.com",
    "user@münchen.de",
    "user@xn--mnchen-3ya.de",
    "o'brien@example.ie",
    "!#$%&'*+-/=?^_`{|}~@example.com",
    '"quoted local"@example.com',
    "a" * 64 + "@example.com",
    "x@" + ".".join(["d" * 63] * 3) + ".com",
]
INVALID_EMAILS = [
    ("", "no '@'"),
    ("plainaddress", "no '@'"),
    ('a"b@x.com', "contains"),
    ("a b@example.com", "contains"),
    ("a@b@example.com", "contains"),
    (".dot@example.com", "empty"),
    ("dot.@example.com", "empty"),
    ("two..dots@example.com", "empty"),
    ("user@localhost", "top-level"),
    ("user@example.c", "top-level"),
    ("user@example.123", "top-level"),
    ("user@-bad-.com", "'-'"),
    ("user@bad_domain.com", "'_'"),
    ("user@exa mple.com", "character"),
    ("user@example..com", "empty label"),
    ("a" * 65 + "@example.com", "64 bytes"),
    ("é" * 33 + "@example.com", "64 bytes"),  # 33 characters, 66 bytes
    ("emoji😀@example.com", "contains"),
    ("x@" + "d" * 64 + ".com", "63"),
    ("x@" + ".".join(["d" * 60] * 5) + ".com", "254"),
    ("user@ｅxample.com", "character"),
]


@pytest.mark.parametrize("email", VALID_EMAILS)
def test_valid_emails(email):
    assert email_problem(email) is None
    assert is_email(email)


@pytest.mark.parametrize(("email", "reason"), INVALID_EMAILS)
def test_invalid_emails_say_why(email, reason):
    problem = email_problem(email)
    assert problem is not None and reason in problem, problem
    assert not is_email(email)


email_like = st.text(alphabet="aZ09.-_@+\"' é李😀ｅ", max_size=24) | st.from_regex(
    r"[a-z0-9.+-]{0,70}@[a-z0-9.-]{0,70}\.[a-z0-9-]{0,6}", fullmatch=True
)


@settings(max_examples=1000)
@given(email_like)
def test_email_fast_path_agrees_with_the_full_rules(email):
    assert (email_problem(email) is None) == (_email_rules(email) is None)


# --- cleaning -----------------------------------------------------------------------------------


def clean(record: dict, **options) -> tuple[dict, CleanStats]:
    stats = CleanStats()
    options.setdefault("email_verified", "keep")
    options.setdefault("drop_user_id", False)
    return clean_user(record, stats=stats, **options), stats


EXPORTED = {
    "user_id": "auth0|6142b8f00a19ee006a344f47",
    "email": "Jane@Example.com",
    "email_verified": True,
    "name": "Jane Doe",
    "given_name": "Jane",
    "family_name": "",
    "nickname": None,
    "picture": "https://s.gravatar.com/avatar/x.png",
    "identities": [{"connection": "Username-Password-Authentication", "provider": "auth0"}],
    "app_metadata": {"plan": "premium", "email": "old@example.com", "loginsCount": 3},
    "user_metadata": {"country": "NZ"},
    "created_at": "2021-09-16T03:24:32.897Z",
    "updated_at": "2021-10-12T02:01:42.658Z",
    "last_login": "2021-10-12T02:01:42.657Z",
    "last_ip": "203.0.113.10",
    "logins_count": 19,
    "last_password_reset": "2021-10-12T02:01:42.657Z",
    "multifactor": ["guardian"],
}


def test_an_export_line_becomes_an_import_record():
    original = copy.deepcopy(EXPORTED)
    cleaned, stats = clean(EXPORTED)
    assert cleaned == {
        "user_id": "6142b8f00a19ee006a344f47",
        "email": "jane@example.com",
        "email_verified": True,
        "name": "Jane Doe",
        "given_name": "Jane",
        "picture": "https://s.gravatar.com/avatar/x.png",
        "app_metadata": {"plan": "premium"},
        "user_metadata": {"country": "NZ"},
    }
    assert check_user(cleaned) == []
    assert original == EXPORTED  # the input record is not modified
    assert set(stats.dropped_keys) == {
        "identities", "created_at", "updated_at", "last_login", "last_ip", "logins_count",
        "last_password_reset", "multifactor", "app_metadata.email", "app_metadata.loginsCount",
    }  # fmt: skip
    assert stats.fixes["user_id 'auth0|' prefix removed"] == 1
    assert stats.fixes["email lower-cased or trimmed"] == 1
    assert stats.fixes["empty or null values dropped"] == 2


def test_extension_columns_are_renamed_back():
    exported = {
        "Id": "auth0|abc",
        "Given Name": "Jane",
        "Family Name": "Doe",
        "Nickname": "jd",
        "Name": "Jane Doe",
        "Email": "JANE@example.com",
        "Email Verified": False,
        "Picture": "https://example.com/p.png",
        "Connection": "Username-Password-Authentication",
        "Created At": "2021-09-16T03:24:32.897Z",
        "Updated At": "2021-09-16T03:24:32.897Z",
    }
    cleaned, stats = clean(exported)
    assert cleaned == {
        "user_id": "abc",
        "given_name": "Jane",
        "family_name": "Doe",
        "nickname": "jd",
        "name": "Jane Doe",
        "email": "jane@example.com",
        "email_verified": False,
        "picture": "https://example.com/p.png",
    }
    assert set(stats.dropped_keys) == {"Connection", "Created At", "Updated At"}


def test_the_schema_name_wins_over_an_extension_column():
    cleaned, stats = clean({"email": "a@example.com", "Email": "b@example.com"})
    assert cleaned["email"] == "a@example.com"
    assert stats.dropped_keys == {"Email": 1}


@pytest.mark.parametrize(
    ("user_id", "expected", "fix"),
    [
        ("auth0|abc", "abc", "user_id 'auth0|' prefix removed"),
        ("auth0|auth0|abc", "auth0|abc", "user_id 'auth0|' prefix removed"),
        ("abc", "abc", None),
        (2000, "2000", "user_id number written as a string"),
        ("google-oauth2|1234", None, "user_id of another connection dropped"),
        ("samlp|corp|jane", None, "user_id of another connection dropped"),
        ("auth0|", None, "empty or null values dropped"),
    ],
)
def test_user_id(user_id, expected, fix):
    cleaned, stats = clean({"email": "a@example.com", "user_id": user_id})
    assert cleaned.get("user_id") == expected
    if fix:
        assert stats.fixes[fix] == 1


def test_drop_user_id():
    cleaned, _ = clean({"email": "a@example.com", "user_id": "auth0|abc"}, drop_user_id=True)
    assert "user_id" not in cleaned


@pytest.mark.parametrize(
    ("mode", "given_value", "expected"),
    [
        ("keep", True, True),
        ("keep", False, False),
        ("keep", None, False),
        ("keep", "TRUE", True),
        ("true", False, True),
        ("true", None, True),
        ("false", True, False),
    ],
)
def test_email_verified_is_always_written(mode, given_value, expected):
    record = {"email": "a@example.com"}
    if given_value is not None:
        record["email_verified"] = given_value
    cleaned, _ = clean(record, email_verified=mode)
    assert cleaned["email_verified"] is expected


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+64215550100", "+64215550100"),
        ("+64 21 555 0100", "+64215550100"),
        ("+1 (212) 555-0001", "+12125550001"),
        ("555-0100", "555-0100"),  # no country code: left for the checker to reject
        ("+64 21 555 0100 ext 9", "+64 21 555 0100 ext 9"),
    ],
)
def test_phone_separators_are_removed_only_when_that_makes_it_e164(phone, expected):
    cleaned, _ = clean({"email": "a@example.com", "phone_number": phone})
    assert cleaned["phone_number"] == expected


def test_text_booleans_and_empty_mfa():
    cleaned, _ = clean(
        {
            "email": "a@example.com",
            "blocked": "False",
            "phone_verified": " true ",
            "mfa_factors": [],
        }
    )
    assert cleaned == {
        "email": "a@example.com",
        "blocked": False,
        "phone_verified": True,
        "email_verified": False,
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
export_records = st.dictionaries(
    st.sampled_from([*SCHEMA_FIELDS, "Email", "Id", "Name", "Connection", "created_at", "junk"]),
    json_values
    | st.sampled_from(["auth0|x", "google-oauth2|1", "A@Example.com", " +1 555 0100 ", "true"]),
    max_size=8,
)


@settings(max_examples=300)
@given(export_records)
def test_cleaning_is_idempotent_and_keeps_to_the_schema(record):
    cleaned, _ = clean(record)
    assert set(cleaned) <= set(SCHEMA_FIELDS)
    assert isinstance(cleaned["email_verified"], bool) or "email_verified" in record
    if not check_user(cleaned):
        # Idempotent, except that each run strips one 'auth0|' (an id can have two).
        again, stats = clean(cleaned)
        again.pop("user_id", None)
        assert again == {key: value for key, value in cleaned.items() if key != "user_id"}
        assert not stats.dropped_keys


def test_op_numbers_rejects_and_yields_only_clean_records():
    rejected: list[Rejected] = []
    stats = CleanStats()
    given_records = [
        {"email": "ok@example.com"},
        {"email": "bad"},
        {"name": "no email"},
        {"Email": "OK2@example.com", "created_at": "x"},
    ]
    out = list(import_clean(iter(given_records), stats=stats, on_reject=rejected.append))
    assert out == [
        {"email": "ok@example.com", "email_verified": False},
        {"email": "ok2@example.com", "email_verified": False},
    ]
    assert [(r.line, r.record) for r in rejected] == [(2, given_records[1]), (3, given_records[2])]
    assert (stats.read, stats.passed, stats.changed, stats.rejected) == (4, 2, 2, 2)
    assert rejected[1].as_record()["errors"] == [
        {"code": "OBJECT_REQUIRED", "path": "email", "message": "missing required property email"}
    ]


def test_check_only_passes_everything_through_unchanged():
    rejected: list[Rejected] = []
    stats = CleanStats()
    given_records = [{"email": "ok@example.com"}, {"Email": "a@example.com"}]
    out = list(
        import_clean(iter(given_records), stats=stats, on_reject=rejected.append, check_only=True)
    )
    assert out == given_records
    assert [r.line for r in rejected] == [2]
    assert (stats.passed, stats.rejected) == (1, 1)


# --- the command --------------------------------------------------------------------------------

SAMPLE = [
    {"email": "Jane@Example.com", "user_id": "auth0|a1", "created_at": "2021", "logins_count": 3},
    {"Email": "bob@example.com", "Connection": "Username-Password-Authentication"},
    {"email": "not-an-email", "given_name": "Nope"},
    {"email": "p@example.com", "password_hash": "$2b$10$" + "a" * 53, "custom_password_hash": {}},
]


def test_cli_writes_clean_records_and_a_summary(tmp_path):
    rejects = tmp_path / "rejects.ndjson"
    result = run_ndpipe("import-clean", "--rejects", str(rejects), input=ndjson(SAMPLE))
    assert result.returncode == 1, result.stderr
    assert records(result.stdout) == [
        {"email": "jane@example.com", "user_id": "a1", "email_verified": False},
        {"email": "bob@example.com", "email_verified": False},
    ]
    written = records(rejects.read_bytes())
    assert [(r["line"], r["record"]) for r in written] == [(3, SAMPLE[2]), (4, SAMPLE[3])]
    assert [e["code"] for e in written[0]["errors"]] == ["FORMAT"]
    assert {e["code"] for e in written[1]["errors"]} == {"NOT_PASSED", "OBJECT_REQUIRED"}
    stderr = result.stderr.decode()
    assert f"4 read, 2 passed (2 changed), 2 rejected (written to {rejects})" in stderr
    assert "dropped keys: " in stderr and "created_at 1" in stderr and "Connection 1" in stderr
    assert "renamed 'Email' to email 1" in stderr


def test_cli_without_rejects_file_reports_each_reject_on_stderr():
    result = run_ndpipe("import-clean", input=ndjson(SAMPLE))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("ndpipe import-clean: line 3: rejected: FORMAT email: ")
    assert lines[1].startswith("ndpipe import-clean: line 4: rejected: ")
    assert "NOT_PASSED password_hash" in lines[1]
    assert len(records(result.stdout)) == 2


def test_cli_exit_0_when_nothing_is_rejected():
    result = run_ndpipe("import-clean", "--email-verified", "true", input=ndjson(SAMPLE[:2]))
    assert result.returncode == 0, result.stderr
    assert [r["email_verified"] for r in records(result.stdout)] == [True, True]
    assert b"2 read, 2 passed (2 changed), 0 rejected" in result.stderr


def test_cli_check_changes_nothing(tmp_path):
    data = ndjson(SAMPLE)
    result = run_ndpipe("import-clean", "--check", input=data)
    assert result.returncode == 1
    assert result.stdout == data
    assert b"4 checked, 0 valid, 4 invalid" in result.stderr
    clean_data = ndjson([{"email": "a@example.com", "email_verified": True}])
    result = run_ndpipe("import-clean", "--check", input=clean_data)
    assert (result.returncode, result.stdout) == (0, clean_data)


def test_cli_on_the_fixture_export():
    result = run_ndpipe("import-clean", input=(FIXTURES / "users.ndjson").read_bytes())
    cleaned = records(result.stdout)
    assert all(check_user(record) == [] for record in cleaned)
    rejected = [line for line in result.stderr.decode().splitlines() if ": rejected: " in line]
    assert len(cleaned) + len(rejected) == 40


def test_cli_bad_option_is_a_usage_error():
    result = run_ndpipe("import-clean", "--email-verified", "maybe")
    assert result.returncode == 2
    result = run_ndpipe("import-clean", "--rejects", "/nonexistent/dir/r.ndjson", input=b"{}\n")
    assert result.returncode == 2
    assert b"cannot write --rejects" in result.stderr
