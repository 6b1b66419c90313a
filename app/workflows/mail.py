"""Recipients and template bodies of the send_email action.

A rule's email goes to a fixed address, to the record's requester or
contact, or to its assignee or owner. Its body is the action's text with
``{record.<field>}`` placeholders, or a reply template (app.email.templates)
rendered with the values an agent's reply would see, taken from the record
and the contact and account it names. For the owner, a template value
whose field they may not read shows ``(hidden)``, as a placeholder does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.accounts.tables import Account
from app.auth.tables import User
from app.contacts.tables import Contact
from app.email.outbound import reply_context
from app.email.templates import SAMPLE_CONTEXT, get_template, render_template
from app.errors import FieldError
from app.workflows.placeholders import HIDDEN
from app.workflows.records import RECORD_TYPES, RecordType, load_record
from app.workflows.schema import Action

# Returns the fields of a record, as loaded, that the mail's reader may not
# read (app.workflows.actions.hidden_from_reader).
HiddenFor = Callable[[RecordType, dict[str, Any]], Awaitable[frozenset[str]]]

# The record fields behind each template value, by the type of the record
# that the value's group (``ticket``, ``contact`` or ``account``) comes
# from. A lead is its own contact, with one ``name``.
VALUE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "ticket": {
        "id": ("id",),
        "tag": ("id",),
        "subject": ("subject",),
        "status": ("status",),
        "priority": ("priority",),
    },
    "contact": {
        "name": ("first_name", "last_name"),
        "first_name": ("first_name",),
        "last_name": ("last_name",),
        "email": ("email",),
    },
    "lead": {
        "name": ("name",),
        "first_name": ("name",),
        "last_name": ("name",),
        "email": ("email",),
    },
    "account": {"name": ("name",)},
}


@dataclass
class TemplateValues:
    """The values a reply template is rendered with, and for each group of
    them the record it comes from (its type and the record as loaded).
    ``agent`` is the owner, who is a user and not a record."""

    values: dict[str, Any]
    sources: dict[str, tuple[RecordType, dict[str, Any]]] = field(default_factory=dict)

    async def hide(self, hidden_for: HiddenFor) -> None:
        """Replace each value whose field the reader may not read with
        ``HIDDEN``."""
        for group, (source_type, source) in self.sources.items():
            hidden = await hidden_for(source_type, source)
            group_values = self.values[group]
            for key, names in VALUE_FIELDS[source_type.name].items():
                if key in group_values and hidden.intersection(names):
                    group_values[key] = HIDDEN


class RecipientMissing(LookupError):
    """The record has no requester or owner with an email address."""


async def contact_of(contact_id: Any) -> dict[str, Any] | None:
    if contact_id is None:
        return None
    return (
        await Contact.select(
            Contact.first_name, Contact.last_name, Contact.email, Contact.account
        )
        .where(Contact.id == contact_id)
        .first()
    )


async def owner_of(record_type: RecordType, record: dict[str, Any]) -> dict[str, Any]:
    """Return the name and email of the record's assignee or owner, or blanks."""
    user_id = record.get(record_type.owner_field or "")
    if user_id is None:
        return {"name": "", "email": ""}
    user = (
        await User.select(User.name, User.email)
        .where((User.id == user_id) & (User.active == True))  # noqa: E712
        .first()
    )
    return user or {"name": "", "email": ""}


async def recipient_address(
    action: Action, record_type: RecordType, record: dict[str, Any]
) -> str:
    """Return the address the action writes to; raises RecipientMissing."""
    if action.recipient == "address":
        assert action.to is not None
        return action.to
    name = record_type.name
    if action.recipient == "owner":
        owner = await owner_of(record_type, record)
        if not owner["email"]:
            raise RecipientMissing(
                f"{name} {record['id']} has no active "
                f"{record_type.owner_field} with an email address"
            )
        return str(owner["email"])
    if record_type.email_field is not None:
        address = record.get(record_type.email_field)
    else:
        contact = await contact_of(record.get(record_type.contact_field or ""))
        address = contact["email"] if contact else None
    if not address:
        raise RecipientMissing(
            f"{name} {record['id']} has no {record_type.contact_field or 'contact'} "
            "with an email address"
        )
    return str(address)


async def template_values(
    record_type: RecordType, record: dict[str, Any]
) -> TemplateValues:
    """Return the values a reply template is rendered with for this record.

    A ticket gets what an agent's reply gets, with the assignee as the
    agent. Other records get ``contact`` (their contact, or the contact or
    lead itself), ``account`` and ``agent`` (their owner), and no ``ticket``.
    """
    agent = await owner_of(record_type, record)
    if record_type.name == "ticket":
        values = await reply_context(int(record["id"]), agent["name"], agent["email"])
        found = TemplateValues(values, {"ticket": (record_type, record)})
        await add_source(found, "contact", "contact", record.get("requester"))
        await add_source(found, "account", "account", record.get("account"))
        return found
    sources: dict[str, tuple[RecordType, dict[str, Any]]] = {}
    person: dict[str, Any] = {}
    if record_type.contact_field is not None:
        person = await contact_of(record.get(record_type.contact_field)) or {}
    elif record_type.name == "lead":
        first, _, last = str(record.get("name") or "").partition(" ")
        person = {"first_name": first, "last_name": last, "email": record.get("email")}
        sources["contact"] = (record_type, record)
    elif record_type.name == "contact":
        person = record
        sources["contact"] = (record_type, record)
    first = person.get("first_name") or ""
    last = person.get("last_name") or ""
    account_id = record["id"] if record_type.name == "account" else None
    account_id = account_id or record.get("account") or person.get("account")
    found = TemplateValues(
        {
            "contact": {
                "name": " ".join(part for part in (first, last) if part),
                "first_name": first,
                "last_name": last,
                "email": person.get("email") or "",
            },
            "account": {"name": await account_name(account_id)},
            "agent": {"name": agent["name"], "email": agent["email"]},
        },
        sources,
    )
    if record_type.contact_field is not None:
        await add_source(
            found, "contact", "contact", record.get(record_type.contact_field)
        )
    if record_type.name == "account":
        found.sources["account"] = (record_type, record)
    else:
        await add_source(found, "account", "account", account_id)
    return found


async def add_source(
    found: TemplateValues, group: str, record_type: str, record_id: Any
) -> None:
    """Add the record that ``group``'s values come from, when there is one."""
    if record_id is None:
        return
    kind = RECORD_TYPES[record_type]
    record = await load_record(kind, int(record_id))
    if record is not None:
        found.sources[group] = (kind, record)


async def account_name(account_id: Any) -> str:
    if account_id is None:
        return ""
    row = await Account.select(Account.name).where(Account.id == account_id).first()
    return str(row["name"]) if row else ""


def check_template_for(record_type: RecordType, body: str) -> None:
    """Raise FieldError when a template uses values that records of this type
    do not offer (``ticket`` on anything but a ticket)."""
    if record_type.name == "ticket":
        return
    sample = {name: value for name, value in SAMPLE_CONTEXT.items() if name != "ticket"}
    render_template(body, sample)


async def template_body(
    template_id: int,
    record_type: RecordType,
    record: dict[str, Any],
    hidden_for: HiddenFor | None = None,
) -> str:
    """Render a reply template for the record; raises NotFound for a deleted
    template and FieldError for one that uses a value the record lacks.

    With ``hidden_for``, each value whose field the reader may not read
    shows ``HIDDEN``, so that a template cannot show what a placeholder in
    the action's own text would hide.
    """
    template = await get_template(template_id)
    found = await template_values(record_type, record)
    if hidden_for is not None:
        await found.hide(hidden_for)
    try:
        return render_template(template["body"], found.values)
    except FieldError as error:
        raise FieldError(
            "template_id", template_id, f"({template['name']}) {error.reason}"
        ) from None
