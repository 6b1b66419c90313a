"""Changing contacts: every page, API call and job that edits one comes here."""

from __future__ import annotations

import logging
from typing import Any

from app import fields
from app.accounts.service import check_owner
from app.accounts.tables import Account
from app.contacts.tables import Contact
from app.encryption.columns import encrypt_values
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.imports.fields import EMAIL_PATTERN, limit
from app.merge import Edit, MergeResult, merge_edit

logger = logging.getLogger(__name__)

# Fields the edit form changes, in the order the form shows them.
EDITABLE = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "title",
    "lifecycle_stage",
    "account",
    "owner",
    "personal_notes",
)
TEXT_FIELDS = (
    "first_name",
    "last_name",
    "phone",
    "title",
    "lifecycle_stage",
    "personal_notes",
)
MAX_LENGTHS = {
    "first_name": limit(Contact.first_name),
    "last_name": limit(Contact.last_name),
    "email": limit(Contact.email),
    "phone": limit(Contact.phone),
    "title": limit(Contact.title),
    "lifecycle_stage": limit(Contact.lifecycle_stage),
    "personal_notes": limit(Contact.personal_notes),
}
# The fields that the contact list of an account page shows.
LISTED_FIELDS = ("first_name", "last_name", "email", "title", "account")


def contact_topics(contact_id: int, result: MergeResult) -> list[str]:
    """Return the streams that a change of the contact is published on.

    They include the streams of its old and new account when a field that
    account pages list changed.
    """
    topics = [f"contact:{contact_id}"]
    if any(name in result.applied for name in LISTED_FIELDS):
        for account_id in (result.before["account"], result.after["account"]):
            if account_id is not None:
                topics.append(f"account:{account_id}")
    return topics


def parse_contact_field(name: str, raw: str | None) -> Any:
    """Parse one submitted field of the contact form.

    Emails are only read as text here, because contacts may hold addresses
    stored before the rule. ``check_email`` applies to an email that an
    edit changes, so such an address does not block edits of other fields.
    """
    if name in TEXT_FIELDS:
        return fields.text(name, raw, max_length=MAX_LENGTHS[name])
    if name == "email":
        return fields.text("email", raw, max_length=MAX_LENGTHS["email"]) or None
    if name in ("account", "owner"):
        return fields.reference(name, raw)
    raise FieldError(name, raw, "is not an editable contact field")


def check_email(value: str | None) -> str | None:
    """Check an email address and return it in lower case, as imports store it."""
    if value is None:
        return None
    if len(value) > MAX_LENGTHS["email"] or not EMAIL_PATTERN.fullmatch(value):
        raise FieldError("email", value, "is not a valid email address")
    return value.lower()


async def checked_edits(edits: dict[str, Edit]) -> dict[str, Edit]:
    """Check the changed email and that the account and owner exist.

    Raises FieldError, naming the field and value, for an invalid one.
    """
    email = edits.get("email")
    if email is not None and email.new != email.base:
        edits = {**edits, "email": Edit(base=email.base, new=check_email(email.new))}

    account = edits.get("account")
    if account is not None and account.new is not None:
        if not await Account.exists().where(Account.id == account.new):
            raise FieldError("account", account.new, "does not exist")
    await check_owner({name: edit.new for name, edit in edits.items()})
    return edits


def check_name(result: MergeResult) -> None:
    """Require a first or a last name once an edit changed either.

    Contacts imported with an email but no name stay editable otherwise.
    """
    renamed = "first_name" in result.applied or "last_name" in result.applied
    if renamed and not (result.after["first_name"] or result.after["last_name"]):
        raise FieldError("first_name", None, "or last name must be given")


async def update_contact(
    contact_id: int,
    edits: dict[str, Edit],
    actor_id: int | None,
    expected_version: int | None = None,
) -> MergeResult:
    """Apply an edit to a contact, merging it with changes made since its base.

    Fields that someone else changed meanwhile are left as they are and
    returned in ``conflicts``, and the rest apply in the same transaction.
    Raises NotFound for an unknown contact and FieldError for an invalid
    value. The name rule is checked on the merged record, so two edits that
    each clear one half of the name cannot leave it empty.
    """
    if not await Contact.exists().where(Contact.id == contact_id):
        raise NotFound("contact", contact_id)
    edits = await checked_edits(edits)

    async with change_set(actor_id) as changes:
        result = await merge_edit(
            Contact, contact_id, edits, changes, expected_version=expected_version
        )
        # Raising here rolls the transaction back, so nothing is written.
        check_name(result)
        if result.applied:
            changes.add(
                "contact.updated",
                "contact",
                contact_id,
                contact_topics(contact_id, result),
                result.applied,
            )

    logger.info(
        "contact updated contact_id=%s user_id=%s fields=%s conflicts=%s",
        contact_id,
        actor_id,
        sorted(result.applied),
        [conflict.field for conflict in result.conflicts],
    )
    return result


async def create_contact(values: dict[str, str], actor_id: int | None) -> int:
    """Create a contact from submitted text; a first or a last name is required.

    ``owner`` defaults to the actor. Raises FieldError naming the field for
    an invalid value, before anything is written.
    """
    parsed = {
        name: parse_contact_field(name, values.get(name))
        for name in EDITABLE
        if name in values
    }
    if not (parsed.get("first_name") or parsed.get("last_name")):
        raise FieldError("first_name", None, "or last name must be given")
    edits = await checked_edits(
        {name: Edit(base=None, new=value) for name, value in parsed.items()}
    )
    parsed = {name: edit.new for name, edit in edits.items()}
    parsed["owner"] = parsed.get("owner") or actor_id

    async with change_set(actor_id) as changes:
        rows = await Contact.insert(
            Contact(**encrypt_values(Contact, parsed))
        ).returning(Contact.id)
        contact_id = rows[0]["id"]
        topics = [f"contact:{contact_id}"]
        if parsed.get("account") is not None:
            topics.append(f"account:{parsed['account']}")
        changes.add(
            "contact.created",
            "contact",
            contact_id,
            topics,
            {"account": [None, parsed.get("account")]},
        )

    logger.info("contact created contact_id=%s user_id=%s", contact_id, actor_id)
    return contact_id
