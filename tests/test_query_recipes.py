"""The README's "Finding users" recipes select exactly the users they say they select.

Each recipe command is read from the README section itself, so the README and these tests cannot
drift apart, and run in a shell on fixtures/queries/users.ndjson (hand-made Auth0 users with an
edge case for each recipe) standing in for export.json.gz. What it selects is compared with a
reference written in plain Python from what the recipe's explanation promises: dates compared as
datetimes, not strings, and JMESPath's rules of truth left out wherever they could be.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, ROOT, records, shell

SECTION = "## Finding users: Auth0 searches as pipelines"
USERS = FIXTURES / "queries" / "users.ndjson"

User = dict[str, Any]


def section_recipes() -> list[str]:
    """The indented commands of the README section, `\\` continuations joined."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION) + len(SECTION)
    following = re.compile(r"^#{1,3} ", re.MULTILINE).search(text, start)  # the next heading
    end = following.start() if following else len(text)
    commands: list[str] = []
    pending = ""
    for line in text[start:end].splitlines():
        if not line.startswith("    ") and not pending:
            continue
        joined = pending + line.strip()
        if joined.endswith("\\"):
            pending = joined[:-1].rstrip() + " "
            continue
        pending = ""
        if joined.startswith("ndpipe "):
            commands.append(joined)
    return commands


def fixture_users() -> list[User]:
    return records(USERS.read_bytes())


def instant(value: Any) -> datetime | None:
    """A date as Auth0 writes it, as a point in time; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value)


def since(field: str, day: datetime) -> Callable[[User], bool]:
    def selected(user: User) -> bool:
        moment = instant(user.get(field))
        return moment is not None and moment >= day

    return selected


def created_in_2023(user: User) -> bool:
    moment = instant(user.get("created_at"))
    return moment is not None and moment.year == 2023


def never_logged_in(user: User) -> bool:
    count = user.get("logins_count")
    logged_in = isinstance(count, int) and not isinstance(count, bool) and count > 0
    return user.get("last_login") in (None, "") and not logged_in


def connections(user: User) -> list[str]:
    return [identity["connection"] for identity in user.get("identities") or []]


def first_connection_google(user: User) -> bool:
    return connections(user)[:1] == ["google-oauth2"]


def any_connection_google(user: User) -> bool:
    return "google-oauth2" in connections(user)


def premium_plan(user: User) -> bool:
    return (user.get("app_metadata") or {}).get("plan") == "premium"


def admin_role(user: User) -> bool:
    roles = (user.get("app_metadata") or {}).get("roles")
    return isinstance(roles, list) and "admin" in roles


def unverified(user: User) -> bool:
    return user.get("email_verified") is not True


def blocked(user: User) -> bool:
    return user.get("blocked") is True


def at_example_com(user: User) -> bool:
    email = user.get("email")
    return isinstance(email, str) and email.partition("@")[2] == "example.com"


def later_duplicates(users: list[User]) -> list[User]:
    """Every user after the first whose email, case ignored, was seen before, in email order."""
    by_email = sorted(users, key=lambda user: (user.get("email") is None, user.get("email") or ""))
    seen: set[str] = set()
    later: list[User] = []
    for user in by_email:
        email = user.get("email")
        if email is None:
            continue
        if email.lower() in seen:
            later.append(user)
        seen.add(email.lower())
    return later


def keep(test: Callable[[User], bool]) -> Callable[[list[User]], list[User]]:
    return lambda users: [user for user in users if test(user)]


JAN_2024 = datetime(2024, 1, 1, tzinfo=UTC)
JUNE_2024 = datetime(2024, 6, 1, tzinfo=UTC)

# Each recipe, found by a fragment of its command, and the users it must select.
REFERENCES: dict[str, Callable[[list[User]], list[User]]] = {
    "\"created_at >= '2024-01-01'\"": keep(since("created_at", JAN_2024)),
    "created_at < '2024-01-01'": keep(created_in_2023),
    "last_login >= '2024-06-01'": keep(since("last_login", JUNE_2024)),
    "!(last_login || logins_count": keep(never_logged_in),
    "identities[0].connection == 'google-oauth2'": keep(first_connection_google),
    "identities[?connection == 'google-oauth2']": keep(any_connection_google),
    "app_metadata.plan == 'premium'": keep(premium_plan),
    "app_metadata.roles": keep(admin_role),
    "email_verified": keep(unverified),
    "blocked == `true`": keep(blocked),
    "ends_with(email": keep(at_example_com),
    "--dups duplicates.ndjson": later_duplicates,
}

RECIPES = section_recipes()


def reference_for(recipe: str) -> str:
    matches = [fragment for fragment in REFERENCES if fragment in recipe]
    assert len(matches) == 1, (recipe, matches)
    return matches[0]


def run_recipe(recipe: str, directory: Path) -> tuple[int, list[Any], bytes]:
    """Run the recipe on the query fixture: its exit code, the emails it selects, stderr."""
    directory.mkdir()
    shutil.copy(USERS, directory / "export.json.gz")
    done = shell(recipe, cwd=directory)
    output = done.stdout
    if "--dups" in recipe:
        output = (directory / "duplicates.ndjson").read_bytes()
    return done.returncode, [user.get("email") for user in records(output)], done.stderr


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, list[Any], bytes]]:
    """Every recipe run once, four at a time: each is a few short processes."""
    base = tmp_path_factory.mktemp("recipes")
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = pool.map(lambda item: run_recipe(item[1], base / str(item[0])), enumerate(RECIPES))
        return dict(zip(RECIPES, runs, strict=True))


def test_every_recipe_has_a_reference_and_every_reference_a_recipe():
    assert sorted(reference_for(recipe) for recipe in RECIPES) == sorted(REFERENCES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_selects_what_its_reference_selects(recipe, results):
    returncode, emails, stderr = results[recipe]
    assert returncode == 0, stderr.decode()
    expected = REFERENCES[reference_for(recipe)](fixture_users())
    assert emails == [user.get("email") for user in expected]
    assert expected, "the fixture should give every recipe something to find"
    assert len(expected) < len(fixture_users()), "and something to leave out"


def test_the_fixture_holds_the_edge_cases_the_recipes_explain():
    users = fixture_users()
    emails = {user.get("email") for user in users}
    # Domain look-alikes and a mixed-case domain, which ends_with does not match.
    assert {"dee@example.com.evil.net", "eve@notexample.com", "cai@Example.COM"} <= emails
    # Dates at the bounds, and without milliseconds.
    created = {user.get("created_at") for user in users}
    assert {"2023-12-31T23:59:59.999Z", "2024-01-01T00:00:00.000Z"} <= created
    assert {"2024-01-01T00:00:00Z", "", None} <= created
    assert any("created_at" not in user for user in users)
    # logins_count 0 next to a last_login, and missing or null.
    assert any(user.get("logins_count") == 0 and user.get("last_login") for user in users)
    assert any("logins_count" not in user for user in users)
    # Roles that look like admin but are not.
    roles = [(user.get("app_metadata") or {}).get("roles") for user in users]
    assert "superadmin" in roles and ["Admin", "administrator"] in roles


def test_a_date_of_another_type_is_named_not_misread(tmp_path):
    recipe = next(recipe for recipe in RECIPES if "created_at >= '2024-01-01'\"" in recipe)
    (tmp_path / "export.json.gz").write_text(
        '{"email": "a@example.com", "created_at": "2024-02-01T00:00:00.000Z"}\n'
        '{"email": "b@example.com", "created_at": 1706745600000}\n'
    )
    done = shell(recipe, cwd=tmp_path)
    assert done.returncode == 1
    assert b"stdin:2:" in done.stderr
    skipped = shell(recipe.replace("filter ", "filter --on-error skip "), cwd=tmp_path)
    assert skipped.returncode == 0
    assert [user["email"] for user in records(skipped.stdout)] == ["a@example.com"]
    assert re.search(rb"skipped 1 record", skipped.stderr)
