"""The record types rules apply to, and how a rule reads and changes each one.

A later type plugs in by adding a ``RecordType`` to ``RECORD_TYPES``: its
table, the fields a rule may read and set, how a set value is parsed and
checked, and the streams its events go to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from piccolo.table import Table

from app.accounts import service as accounts
from app.accounts.tables import Account
from app.contacts import service as contacts
from app.contacts.tables import Contact
from app.deals import service as deals
from app.deals.tables import Deal
from app.encryption.columns import decrypt_row
from app.leads import service as leads
from app.leads.tables import Lead
from app.merge import Edit
from app.tickets import service as tickets
from app.tickets.tables import Ticket

if TYPE_CHECKING:
    from app.workflows.prefilter import SqlFilter


async def no_check(record: dict[str, Any], values: dict[str, Any]) -> None:
    return None


async def check_deal(record: dict[str, Any], values: dict[str, Any]) -> None:
    await deals.check_references(record["pipeline"], values)
    await deals.check_stage_change(record, values)


async def check_ticket(record: dict[str, Any], values: dict[str, Any]) -> None:
    await tickets.check_assignee(values)


async def check_account(record: dict[str, Any], values: dict[str, Any]) -> None:
    checked = accounts.check_changed_values(
        {name: Edit(base=record.get(name), new=value) for name, value in values.items()}
    )
    await accounts.check_owner({name: edit.new for name, edit in checked.items()})
    values.update({name: edit.new for name, edit in checked.items()})


async def check_contact(record: dict[str, Any], values: dict[str, Any]) -> None:
    checked = await contacts.checked_edits(
        {name: Edit(base=record.get(name), new=value) for name, value in values.items()}
    )
    values.update({name: edit.new for name, edit in checked.items()})


async def check_lead(record: dict[str, Any], values: dict[str, Any]) -> None:
    checked = await leads.checked_edits(
        {name: Edit(base=record.get(name), new=value) for name, value in values.items()}
    )
    values.update({name: edit.new for name, edit in checked.items()})


def lead_topics(record: dict[str, Any]) -> list[str]:
    return leads.lead_topics(record["id"])


def deal_topics(record: dict[str, Any]) -> list[str]:
    return deals.deal_topics(record)


def ticket_topics(record: dict[str, Any]) -> list[str]:
    return tickets.ticket_topics(record["id"])


def account_topics(record: dict[str, Any]) -> list[str]:
    return accounts.account_topics(record["id"])


def contact_topics(record: dict[str, Any]) -> list[str]:
    topics = [f"contact:{record['id']}"]
    if record.get("account") is not None:
        topics.append(f"account:{record['account']}")
    return topics


TICKET_DERIVED = """
SELECT
    t.id,
    (SELECT count(*) FROM email_attachment a WHERE a.ticket = t.id) AS attachments,
    (SELECT c.body FROM comment c WHERE c.ticket = t.id AND NOT c.internal
     ORDER BY c.id LIMIT 1) AS first_comment
FROM unnest({}::integer[]) AS t(id)
"""


async def ticket_derived(ticket_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Return, by ticket id, the attachments received with each ticket's mail
    and the HTML of its first public comment (its first message, for a
    ticket from email), in one query."""
    rows = await Ticket.raw(TICKET_DERIVED, list(ticket_ids))
    return {
        row["id"]: {
            "attachments": int(row["attachments"]),
            "first_comment": row["first_comment"] or "",
        }
        for row in rows
    }


@dataclass(frozen=True)
class RecordType:
    """A kind of record that rules can be written for.

    ``readable`` are the fields conditions and placeholders may use;
    ``editable`` those the set and clear actions may change, parsed by
    ``parse`` from text and checked by ``check`` against the record.
    ``owner_field`` and ``team_field`` are what the assign action sets.
    ``date_fields`` are what a time-based trigger may count from.
    ``also_set`` are the columns written with a changed field, as in the
    record's service. ``stage_field`` is the stage or status column.
    """

    name: str
    label: str
    table: type[Table]
    readable: tuple[str, ...]
    editable: tuple[str, ...]
    parse: Callable[[str, str | None], Any]
    check: Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]
    topics: Callable[[dict[str, Any]], list[str]]
    owner_field: str | None = None
    team_field: str | None = None
    stage_field: str | None = None
    date_fields: tuple[str, ...] = ("created_at", "updated_at")
    also_set: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Comments, notes and tasks belong only to deals and tickets.
    has_comments: bool = False
    has_tags: bool = False
    # Where the send_email action finds the record's requester: a contact id
    # column (``contact_field``) or the record's own address (``email_field``).
    contact_field: str | None = None
    email_field: str | None = None
    # Read-only fields computed from other tables for a batch of record ids,
    # and their names, which the SQL prefilter leaves to Python.
    derived: Callable[[Sequence[int]], Awaitable[dict[int, dict[str, Any]]]] | None = (
        None
    )
    derived_fields: tuple[str, ...] = ()


RECORD_TYPES: dict[str, RecordType] = {
    kind.name: kind
    for kind in (
        RecordType(
            name="deal",
            label="Deals",
            table=Deal,
            readable=(
                "id",
                "name",
                "amount",
                "close_date",
                "engage_date",
                "owner",
                "team",
                "stage",
                "pipeline",
                "account",
                "contact",
                "product",
                "tags",
                "created_at",
                "updated_at",
            ),
            editable=deals.EDITABLE,
            parse=deals.parse_deal_field,
            check=check_deal,
            topics=deal_topics,
            owner_field="owner",
            team_field="team",
            stage_field="stage",
            date_fields=("created_at", "updated_at", "close_date", "stage_entered_at"),
            also_set={"stage": ("stage_entered_at",)},
            contact_field="contact",
            has_comments=True,
            has_tags=True,
        ),
        RecordType(
            name="ticket",
            label="Tickets",
            table=Ticket,
            readable=(
                "id",
                "subject",
                "description",
                "status",
                "priority",
                "assignee",
                "team",
                "type",
                "channel",
                "requester",
                "account",
                "tags",
                "attachments",
                "first_comment",
                "created_at",
                "updated_at",
            ),
            editable=tickets.EDITABLE,
            parse=tickets.parse_ticket_field,
            check=check_ticket,
            topics=ticket_topics,
            owner_field="assignee",
            team_field="team",
            stage_field="status",
            date_fields=("created_at", "updated_at", "status_changed_at"),
            also_set={"status": ("status_changed_at",)},
            contact_field="requester",
            has_comments=True,
            has_tags=True,
            derived=ticket_derived,
            derived_fields=("attachments", "first_comment"),
        ),
        RecordType(
            name="account",
            label="Accounts",
            table=Account,
            readable=("id", *accounts.EDITABLE, "created_at", "updated_at"),
            editable=accounts.EDITABLE,
            parse=accounts.parse_account_field,
            check=check_account,
            topics=account_topics,
            owner_field="owner",
        ),
        RecordType(
            name="contact",
            label="Contacts",
            table=Contact,
            readable=("id", *contacts.EDITABLE, "created_at", "updated_at"),
            editable=contacts.EDITABLE,
            parse=contacts.parse_contact_field,
            check=check_contact,
            topics=contact_topics,
            owner_field="owner",
            email_field="email",
        ),
        RecordType(
            name="lead",
            label="Leads",
            table=Lead,
            readable=("id", *leads.EDITABLE, "score", "created_at", "updated_at"),
            editable=leads.EDITABLE,
            parse=leads.parse_lead_field,
            check=check_lead,
            topics=lead_topics,
            owner_field="owner",
            stage_field="status",
            email_field="email",
        ),
    )
}


async def load_record(record_type: RecordType, record_id: int) -> dict[str, Any] | None:
    """Read every column of one record, decrypted, in the current transaction."""
    table = record_type.table
    row = await table.raw(
        f"SELECT * FROM {table._meta.tablename} WHERE id = {{}}", record_id
    )
    if not row:
        return None
    [record] = await complete_records(record_type, row)
    return record


def after_id_query(
    record_type: RecordType, select: str, candidates: SqlFilter | None
) -> tuple[str, tuple[Any, ...]]:
    """Build ``SELECT <select>`` over the records that ``candidates`` allows
    with ids above the first placeholder; return it and the filter's
    arguments, which follow that placeholder."""
    table = record_type.table._meta.tablename
    where = "id > {}"
    args: tuple[Any, ...] = ()
    if candidates is not None and not candidates.matches_all:
        where += f" AND ({candidates.sql})"
        args = candidates.args
    return f"SELECT {select} FROM {table} WHERE {where}", args


async def load_records_after(
    record_type: RecordType,
    after_id: int,
    limit: int,
    candidates: SqlFilter | None = None,
) -> list[dict[str, Any]]:
    """Read up to ``limit`` records with ids above ``after_id`` that
    ``candidates`` (all when None) allows, in id order, as ``load_record``
    reads one."""
    query, args = after_id_query(record_type, "*", candidates)
    rows = await record_type.table.raw(
        f"{query} ORDER BY id LIMIT {{}}", after_id, *args, limit
    )
    return await complete_records(record_type, rows)


async def record_ids_after(
    record_type: RecordType,
    after_id: int,
    limit: int,
    candidates: SqlFilter | None = None,
) -> list[int]:
    """Return up to ``limit`` ids above ``after_id`` of the records that
    ``candidates`` allows, in order."""
    query, args = after_id_query(record_type, "id", candidates)
    rows = await record_type.table.raw(
        f"{query} ORDER BY id LIMIT {{}}", after_id, *args, limit
    )
    return [row["id"] for row in rows]


async def count_records(
    record_type: RecordType, candidates: SqlFilter | None = None
) -> int:
    """Count the records of the type that ``candidates`` allows."""
    query, args = after_id_query(record_type, "count(*) AS n", candidates)
    rows = await record_type.table.raw(query, 0, *args)
    return int(rows[0]["n"])


async def complete_records(
    record_type: RecordType, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Decrypt ``rows`` and add the type's derived fields to each."""
    records = []
    for row in rows:
        record = dict(row)
        decrypt_row(record_type.table, record)
        record["tags"] = list(record.get("tags") or [])
        records.append(record)
    if record_type.derived is not None and records:
        derived = await record_type.derived([record["id"] for record in records])
        for record in records:
            record.update(derived[record["id"]])
    return records
