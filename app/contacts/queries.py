"""Reading the contact list and contact pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.access.permissions import SYSTEM, Access
from app.access.scopes import (
    owner_teams_sql,
    redact,
    redact_rows,
    require_record,
    scope_sql,
)
from app.accounts.queries import related_deals, related_tickets
from app.contacts.tables import Contact
from app.encryption.columns import decrypt_row
from app.errors import NotFound
from app.pagination import Page, PageRequest
from app.search.matching import contains_any, searchable

FULL_NAME = "(c.first_name || ' ' || c.last_name)"
CONTACT_ORDER = "lower(c.last_name), lower(c.first_name), c.id"

# The counts are of the records the viewer may read: contact_sql puts the
# scope conditions in place of {deals} and {tickets}.
CONTACT_SQL = f"""
    SELECT c.id, c.first_name, c.last_name,
        nullif(trim(c.first_name || ' ' || c.last_name), '') AS name,
        c.email, c.phone, c.title, c.lifecycle_stage, c.personal_notes,
        c.account, a.name AS account_name, c.owner, u.name AS owner_name,
        c.updated_at, c.version,
        {owner_teams_sql("c")} AS owner_teams,
        (SELECT count(*) FROM deal d WHERE d.contact = c.id AND {{deals}})
            AS deal_count,
        (SELECT count(*) FROM ticket t WHERE t.requester = c.id AND {{tickets}})
            AS ticket_count
    FROM contact c
    LEFT JOIN account a ON a.id = c.account
    LEFT JOIN app_user u ON u.id = c.owner
    WHERE c.id = {{}}
"""


@dataclass
class ContactPage:
    """A contact and one page of each list its page shows."""

    contact: dict[str, Any]
    deals: Page[dict[str, Any]]
    tickets: Page[dict[str, Any]]


def search_condition(search: str, args: list[object], access: Access = SYSTEM) -> str:
    """Return the WHERE condition for a search of name or email, adding its args.

    The name searched is "first last", so a search for a full name matches.
    Fields hidden from ``access`` are not searched. Phone numbers are
    encrypted, so no search matches them.
    """
    if not search:
        return "TRUE"
    names = searchable(
        access,
        "contact",
        Contact,
        {"first_name": "c.first_name", "last_name": "c.last_name"},
    )
    if len(names) == 2:
        names = [FULL_NAME]
    email = searchable(access, "contact", Contact, {"email": "c.email"})
    return contains_any([*names, *email], search, args)


async def search_contacts(
    search: str, paging: PageRequest, access: Access = SYSTEM
) -> Page[dict[str, Any]]:
    """List the contacts ``access`` may read whose name or email contains
    ``search``, by last name.

    An empty ``search`` lists every such contact.
    """
    args: list[object] = []
    where = search_condition(search, args, access)
    where += " AND " + scope_sql(access, "contact", "c", args)
    counted = await Contact.raw(
        f"SELECT count(*) AS n FROM contact c WHERE {where}", *args
    )
    total = counted[0]["n"]
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)

    rows = await Contact.raw(
        f"""
        SELECT c.id, nullif(trim({FULL_NAME}), '') AS name, c.email, c.title,
            c.account, a.name AS account_name
        FROM contact c
        LEFT JOIN account a ON a.id = c.account
        WHERE {where}
        ORDER BY {CONTACT_ORDER}
        LIMIT {{}} OFFSET {{}}
        """,
        *args,
        paging.size,
        paging.offset,
    )
    return Page(rows=redact_rows(access, "contact", rows), total=total, paging=paging)


def contact_sql(access: Access, args: list[object]) -> str:
    sql = CONTACT_SQL.replace("{deals}", scope_sql(access, "deal", "d", args))
    return sql.replace("{tickets}", scope_sql(access, "ticket", "t", args))


async def get_contact(contact_id: int, access: Access = SYSTEM) -> dict[str, Any]:
    """Load a contact with their account's name and the sizes of their lists.

    The sizes count the records ``access`` may read. The contact itself is
    loaded whatever the scope, with its owner's teams in ``owner_teams``.
    """
    args: list[object] = []
    sql = contact_sql(access, args)
    rows = await Contact.raw(sql, *args, contact_id)
    if not rows:
        raise NotFound("contact", contact_id)
    return decrypt_row(Contact, rows[0])


async def load_contact_page(
    contact_id: int,
    deals: PageRequest,
    tickets: PageRequest,
    access: Access = SYSTEM,
) -> ContactPage:
    """Load a contact, a page of their deals and a page of tickets they requested.

    Raises NotFound for an unknown id. Runs one query for the contact and
    the list sizes, then one per list that has rows on the requested page.
    """
    contact = await get_contact(contact_id, access)
    require_record(access, "contact", "read", contact)
    contact = redact(access, "contact", contact) or contact
    return ContactPage(
        contact=contact,
        deals=await related_deals(
            "contact", contact_id, contact["deal_count"], deals, access
        ),
        tickets=await related_tickets(
            "requester", contact_id, contact["ticket_count"], tickets, access
        ),
    )
