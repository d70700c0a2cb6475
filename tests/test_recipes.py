"""The README's tenant recipes, each one shell pipeline, against loopback Auth0 servers.

Each test seeds a FakeAuth0 tenant (tests/auth0_server.py) with the fixture export, runs the
recipe exactly as a user would (bash, pipes, bin/ndpipe, credentials from the environment or
the command line), and then checks the tenant's users: what was meant to change changed, and
nothing else did.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import orjson

from ndpipe.services.auth0.schema import FORBIDDEN_APP_METADATA_KEYS
from tests.auth0_fixtures import auth0_env_fixture, auth0_server_fixture  # noqa: F401
from tests.auth0_server import DEFAULT_CONNECTION, FakeAuth0
from tests.conftest import FIXTURES, ROOT, environment, records
from tests.test_upsert_patch import reference_merge

EXPORT = records((FIXTURES / "users.ndjson").read_bytes())
PATCHES = records((FIXTURES / "upsert-patch" / "changes.ndjson").read_bytes())
FORMULA_STARTS = tuple("=+-@\t\r")


def run(pipeline: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    path = f"{ROOT / 'bin'}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        capture_output=True,
        env=environment({**env, "PATH": path, "NDPIPE_POLL_INTERVAL": "0"}),
        cwd=cwd,
        timeout=120,
    )


def fast(server: FakeAuth0) -> FakeAuth0:
    """Jobs finish on their first read: the recipes are about data, not waiting."""
    server.export_timeline = []
    server.import_timeline = []
    return server


def database_users(server: FakeAuth0) -> dict[str, dict[str, Any]]:
    return {user["email"].lower(): copy.deepcopy(user) for user in server.users_in()}


def no_secrets(result: subprocess.CompletedProcess[bytes], server: FakeAuth0) -> None:
    assert server.client_secret.encode() not in result.stdout + result.stderr
    assert b"Traceback" not in result.stderr


def test_crm_csv_straight_from_a_tenant(auth0_server, auth0_env, tmp_path):
    fast(auth0_server).load_users(EXPORT)
    pipeline = (
        f"ndpipe fetch --connection {DEFAULT_CONNECTION} "
        "| ndpipe select 'Email Address=email' 'First Name=given_name' 'Last Name=family_name' "
        "| ndpipe escape-csv | ndpipe csv > crm.csv"
    )
    result = run(pipeline, auth0_env, tmp_path)
    assert result.returncode == 0, result.stderr
    no_secrets(result, auth0_server)

    rows = list(csv.reader(io.StringIO((tmp_path / "crm.csv").read_bytes().decode(), newline="")))
    assert rows[0] == ["Email Address", "First Name", "Last Name"]

    def cell(value: Any) -> str:
        if value is None:
            return ""
        return "'" + value if value.startswith(FORMULA_STARTS) else value

    expected = sorted(
        [cell(user.get("email")), cell(user.get("given_name")), cell(user.get("family_name"))]
        for user in auth0_server.users_in()
    )
    assert sorted(rows[1:]) == expected
    assert len(expected) > 20


def test_tenant_to_tenant_migration(auth0_server, tmp_path):
    source = fast(auth0_server)
    source.load_users(EXPORT)
    before = database_users(source)
    with FakeAuth0(tenant="ndpipe-target", seed=9) as target:
        fast(target)
        to_target = shlex.join(
            ["--domain", target.base_url, "--client-id", target.client_id,
             "--client-secret", target.client_secret]
        )  # fmt: skip
        pipeline = (
            f"ndpipe fetch --connection {DEFAULT_CONNECTION} "
            "| ndpipe import-clean --rejects rejects.ndjson "
            "| ndpipe dedupe -k email --ignore-case --dups duplicates.ndjson "
            f"| ndpipe import {to_target} --connection {DEFAULT_CONNECTION} --report failed.ndjson"
        )
        env = {
            "AUTH0_DOMAIN": source.base_url,
            "AUTH0_CLIENT_ID": source.client_id,
            "AUTH0_CLIENT_SECRET": source.client_secret,
        }
        result = run(pipeline, env, tmp_path)
        no_secrets(result, source)
        no_secrets(result, target)
        migrated = database_users(target)
        target.check()

    rejected = records((tmp_path / "rejects.ndjson").read_bytes())
    duplicates = records((tmp_path / "duplicates.ndjson").read_bytes())
    failed = records((tmp_path / "failed.ndjson").read_bytes())
    # Every source user is accounted for: migrated, rejected with reasons, or a reported duplicate.
    assert len(migrated) + len(rejected) + len(duplicates) + len(failed) == len(before)
    assert all(entry["errors"] for entry in rejected)
    assert result.returncode == (1 if rejected or failed else 0), result.stderr
    for email, user in migrated.items():
        original = before[email]
        assert user["user_id"] == original["user_id"]  # import-clean keeps a database id
        assert user["email_verified"] == original.get("email_verified", False)
        # import-clean drops empty and null values, which the target then simply lacks.
        for field in ("user_metadata", "given_name", "family_name", "name", "nickname"):
            assert (user.get(field) or None) == (original.get(field) or None), (email, field)
        allowed = {
            key: value
            for key, value in (original.get("app_metadata") or {}).items()
            if key not in FORBIDDEN_APP_METADATA_KEYS
        }
        assert (user.get("app_metadata") or {}) == allowed, email


def test_bulk_metadata_update(auth0_server, auth0_env, tmp_path):
    fast(auth0_server).load_users(EXPORT)
    before = database_users(auth0_server)
    (tmp_path / "changes.ndjson").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in PATCHES))
    pipeline = (
        f"ndpipe fetch --connection {DEFAULT_CONNECTION} --field email --field email_verified "
        "--field app_metadata --field user_metadata "
        "| ndpipe upsert-patch --patch changes.ndjson "
        f"| ndpipe import --connection {DEFAULT_CONNECTION} --upsert --report failed.ndjson"
    )
    result = run(pipeline, auth0_env, tmp_path)
    no_secrets(result, auth0_server)
    after = database_users(auth0_server)

    expected = copy.deepcopy(before)
    for patch in PATCHES:
        user = expected.get(patch["email"].strip().lower())
        if user is None:
            continue  # an unknown email: reported by upsert-patch, changes nothing
        for key, value in patch.items():
            if key in ("user_metadata", "app_metadata"):
                # `"user_metadata": null` empties the object (README, upsert-patch).
                user[key] = reference_merge(user.get(key) or {}, value) if value is not None else {}
            elif key != "email":
                user[key] = value
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "failed.ndjson").exists() or not records(
        (tmp_path / "failed.ndjson").read_bytes()
    )
    assert set(after) == set(expected)
    touched = {patch["email"].strip().lower() for patch in PATCHES}
    for email, user in after.items():
        want = expected[email]
        ignore = {"updated_at"} if email in touched else set()
        assert {k: v for k, v in user.items() if k not in ignore} == {
            k: v for k, v in want.items() if k not in ignore
        }, email
