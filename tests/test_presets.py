"""select's CRM presets: Auth0 users under the names Marketo's and Salesforce's APIs accept."""

from __future__ import annotations

import gzip

import pytest

from tests.conftest import FIXTURES, ndjson, records, run_ndpipe

USERS = [
    {
        "user_id": "auth0|1",
        "email": "ada@example.com",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "nickname": "ada",
    },
    # A social or passwordless user: no family name.
    {"user_id": "google-oauth2|2", "email": "bob@example.com", "nickname": "bob"},
    # No name at all, a company in the metadata.
    {"user_id": "email|3", "email": "cy@example.com", "user_metadata": {"company": "Acme"}},
]


def select(*args: str, users: list[dict] = USERS) -> list[dict]:
    result = run_ndpipe("select", *args, input=ndjson(users))
    assert result.returncode == 0, result.stderr.decode()
    return records(result.stdout)


def test_marketo_preset_writes_marketo_rest_names() -> None:
    out = select("--preset", "marketo")
    assert [list(record) for record in out] == [["email", "firstName", "lastName"]] * 3
    assert out[0] == {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}
    assert out[1]["lastName"] is None  # Marketo does not require it: nothing is made up


def test_salesforce_contact_fills_the_required_last_name() -> None:
    out = select("--preset", "salesforce-contact", "Auth0_User_Id__c=user_id")
    assert list(out[0]) == ["Email", "FirstName", "LastName", "Auth0_User_Id__c"]
    assert [record["LastName"] for record in out] == ["Lovelace", "bob", "[not provided]"]
    assert [record["Auth0_User_Id__c"] for record in out] == [u["user_id"] for u in USERS]


def test_salesforce_lead_fills_company_from_the_metadata_or_a_placeholder() -> None:
    out = select("--preset", "salesforce-lead")
    assert list(out[0]) == ["Email", "FirstName", "LastName", "Company"]
    assert [record["Company"] for record in out] == ["[not provided]"] * 2 + ["Acme"]


def test_a_given_field_replaces_the_preset_field_of_that_name_in_place() -> None:
    out = select("--preset", "salesforce-contact", 'LastName=family_name || `"-"`', "Id=user_id")
    assert list(out[0]) == ["Email", "FirstName", "LastName", "Id"]
    assert [record["LastName"] for record in out] == ["Lovelace", "-", "-"]


def test_the_wizard_preset_keeps_display_names_for_the_data_import_wizard() -> None:
    out = select("--preset", "salesforce-wizard")
    assert list(out[0]) == ["Email Address", "First Name", "Last Name", "Created At"]


@pytest.mark.parametrize("preset", ["marketo", "salesforce-contact", "salesforce-lead"])
def test_every_fixture_user_gets_every_column_of_the_preset(preset: str) -> None:
    users = records(gzip.decompress((FIXTURES / "users.json.gz").read_bytes()))
    out = select("--preset", preset, users=users)
    assert len(out) == len(users)
    assert len({tuple(record) for record in out}) == 1
    if preset.startswith("salesforce"):
        assert all(isinstance(record["LastName"], str) and record["LastName"] for record in out)
