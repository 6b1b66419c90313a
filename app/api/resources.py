"""The record types the API serves: their columns, filters, sorts and services.

Reads select the API's columns directly, with the viewer's scope in the
WHERE clause. Writes go through each area's service, so they validate,
record events and audit rows, and reach live pages exactly like page edits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from piccolo.table import Table

from app.access.permissions import OBJECT_TYPES, Access
from app.access.scopes import owner_teams_sql, permits_record
from app.accounts import service as accounts
from app.accounts.tables import Account
from app.auth.tables import User
from app.contacts import service as contacts
from app.contacts.tables import Contact
from app.deals import service as deals
from app.deals.tables import Deal
from app.encryption.columns import decrypt_row
from app.leads import service as leads
from app.leads.tables import Lead
from app.merge import MergeResult
from app.tickets import service as tickets
from app.tickets.tables import Ticket

# Columns every record carries.
COMMON = ("id", "version", "created_at", "updated_at")


@dataclass(frozen=True)
class Resource:
    """One record type of the API.

    ``fields`` are the columns a response shows (hidden ones are left out),
    ``editable`` those a create or an update may set, and ``create_only``
    those only a create sets. ``sorts`` maps each sortable column to its SQL
    type, for cursors. ``status_field`` is the column the ``stage`` or
    ``status`` filter applies to.
    """

    object_type: str
    plural: str
    table: type[Table]
    alias: str
    fields: tuple[str, ...]
    editable: tuple[str, ...]
    parse: Callable[[str, str | None], Any]
    update: Callable[..., Awaitable[MergeResult]]
    create: Callable[[dict[str, str], int | None], Awaitable[int]]
    sorts: dict[str, str]
    status_field: str | None = None
    # Checks the parsed values a create or an update sets against the
    # user's access, given the record's id (None on create).
    check_values: (
        Callable[[Access, dict[str, Any], int | None], Awaitable[None]] | None
    ) = None
    create_only: tuple[str, ...] = ()
    # The OpenAPI descriptions of the create and delete routes.
    create_help: str = ""
    delete_help: str = ""

    @property
    def owner_field(self) -> str:
        owner = OBJECT_TYPES[self.object_type].owner_field
        assert owner is not None
        return owner

    @property
    def team_field(self) -> str | None:
        return OBJECT_TYPES[self.object_type].team_field

    def select_sql(self) -> str:
        """Return the SELECT ... FROM of this type, with what scope checks need."""
        columns = [f"{self.alias}.{name}" for name in (*COMMON, *self.fields)]
        if self.team_field is None:
            columns.append(
                f"{owner_teams_sql(self.alias, self.owner_field)} AS owner_teams"
            )
        table = self.table._meta.tablename
        return f"SELECT {', '.join(columns)} FROM {table} {self.alias}"

    def decode(self, row: dict[str, Any]) -> dict[str, Any]:
        return decrypt_row(self.table, row)

    def present(self, access: Access, row: dict[str, Any]) -> dict[str, Any]:
        """Return a row as the API shows it, without the fields ``access`` hides."""
        hidden = access.hidden_fields(self.object_type)
        return {
            name: row[name] for name in (*COMMON, *self.fields) if name not in hidden
        }

    def permits(self, access: Access, action: str, row: dict[str, Any]) -> bool:
        return permits_record(access, self.object_type, action, row)


TIMESTAMPS = {"id": "integer", "created_at": "timestamptz", "updated_at": "timestamptz"}

DEALS = Resource(
    object_type="deal",
    plural="deals",
    table=Deal,
    alias="d",
    fields=(
        "name",
        "amount",
        "close_date",
        "pipeline",
        "stage",
        "owner",
        "team",
        "account",
        "contact",
        "product",
        "engage_date",
        "forecast_category",
    ),
    editable=deals.EDITABLE,
    check_values=deals.check_readable_references,
    create_only=("pipeline",),
    parse=deals.parse_deal_field,
    update=deals.update_deal,
    create=deals.create_deal,
    sorts={**TIMESTAMPS, "name": "text", "close_date": "date"},
    status_field="stage",
    create_help="``pipeline``, ``stage`` and ``name`` are required.",
    delete_help="Its comments are deleted with it.",
)

TICKETS = Resource(
    object_type="ticket",
    plural="tickets",
    table=Ticket,
    alias="t",
    fields=(
        "subject",
        "description",
        "status",
        "priority",
        "channel",
        "type",
        "assignee",
        "team",
        "requester",
        "account",
    ),
    editable=tickets.EDITABLE,
    parse=tickets.parse_ticket_field,
    update=tickets.update_ticket,
    create=tickets.create_ticket,
    sorts={**TIMESTAMPS, "subject": "text"},
    status_field="status",
    create_help="``subject`` is required.",
    delete_help="Its comments are deleted with it.",
)

ACCOUNTS = Resource(
    object_type="account",
    plural="accounts",
    table=Account,
    alias="a",
    fields=(
        "name",
        "domain",
        "industry",
        "employees",
        "annual_revenue",
        "phone",
        "website",
        "city",
        "country",
        "tier",
        "parent",
        "owner",
    ),
    editable=accounts.EDITABLE,
    parse=accounts.parse_account_field,
    update=accounts.update_account,
    create=accounts.create_account,
    sorts={**TIMESTAMPS, "name": "text"},
    create_help="``name`` is required.",
    delete_help=(
        "An account that contacts, deals, tickets or child accounts refer to "
        "is not deleted (409, with their counts in ``dependents``)."
    ),
)

CONTACTS = Resource(
    object_type="contact",
    plural="contacts",
    table=Contact,
    alias="c",
    fields=(
        "first_name",
        "last_name",
        "email",
        "phone",
        "title",
        "lifecycle_stage",
        "account",
        "owner",
        "personal_notes",
    ),
    editable=contacts.EDITABLE,
    parse=contacts.parse_contact_field,
    update=contacts.update_contact,
    create=contacts.create_contact,
    sorts={**TIMESTAMPS, "last_name": "text", "first_name": "text"},
    status_field="lifecycle_stage",
    create_help="A first or a last name is required.",
    delete_help=(
        "A contact that deals or tickets refer to is not deleted (409, with "
        "their counts in ``dependents``)."
    ),
)

LEADS = Resource(
    object_type="lead",
    plural="leads",
    table=Lead,
    alias="l",
    fields=(
        "name",
        "email",
        "company",
        "source",
        "status",
        "owner",
        "score",
        "converted_contact",
        "converted_account",
        "converted_deal",
    ),
    editable=leads.EDITABLE,
    parse=leads.parse_lead_field,
    update=leads.update_lead,
    create=leads.create_lead,
    sorts={**TIMESTAMPS, "name": "text"},
    status_field="status",
    create_help="A name or an email is required; the lead is scored after it is saved.",
    delete_help="Its activities are deleted with it; what it was converted into stays.",
)

RESOURCES = {
    resource.object_type: resource
    for resource in (DEALS, TICKETS, ACCOUNTS, CONTACTS, LEADS)
}


async def teams_of(user_id: int) -> list[int]:
    """Return the primary team and the member teams of a user."""
    rows = await User.raw(
        'SELECT m.team FROM team_member m WHERE m."user" = {} '
        "UNION SELECT u.team FROM app_user u WHERE u.id = {} AND u.team IS NOT NULL",
        user_id,
        user_id,
    )
    return [row["team"] for row in rows]
