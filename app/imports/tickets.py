"""Import the "Customer Support Ticket Dataset" CSV layout into tickets.

Each requester becomes a contact found by email, or created with the key
``tickets-contact:<email>`` when no contact has that address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.contacts.tables import Contact
from app.imports.fields import RowValues, key_limit, limit
from app.imports.runner import (
    Batch,
    ImportRun,
    SourceFiles,
    csv_step,
    describe_formats,
    recognise_csv,
)
from app.imports.writer import (
    STATUS_CHANGED_ON_CHANGE,
    contacts_by_email,
    upsert,
)
from app.tickets.tables import Ticket

SOURCE = "tickets"
CONTACT_SOURCE = "tickets-contact"
SUFFIXES = (".csv",)
FORMATS = {
    "tickets": (
        "Ticket ID",
        "Customer Name",
        "Customer Email",
        "Ticket Type",
        "Ticket Subject",
        "Ticket Description",
        "Ticket Status",
        "Ticket Priority",
        "Ticket Channel",
    ),
}
STATUSES = {
    "Pending Customer Response": "pending",
    "Open": "open",
    "Closed": "closed",
}
PRIORITIES = {"Low": "low", "Medium": "medium", "High": "high", "Critical": "urgent"}
CHANNELS = {
    "Email": "email",
    "Phone": "phone",
    "Social media": "social",
    "Chat": "chat",
}
# The descriptions were generated from a template and still contain this
# placeholder. The row's own "Product Purchased" value fills it in.
PRODUCT_PLACEHOLDER = "{product_purchased}"
KEY_LENGTH = key_limit(f"{SOURCE}:")
CONTACT_KEY_LENGTH = key_limit(f"{CONTACT_SOURCE}:")


def recognise(paths: list[Path]) -> SourceFiles:
    return recognise_csv(paths, FORMATS)


def describe() -> str:
    return describe_formats(FORMATS)


async def import_files(files: SourceFiles, run: ImportRun) -> None:
    for path in files.paths("tickets"):
        await import_tickets(path, run)


async def import_tickets(path: Path, run: ImportRun) -> None:
    def prepare(fields: RowValues) -> dict[str, Any]:
        ticket_id = fields.text("Ticket ID", required=True, max_length=KEY_LENGTH)
        product = fields.raw("Product Purchased")
        description = fields.raw("Ticket Description")
        if product:
            description = description.replace(PRODUCT_PLACEHOLDER, product)

        first_name, _, last_name = fields.raw("Customer Name").partition(" ")
        if len(first_name) > limit(Contact.first_name):
            fields.fail(
                "Customer Name",
                f"first name longer than {limit(Contact.first_name)} characters",
                fields.raw("Customer Name"),
            )
        if len(last_name.strip()) > limit(Contact.last_name):
            fields.fail(
                "Customer Name",
                f"last name longer than {limit(Contact.last_name)} characters",
                fields.raw("Customer Name"),
            )

        email = fields.email("Customer Email")
        if email and len(email) > CONTACT_KEY_LENGTH:
            fields.fail(
                "Customer Email", f"longer than {CONTACT_KEY_LENGTH} characters", email
            )

        return {
            "external_key": f"{SOURCE}:{ticket_id}",
            "subject": fields.text(
                "Ticket Subject", required=True, max_length=limit(Ticket.subject)
            ),
            "description": description,
            "type": fields.text("Ticket Type", max_length=limit(Ticket.type)),
            "status": fields.choice("Ticket Status", STATUSES),
            "priority": fields.choice("Ticket Priority", PRIORITIES, default="medium"),
            "channel": fields.choice("Ticket Channel", CHANNELS, default="web"),
            "email": email,
            "first_name": first_name,
            "last_name": last_name.strip(),
        }

    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        emails = {record["email"] for _, record in accepted if record["email"]}
        contact_ids = await contacts_by_email(emails, prefer=f"{CONTACT_SOURCE}:")

        new_contacts: dict[str, dict[str, Any]] = {}
        for _, record in accepted:
            email = record["email"]
            if email and email not in contact_ids and email not in new_contacts:
                new_contacts[email] = {
                    "external_key": f"{CONTACT_SOURCE}:{email}",
                    "first_name": record["first_name"],
                    "last_name": record["last_name"],
                    "email": email,
                }
        written = await upsert(
            Contact, list(new_contacts.values()), returning=("email",)
        )
        batch.count(Contact, written)
        contact_ids.update({row["email"]: row["id"] for row in written})

        rows = []
        for _, record in accepted:
            rows.append(
                {
                    "external_key": record["external_key"],
                    "subject": record["subject"],
                    "description": record["description"],
                    "type": record["type"],
                    "status": record["status"],
                    "priority": record["priority"],
                    "channel": record["channel"],
                    "requester": contact_ids.get(record["email"] or ""),
                    "status_changed_at": None,
                }
            )
        written = await upsert(
            Ticket, rows, update={"status_changed_at": STATUS_CHANGED_ON_CHANGE}
        )
        batch.count(Ticket, written)
        batch.tickets_changed = bool(written)

    await run.run(
        csv_step(
            path,
            prepare,
            write,
            key_column="Ticket ID",
        )
    )
