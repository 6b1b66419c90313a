"""Import CSV files with HubSpot's default property labels as column names.

Companies, contacts, deals, tickets and activities are recognised by their
headers and linked by company domain and contact email. Owners, given by
email, become users without a password.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.accounts.tables import Account
from app.auth.tables import User
from app.comments.tables import Comment
from app.contacts.tables import Contact
from app.deals.service import rejected_stage_entries
from app.deals.tables import Deal, Pipeline, Stage
from app.imports.csvfiles import CsvReader
from app.imports.fields import EMAIL_PATTERN, RowValues, key_limit, limit, midnight
from app.imports.runner import (
    Batch,
    ImportRun,
    SourceFiles,
    Step,
    csv_step,
    describe_formats,
    recognise_csv,
)
from app.imports.writer import (
    STAGE_ENTERED_ON_CHANGE,
    STATUS_CHANGED_ON_CHANGE,
    PipelineStages,
    StageSpec,
    accounts_by_domain,
    contacts_by_email,
    ensure_pipeline,
    ensure_users,
    most_recent_deals,
    upsert,
)
from app.tickets.tables import Ticket

SOURCE = "hubspot"
PREFIX = f"{SOURCE}:"
SUFFIXES = (".csv",)
FORMATS = {
    "companies": ("Company ID", "Company Name", "Company Domain Name"),
    "contacts": ("Contact ID", "First Name", "Last Name", "Email"),
    "deals": ("Deal ID", "Deal Name", "Deal Stage", "Pipeline"),
    "tickets": ("Ticket ID", "Ticket Name", "Ticket Status"),
    "activities": ("Activity ID", "Activity Type", "Associated Contact Email"),
}
OWNER_COLUMNS = {
    "companies": "Company Owner",
    "contacts": "Contact Owner",
    "deals": "Deal Owner",
    "tickets": "Ticket Owner",
    "activities": "Activity Owner",
}
# HubSpot's default deal pipeline, with its default win probabilities.
STAGES = (
    StageSpec("Appointment Scheduled", "open", 20),
    StageSpec("Qualified to Buy", "open", 40),
    StageSpec("Presentation Scheduled", "open", 60),
    StageSpec("Decision Maker Bought-In", "open", 80),
    StageSpec("Contract Sent", "open", 90),
    StageSpec("Closed Won", "won", 100),
    StageSpec("Closed Lost", "lost", 0),
)
TICKET_STATUSES = {
    "New": "new",
    "Waiting on contact": "pending",
    "Waiting on us": "open",
    "Closed": "closed",
}
TICKET_PRIORITIES = {
    "Low": "low",
    "Medium": "medium",
    "High": "high",
    "Urgent": "urgent",
}
TICKET_CHANNELS = {
    "Email": "email",
    "Phone": "phone",
    "Chat": "chat",
    "Social Media": "social",
    "Form": "web",
}
KEY_LENGTH = key_limit(PREFIX)


def recognise(paths: list[Path]) -> SourceFiles:
    return recognise_csv(paths, FORMATS)


def describe() -> str:
    return describe_formats(FORMATS)


async def import_files(files: SourceFiles, run: ImportRun) -> None:
    owners = await import_owners(files, run)

    for path in files.paths("companies"):
        await run.run(step(path, "companies", prepare_company, write_companies(owners)))
    for path in files.paths("contacts"):
        await run.run(step(path, "contacts", prepare_contact, write_contacts(owners)))

    deal_paths = files.paths("deals")
    if deal_paths:
        pipelines = await ensure_pipelines(deal_paths, run)
        for path in deal_paths:
            await run.run(
                step(path, "deals", prepare_deal, write_deals(owners, pipelines))
            )

    for path in files.paths("tickets"):
        await run.run(step(path, "tickets", prepare_ticket, write_tickets(owners)))
    for path in files.paths("activities"):
        await run.run(
            step(path, "activities", prepare_activity, write_activities(owners))
        )


def step(
    path: Path,
    kind: str,
    prepare: Callable[[RowValues], dict[str, Any]],
    write: Callable[[Batch], Any],
) -> Step:
    return csv_step(
        path,
        prepare,
        write,
        # The first required column of each format is its record id.
        key_column=FORMATS[kind][0],
    )


async def import_owners(files: SourceFiles, run: ImportRun) -> dict[str, int]:
    """Create a user for every owner email and return their ids by email.

    Deal owners become sales reps and ticket owners support agents. Owners
    found only on companies, contacts or activities become sales reps.
    """
    roles: dict[str, tuple[str, str]] = {}
    for kind, role in (
        ("deals", "sales_rep"),
        ("tickets", "support_agent"),
        ("companies", "sales_rep"),
        ("contacts", "sales_rep"),
        ("activities", "sales_rep"),
    ):
        column = OWNER_COLUMNS[kind]
        for path in files.paths(kind):
            for _, values in CsvReader(path):
                email = values.get(column, "").strip().lower()
                if EMAIL_PATTERN.fullmatch(email) and len(email) <= limit(User.email):
                    roles.setdefault(email, (name_from_email(email), role))

    rows: list[dict[str, Any]] = []

    async def write() -> None:
        rows.extend(await ensure_users(roles))

    if roles:
        await run.write_once(write)
    run.report.count(User._meta.tablename, created=sum(r["inserted"] for r in rows))
    return {row["email"]: row["id"] for row in rows}


async def ensure_pipelines(
    paths: list[Path], run: ImportRun
) -> dict[str, PipelineStages]:
    names: set[str] = set()
    for path in paths:
        for _, values in CsvReader(path):
            name = values.get("Pipeline", "").strip()
            if name and len(name) <= limit(Pipeline.name):
                names.add(name)

    pipelines: dict[str, PipelineStages] = {}

    async def write() -> None:
        for name in sorted(names):
            pipelines[name] = await ensure_pipeline(name, STAGES)

    await run.write_once(write)
    for stages in pipelines.values():
        run.report.count(Pipeline._meta.tablename, created=int(stages.pipeline_created))
        run.report.count(Stage._meta.tablename, created=stages.stages_created)
    return pipelines


def prepare_company(fields: RowValues) -> dict[str, Any]:
    return {
        "external_key": record_key(fields, "Company ID"),
        "name": fields.text(
            "Company Name", required=True, max_length=limit(Account.name)
        ),
        "domain": domain(fields, "Company Domain Name"),
        "industry": fields.text("Industry", max_length=limit(Account.industry)),
        "employees": fields.integer("Number of Employees"),
        "annual_revenue": fields.amount("Annual Revenue"),
        "phone": fields.text("Phone Number", max_length=limit(Account.phone)),
        "website": fields.text("Website", max_length=limit(Account.website)),
        "city": fields.text("City", max_length=limit(Account.city)),
        "country": fields.text("Country", max_length=limit(Account.country)),
        "owner": fields.email("Company Owner"),
        "created_at": fields.timestamp("Create Date"),
    }


def write_companies(owners: dict[str, int]) -> Callable[[Batch], Any]:
    async def write(batch: Batch) -> None:
        rows = [
            {**record, "owner": owners.get(record["owner"] or "")}
            for _, record in batch.accepted()
        ]
        batch.count(Account, await upsert(Account, rows, insert_only=("created_at",)))

    return write


def prepare_contact(fields: RowValues) -> dict[str, Any]:
    phone = fields.raw("Phone Number") or fields.raw("Mobile Phone Number")
    if len(phone) > limit(Contact.phone):
        fields.fail(
            "Phone Number", f"longer than {limit(Contact.phone)} characters", phone
        )
    return {
        "external_key": record_key(fields, "Contact ID"),
        "first_name": fields.text("First Name", max_length=limit(Contact.first_name)),
        "last_name": fields.text("Last Name", max_length=limit(Contact.last_name)),
        "email": fields.email("Email"),
        "phone": phone,
        "title": fields.text("Job Title", max_length=limit(Contact.title)),
        "lifecycle_stage": fields.text(
            "Lifecycle Stage", max_length=limit(Contact.lifecycle_stage)
        ),
        "account": domain(fields, "Associated Company Domain"),
        "owner": fields.email("Contact Owner"),
        "created_at": fields.timestamp("Create Date"),
    }


def write_contacts(owners: dict[str, int]) -> Callable[[Batch], Any]:
    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        accounts = await accounts_by_domain(
            {r["account"] for _, r in accepted if r["account"]}, prefer=PREFIX
        )
        rows = []
        for line, record in accepted:
            rows.append(
                {
                    **record,
                    "account": link(
                        batch,
                        line,
                        "Associated Company Domain",
                        record["account"],
                        accounts,
                    ),
                    "owner": owners.get(record["owner"] or ""),
                }
            )
        batch.count(Contact, await upsert(Contact, rows, insert_only=("created_at",)))

    return write


def prepare_deal(fields: RowValues) -> dict[str, Any]:
    return {
        "external_key": record_key(fields, "Deal ID"),
        "name": fields.text("Deal Name", required=True, max_length=limit(Deal.name)),
        "pipeline": fields.text(
            "Pipeline", required=True, max_length=limit(Pipeline.name)
        ),
        "stage": fields.text("Deal Stage", required=True),
        "amount": fields.amount("Amount"),
        "close_date": fields.date("Close Date"),
        "created_at": fields.timestamp("Create Date"),
        "account": domain(fields, "Associated Company Domain"),
        "contact": fields.email("Associated Contact Email"),
        "owner": fields.email("Deal Owner"),
    }


def write_deals(
    owners: dict[str, int], pipelines: dict[str, PipelineStages]
) -> Callable[[Batch], Any]:
    kinds = {stage.name: stage.kind for stage in STAGES}

    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        accounts = await accounts_by_domain(
            {r["account"] for _, r in accepted if r["account"]}, prefer=PREFIX
        )
        contacts = await contacts_by_email(
            {r["contact"] for _, r in accepted if r["contact"]}, prefer=PREFIX
        )

        rows = []
        lines = []
        for line, record in accepted:
            stages = pipelines[record["pipeline"]]
            stage_id = stages.stage_ids.get(record["stage"])
            if stage_id is None:
                batch.reject(
                    line,
                    "Deal Stage",
                    record["stage"],
                    f"unknown stage, expected one of {', '.join(stages.stage_ids)}",
                )
                continue

            entered = record["created_at"]
            if kinds.get(record["stage"]) in ("won", "lost") and record["close_date"]:
                entered = midnight(record["close_date"])
            rows.append(
                {
                    **record,
                    "pipeline": stages.pipeline_id,
                    "stage": stage_id,
                    "account": link(
                        batch,
                        line,
                        "Associated Company Domain",
                        record["account"],
                        accounts,
                    ),
                    "contact": link(
                        batch,
                        line,
                        "Associated Contact Email",
                        record["contact"],
                        contacts,
                    ),
                    "owner": owners.get(record["owner"] or ""),
                    "stage_entered_at": entered,
                }
            )
            lines.append(line)
            batch.pipeline_ids.add(stages.pipeline_id)

        rejected = await rejected_stage_entries(rows)
        for index, error in rejected.items():
            batch.reject(lines[index], "Deal Stage", error.stage_name, error.reason)
        rows = [row for index, row in enumerate(rows) if index not in rejected]

        written = await upsert(
            Deal,
            rows,
            insert_only=("created_at",),
            update={"stage_entered_at": STAGE_ENTERED_ON_CHANGE},
        )
        batch.count(Deal, written)

    return write


def prepare_ticket(fields: RowValues) -> dict[str, Any]:
    status = fields.choice("Ticket Status", TICKET_STATUSES)
    created_at = fields.timestamp("Create Date")
    last_activity = fields.timestamp("Last Activity Date")
    closed_at = fields.timestamp("Close Date")
    changed_at = last_activity or created_at
    if status == "closed" and closed_at is not None:
        changed_at = closed_at
    return {
        "external_key": record_key(fields, "Ticket ID"),
        "subject": fields.text(
            "Ticket Name", required=True, max_length=limit(Ticket.subject)
        ),
        "description": fields.raw("Ticket Description"),
        "status": status,
        "priority": fields.choice(
            "Ticket Priority", TICKET_PRIORITIES, default="medium"
        ),
        "channel": fields.choice("Ticket Source", TICKET_CHANNELS, default="web"),
        "created_at": created_at,
        "status_changed_at": changed_at,
        "account": domain(fields, "Associated Company Domain"),
        "requester": fields.email("Associated Contact Email"),
        "assignee": fields.email("Ticket Owner"),
    }


def write_tickets(owners: dict[str, int]) -> Callable[[Batch], Any]:
    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        accounts = await accounts_by_domain(
            {r["account"] for _, r in accepted if r["account"]}, prefer=PREFIX
        )
        contacts = await contacts_by_email(
            {r["requester"] for _, r in accepted if r["requester"]}, prefer=PREFIX
        )
        rows = [
            {
                **record,
                "account": link(
                    batch,
                    line,
                    "Associated Company Domain",
                    record["account"],
                    accounts,
                ),
                "requester": link(
                    batch,
                    line,
                    "Associated Contact Email",
                    record["requester"],
                    contacts,
                ),
                "assignee": owners.get(record["assignee"] or ""),
            }
            for line, record in accepted
        ]
        written = await upsert(
            Ticket,
            rows,
            insert_only=("created_at",),
            update={"status_changed_at": STATUS_CHANGED_ON_CHANGE},
        )
        batch.count(Ticket, written)
        batch.tickets_changed = bool(written)

    return write


def prepare_activity(fields: RowValues) -> dict[str, Any]:
    kind = fields.text("Activity Type", required=True)
    title = fields.raw("Call/Meeting Title/Subject")
    details = []
    for column, label in (
        ("Call Outcome", "Outcome"),
        ("Meeting Outcome", "Outcome"),
        ("Task Status", "Task status"),
    ):
        if fields.raw(column):
            details.append(f"{label}: {fields.raw(column)}")
    due = fields.date("Task Due Date")
    if due:
        details.append(f"Due: {due.isoformat()}")

    heading = f"{kind}: {title}" if title else kind
    parts = [heading, "\n".join(details), fields.raw("Notes/Description")]
    return {
        "external_key": record_key(fields, "Activity ID"),
        "body": "\n\n".join(part for part in parts if part),
        "created_at": fields.timestamp("Activity Date"),
        "contact": fields.email("Associated Contact Email", required=True),
        "author": fields.email("Activity Owner"),
    }


def write_activities(owners: dict[str, int]) -> Callable[[Batch], Any]:
    """Store each activity as a comment on its contact's most recent deal.

    An activity names only a contact, but a comment must belong to a deal or
    a ticket. So an activity whose contact is unknown or has no deal is not
    imported, and the report gives the reason.
    """

    async def write(batch: Batch) -> None:
        accepted = batch.accepted()
        contacts = await contacts_by_email(
            {record["contact"] for _, record in accepted}, prefer=PREFIX
        )
        deals = await most_recent_deals(set(contacts.values()))

        rows = []
        for line, record in accepted:
            contact_id = contacts.get(record["contact"])
            if contact_id is None:
                batch.reject(
                    line,
                    "Associated Contact Email",
                    record["contact"],
                    "unknown contact, no contact has this email",
                )
                continue
            deal_id = deals.get(contact_id)
            if deal_id is None:
                batch.reject(
                    line,
                    "Associated Contact Email",
                    record["contact"],
                    "the contact has no deal to attach the activity to",
                )
                continue
            rows.append(
                {
                    "external_key": record["external_key"],
                    "deal": deal_id,
                    "author": owners.get(record["author"] or ""),
                    "body": record["body"],
                    "created_at": record["created_at"],
                }
            )
        batch.count(Comment, await upsert(Comment, rows, insert_only=("created_at",)))

    return write


def record_key(fields: RowValues, column: str) -> str:
    return PREFIX + fields.text(column, required=True, max_length=KEY_LENGTH)


def domain(fields: RowValues, column: str) -> str | None:
    return fields.text(column, max_length=limit(Account.domain)).lower() or None


def link(
    batch: Batch, line: int, column: str, value: str | None, ids: dict[str, int]
) -> int | None:
    """Return the id that ``value`` refers to, warning when there is none."""
    if value is None:
        return None
    found = ids.get(value)
    if found is None:
        batch.warn(
            line, column, value, "no record has this value, so the link is left empty"
        )
    return found


def name_from_email(email: str) -> str:
    """Turn ``pam.beesly@example.com`` into ``Pam Beesly``."""
    local = email.split("@", 1)[0]
    return " ".join(part.capitalize() for part in re.split(r"[._-]+", local) if part)
