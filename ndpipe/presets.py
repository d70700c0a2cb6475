"""select's CRM presets: Auth0 fields under the names each CRM's API accepts.

Auth0's own guides end in display names (`Email Address`, `First Name`) that suit a spreadsheet
and the Salesforce Data Import Wizard, which maps columns by hand; the APIs behind `to-marketo`
and `to-salesforce` refuse them. Marketo's bulk lead import wants REST field names (`email`,
`firstName`), Salesforce's Bulk API 2.0 API names (`Email`, `FirstName`). Salesforce requires
`LastName` on a Contact and a Lead, and `Company` on a Lead, which many Auth0 users (social,
passwordless) lack, so those come from a fallback: Auth0 sets `nickname` to the local part of
the email address for database users, and the rest get `[not provided]`, which is easy to find
and fix in the CRM.

Each preset is a list of select FIELD arguments (NAME=EXPR); a field given on the command line
with the same NAME replaces the preset's.
"""

from __future__ import annotations

from ndpipe.ops.select import PRESETS, Field, auth0_fields, parse_field

NOT_PROVIDED = "'[not provided]'"
LAST_NAME = f"family_name || nickname || {NOT_PROVIDED}"

CRM_PRESETS: dict[str, list[str]] = {
    "marketo": [
        "email=email",
        "firstName=given_name",
        "lastName=family_name",
    ],
    "salesforce-contact": [
        "Email=email",
        "FirstName=given_name",
        f"LastName={LAST_NAME}",
    ],
    "salesforce-lead": [
        "Email=email",
        "FirstName=given_name",
        f"LastName={LAST_NAME}",
        f"Company=user_metadata.company || app_metadata.company || {NOT_PROVIDED}",
    ],
    # The Data Import Wizard maps columns by hand and takes display names (50,000 records per
    # import: `csv --split-rows 50000`).
    "salesforce-wizard": [
        "Email Address=email",
        "First Name=given_name",
        f"Last Name={LAST_NAME}",
        "Created At=created_at",
    ],
}

NAMES = sorted([*PRESETS, *CRM_PRESETS])

HELP = (
    "auth0-default: the User Import/Export extension's 11 default fields and column names; "
    "marketo: email, firstName, lastName (Marketo REST names, for to-marketo); "
    "salesforce-contact / salesforce-lead: Email, FirstName, LastName (and Company), API names "
    "for to-salesforce, with LastName and Company filled when Auth0 has none; "
    "salesforce-wizard: display names for the Data Import Wizard."
)


def with_preset(name: str | None, given: list[Field]) -> list[Field]:
    """The preset's fields, then the GIVEN ones; a given field with the NAME of a preset field
    takes that field's place."""
    if name is None:
        return given
    if name in PRESETS:
        preset = auth0_fields(PRESETS[name], name)
    else:
        preset = [parse_field(text) for text in CRM_PRESETS[name]]
    replacing = {field.key: field for field in given}
    chosen = [replacing.pop(field.key, field) for field in preset]
    return chosen + [field for field in given if field.key in replacing]
