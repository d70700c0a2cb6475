"""The benchmark's user generator: deterministic, Auth0-shaped, hostile in the share it promises."""

import gzip
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bench.generate import HOSTILE_STRINGS, iso_ms, users

GENERATOR = Path(__file__).resolve().parents[1] / "bench" / "generate.py"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
AUTH0_ID = re.compile(r"^auth0\|([0-9a-f]{24})$")
GOOGLE_ID = re.compile(r"^google-oauth2\|(\d{21})$")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
KEY_ORDER = [
    "user_id",
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
    "created_at",
    "updated_at",
    "last_login",
    "last_ip",
    "logins_count",
]


def run_generator(*args: str) -> bytes:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args], check=True, capture_output=True
    ).stdout


def strings_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def test_same_seed_gives_identical_bytes_and_another_seed_does_not() -> None:
    args = ("-n", "3000", "--dup-rate", "0.05", "--hostile-rate", "0.1")
    first = run_generator(*args, "--seed", "7")
    assert first == run_generator(*args, "--seed", "7")
    assert first != run_generator(*args, "--seed", "8")
    assert first.count(b"\n") == 3000


def test_cli_output_is_the_library_records_as_ndjson() -> None:
    out = run_generator("-n", "500", "--seed", "3", "--hostile-rate", "0.2")
    lines = out.splitlines()
    assert [orjson.loads(line) for line in lines] == list(users(500, seed=3, hostile_rate=0.2))
    # Newlines inside values are escaped, so a physical line is one record.
    assert all(line.startswith(b"{") and line.endswith(b"}") for line in lines)


def test_smaller_run_is_a_prefix_of_a_larger_one() -> None:
    small = list(users(300, seed=5, dup_rate=0.02, hostile_rate=0.05))
    large = list(users(1000, seed=5, dup_rate=0.02, hostile_rate=0.05))
    assert small == large[:300]


def test_array_format_and_gzip_hold_the_same_records(tmp_path: Path) -> None:
    ndjson = run_generator("-n", "200", "--seed", "2")
    array = run_generator("-n", "200", "--seed", "2", "--format", "array")
    records = [orjson.loads(line) for line in ndjson.splitlines()]
    assert orjson.loads(array) == records
    target = tmp_path / "users.json.gz"
    run_generator("-n", "200", "--seed", "2", "-o", str(target))
    first = target.read_bytes()
    assert gzip.decompress(first) == ndjson
    run_generator("-n", "200", "--seed", "2", "-o", str(target))
    assert target.read_bytes() == first


def test_zero_users_is_empty_output_and_an_empty_array() -> None:
    assert run_generator("-n", "0") == b""
    assert orjson.loads(run_generator("-n", "0", "--format", "array")) == []


def test_bad_arguments_fail_at_the_call() -> None:
    with pytest.raises(ValueError, match="dup_rate"):
        users(10, dup_rate=1.5)
    with pytest.raises(ValueError, match="n must"):
        users(-1)
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--hostile-rate", "-0.1"], capture_output=True
    )
    assert result.returncode == 2
    assert b"hostile_rate" in result.stderr


def test_records_have_the_auth0_export_shape() -> None:
    records = list(users(5000, seed=11, hostile_rate=0.0))
    providers = Counter()
    for record in records:
        assert list(record) == [key for key in KEY_ORDER if key in record]
        identity = record["identities"][0]
        if match := AUTH0_ID.match(record["user_id"]):
            assert identity["connection"] == "Username-Password-Authentication"
            assert identity["provider"] == "auth0"
            assert identity["isSocial"] is False
        else:
            match = GOOGLE_ID.match(record["user_id"])
            assert match, record["user_id"]
            assert identity["provider"] == identity["connection"] == "google-oauth2"
            assert identity["isSocial"] is True
            assert record["email_verified"] is True
        assert identity["user_id"] == match.group(1)
        providers[identity["provider"]] += 1

        assert record["email"] == record["email"].lower()
        assert re.fullmatch(r"[a-z0-9._]+@[a-z0-9.-]+\.[a-z]+", record["email"])
        assert record["nickname"] == record["email"].split("@")[0]
        assert isinstance(record["email_verified"], bool)
        assert isinstance(record["name"], str) and record["name"]
        assert record["picture"].startswith("https://")
        for key in ("created_at", "updated_at", "last_login"):
            if key in record:
                assert ISO_MS.match(record[key]), record[key]
        assert record["created_at"] <= record["updated_at"]
        if "last_login" in record:
            assert record["created_at"] <= record["last_login"] <= record["updated_at"]
            assert isinstance(record["logins_count"], int) and record["logins_count"] >= 1
            assert isinstance(record["last_ip"], str)
        else:
            assert "logins_count" not in record and "last_ip" not in record

        app_metadata = record.get("app_metadata")
        assert app_metadata is None or isinstance(app_metadata, dict)
        if app_metadata:
            assert isinstance(app_metadata["plan"], str)
            assert isinstance(app_metadata["roles"], list)
        user_metadata = record.get("user_metadata")
        if user_metadata is not None:
            assert isinstance(user_metadata["country"], str) and len(user_metadata["country"]) == 2
            preferences = user_metadata.get("preferences")
            if preferences is not None:
                assert set(preferences) == {"newsletter", "language"}

    # The mix the benchmark relies on, with wide margins around the configured shares.
    assert 0.1 < providers["google-oauth2"] / len(records) < 0.3
    assert 0.02 < sum("last_login" not in r for r in records) / len(records) < 0.1
    with_metadata_name = sum("name" in (r.get("user_metadata") or {}) for r in records)
    assert 0.3 < with_metadata_name / len(records) < 0.7
    assert any("billing" in (r.get("app_metadata") or {}) for r in records)
    assert any(not r["name"].isascii() for r in records)


def test_without_duplicates_emails_are_unique_and_dup_rate_repeats_them() -> None:
    emails = [r["email"] for r in users(20000, seed=1, hostile_rate=0.05) if "email" in r]
    assert len(set(emails)) == len(emails)
    emails = [r["email"] for r in users(20000, seed=1, dup_rate=0.05, hostile_rate=0.0)]
    repeats = len(emails) - len(set(emails))
    assert 0.03 * len(emails) < repeats < 0.07 * len(emails)


def test_hostile_rate_controls_hostile_values() -> None:
    clean = list(users(5000, seed=4, hostile_rate=0.0))
    assert not any(s.startswith(FORMULA_STARTS) for r in clean for s in strings_in(r))
    assert not any("\n" in s or '"' in s for r in clean for s in strings_in(r))
    assert all(r.get("user_metadata", {}) is not None for r in clean)

    hostile = list(users(5000, seed=4, hostile_rate=0.5))
    values = [s for r in hostile for s in strings_in(r)]
    assert any(s.startswith(FORMULA_STARTS) for s in values)
    assert any("\n" in s for s in values)
    assert any('"' in s for s in values)
    assert any("," in s for s in values)
    assert any(ord(c) > 0xFFFF for s in values for c in s)  # emoji, outside the BMP
    assert any(v in values for v in ("山田 太郎", "李小龙", "김지민"))
    assert any(r.get("user_metadata", {}) is None for r in hostile)
    assert any(r.get("app_metadata", {}) is None for r in hostile)
    assert any("email" not in r for r in hostile)
    assert any(r.get("email", "").startswith(("=", "+", "-")) for r in hostile)
    assert set(HOSTILE_STRINGS) & set(values)
    # Every hostile record still serialises and reads back unchanged.
    assert [orjson.loads(orjson.dumps(r)) for r in hostile] == hostile


def test_iso_ms_matches_datetime() -> None:
    import datetime

    for epoch_ms in (1_420_070_400_000, 1_631_762_672_897, 1_735_689_599_999):
        expected = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.UTC)
        assert iso_ms(epoch_ms) == expected.strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{epoch_ms % 1000:03d}Z"
        )
