"""Reading the account list, account pages and the deals and tickets of a record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from app.access.permissions import SYSTEM, Access
from app.access.scopes import (
    owner_teams_sql,
    redact,
    redact_rows,
    require_record,
    scope_sql,
)
from app.accounts.tables import Account
from app.deals.tables import Deal
from app.errors import NotFound
from app.pagination import Page, PageRequest
from app.search.matching import any_of, contains_any, phone_digits, searchable
from app.tickets.tables import Ticket

# Ticket statuses that count as done. Every other status is open.
CLOSED_TICKET_STATUSES = ("solved", "closed")
CLOSED_TICKET_SQL = ", ".join(f"'{status}'" for status in CLOSED_TICKET_STATUSES)

# Case-insensitive, because the database collation may sort capitals first.
ACCOUNT_ORDER = "lower(a.name), a.name, a.id"
# An account's phone number without its spaces, dashes and brackets, as the
# trigram index account_phone_digits_trgm_idx stores it.
PHONE_DIGITS_SQL = "regexp_replace(a.phone, '[^0-9]+', '', 'g')"

# The counts are of the records the viewer may read: account_sql puts the
# scope conditions in place of {subsidiaries}, {contacts}, {deals} and {tickets}.
ACCOUNT_SQL = f"""
    SELECT a.id, a.name, a.domain, a.industry, a.employees, a.annual_revenue,
        a.year_established, a.phone, a.website, a.city, a.country, a.tier,
        a.parent, p.name AS parent_name, a.owner, u.name AS owner_name,
        a.updated_at, a.version, {owner_teams_sql("a")} AS owner_teams,
        (SELECT count(*) FROM account s WHERE s.parent = a.id AND {{subsidiaries}})
            AS subsidiary_count,
        (SELECT count(*) FROM contact c WHERE c.account = a.id AND {{contacts}})
            AS contact_count,
        (SELECT count(*) FROM deal d WHERE d.account = a.id AND {{deals}})
            AS deal_count,
        (SELECT count(*) FROM ticket t WHERE t.account = a.id AND {{tickets}})
            AS ticket_count
    FROM account a
    LEFT JOIN account p ON p.id = a.parent
    LEFT JOIN app_user u ON u.id = a.owner
    WHERE a.id = {{}}
"""

SUBSIDIARIES_SQL = f"""
    SELECT a.id, a.name, a.industry, a.city, a.country
    FROM account a
    WHERE a.parent = {{}} AND {{scope}}
    ORDER BY {ACCOUNT_ORDER}
    LIMIT {{}} OFFSET {{}}
"""

CONTACT_ROW_COLUMNS = """
    c.id, nullif(trim(c.first_name || ' ' || c.last_name), '') AS name,
    c.email, c.title
"""

CONTACTS_SQL = f"""
    SELECT {CONTACT_ROW_COLUMNS}
    FROM contact c
    WHERE c.account = {{}} AND {{scope}}
    ORDER BY lower(c.last_name), lower(c.first_name), c.id
    LIMIT {{}} OFFSET {{}}
"""

# A contact as an account page lists it, with the account it is at now and
# the number of contacts of the account whose page the row is pushed to.
CONTACT_ROW_SQL = f"""
    SELECT {CONTACT_ROW_COLUMNS}, c.account, c.owner,
        {owner_teams_sql("c")} AS owner_teams,
        (SELECT count(*) FROM contact o WHERE o.account = {{}}) AS contact_count
    FROM contact c
    WHERE c.id = {{}}
"""

DEALS_SQL = """
    SELECT d.id, d.name, d.amount, d.close_date, d.pipeline,
        s.name AS stage_name, s.kind AS stage_kind, u.name AS owner_name
    FROM deal d
    JOIN stage s ON s.id = d.stage
    LEFT JOIN app_user u ON u.id = d.owner
    WHERE {link} = {{}} AND {scope}
    ORDER BY d.created_at DESC, d.id DESC
    LIMIT {{}} OFFSET {{}}
"""

TICKETS_SQL = """
    SELECT t.id, t.subject, t.status, t.priority, u.name AS assignee_name
    FROM ticket t
    LEFT JOIN app_user u ON u.id = t.assignee
    WHERE {link} = {{}} AND {scope}
    ORDER BY t.created_at DESC, t.id DESC
    LIMIT {{}} OFFSET {{}}
"""

DEAL_LINKS = {"account": "d.account", "contact": "d.contact"}
TICKET_LINKS = {"account": "t.account", "requester": "t.requester"}


@dataclass
class AccountPage:
    """An account and one page of each list its page shows."""

    account: dict[str, Any]
    subsidiaries: Page[dict[str, Any]]
    contacts: Page[dict[str, Any]]
    deals: Page[dict[str, Any]]
    tickets: Page[dict[str, Any]]


def list_sql(where: str, deal_scope: str, ticket_scope: str) -> str:
    """Build the account list query: one page first, then its open work.

    Only the open deals and tickets that the viewer's scope conditions
    ``deal_scope`` and ``ticket_scope`` keep are counted.
    """
    return f"""
        WITH page AS (
            SELECT a.id, a.name, a.domain, a.industry, a.city, a.country
            FROM account a
            WHERE {where}
            ORDER BY {ACCOUNT_ORDER}
            LIMIT {{}} OFFSET {{}}
        ),
        open_deals AS (
            SELECT d.account, count(*) AS n, coalesce(sum(d.amount), 0) AS amount
            FROM deal d
            JOIN stage s ON s.id = d.stage
            WHERE d.account IN (SELECT id FROM page) AND s.kind = 'open'
            AND {deal_scope}
            GROUP BY d.account
        ),
        open_tickets AS (
            SELECT t.account, count(*) AS n
            FROM ticket t
            WHERE t.account IN (SELECT id FROM page)
            AND t.status NOT IN ({CLOSED_TICKET_SQL})
            AND {ticket_scope}
            GROUP BY t.account
        )
        SELECT a.*,
            coalesce(od.n, 0) AS open_deal_count,
            coalesce(od.amount, 0) AS open_amount,
            coalesce(ot.n, 0) AS open_ticket_count
        FROM page a
        LEFT JOIN open_deals od ON od.account = a.id
        LEFT JOIN open_tickets ot ON ot.account = a.id
        ORDER BY {ACCOUNT_ORDER}
    """


def search_condition(search: str, args: list[object], access: Access = SYSTEM) -> str:
    """Return the WHERE condition for a search of name, domain or phone number.

    Phone numbers match by their digits, when the search looks like one.
    Fields hidden from ``access`` or encrypted are not searched.
    """
    if not search:
        return "TRUE"
    columns = searchable(
        access, "account", Account, {"name": "a.name", "domain": "a.domain"}
    )
    conditions = [contains_any(columns, search, args)] if columns else []
    digits = phone_digits(search)
    if digits and searchable(access, "account", Account, {"phone": "a.phone"}):
        args.append(f"%{digits}%")
        conditions.append(f"{PHONE_DIGITS_SQL} LIKE {{}}")
    return any_of(conditions)


async def search_accounts(
    search: str, paging: PageRequest, access: Access = SYSTEM
) -> Page[dict[str, Any]]:
    """List the accounts that ``search`` matches (see ``search_condition``), by name.

    Each row carries its number of open deals, their total amount and its
    number of open tickets, counting only those ``access`` may read. The
    ``open_amount`` is None when deal amounts are hidden from the viewer. An empty
    ``search`` lists every account.
    """
    args: list[object] = []
    where = search_condition(search, args, access)
    where += " AND " + scope_sql(access, "account", "a", args)
    counted = await Account.raw(
        f"SELECT count(*) AS n FROM account a WHERE {where}", *args
    )
    total = counted[0]["n"]
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)

    args.extend([paging.size, paging.offset])
    deal_scope = scope_sql(access, "deal", "d", args)
    ticket_scope = scope_sql(access, "ticket", "t", args)
    rows = await Account.raw(list_sql(where, deal_scope, ticket_scope), *args)
    if not access.can_see("deal", "amount"):
        rows = [{**row, "open_amount": None} for row in rows]
    return Page(rows=redact_rows(access, "account", rows), total=total, paging=paging)


def account_sql(access: Access, args: list[object]) -> str:
    sql = ACCOUNT_SQL
    for marker, object_type, alias in (
        ("{subsidiaries}", "account", "s"),
        ("{contacts}", "contact", "c"),
        ("{deals}", "deal", "d"),
        ("{tickets}", "ticket", "t"),
    ):
        sql = sql.replace(marker, scope_sql(access, object_type, alias, args))
    return sql


async def get_account(account_id: int, access: Access = SYSTEM) -> dict[str, Any]:
    """Load an account with its parent's name and the sizes of its lists.

    The sizes count the records ``access`` may read. The account itself is
    loaded whatever the scope, with its owner's teams in ``owner_teams``,
    so that the caller decides between 404 and 403.
    """
    args: list[object] = []
    sql = account_sql(access, args)
    rows = await Account.raw(sql, *args, account_id)
    if not rows:
        raise NotFound("account", account_id)
    return rows[0]


async def account_subsidiaries(
    account_id: int, total: int, paging: PageRequest, access: Access = SYSTEM
) -> Page[dict[str, Any]]:
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    args: list[object] = [account_id]
    sql = SUBSIDIARIES_SQL.replace("{scope}", scope_sql(access, "account", "a", args))
    rows = await Account.raw(sql, *args, paging.size, paging.offset)
    return Page(rows=redact_rows(access, "account", rows), total=total, paging=paging)


async def account_contacts(
    account_id: int, total: int, paging: PageRequest, access: Access = SYSTEM
) -> Page[dict[str, Any]]:
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    args: list[object] = [account_id]
    sql = CONTACTS_SQL.replace("{scope}", scope_sql(access, "contact", "c", args))
    rows = await Account.raw(sql, *args, paging.size, paging.offset)
    return Page(rows=redact_rows(access, "contact", rows), total=total, paging=paging)


async def get_contact_row(contact_id: int, account_id: int) -> dict[str, Any] | None:
    """Load a contact as the page of account ``account_id`` lists it.

    The row carries the contact's current ``account``, its owner and their
    teams, and the number of contacts at ``account_id``. Returns None for an
    unknown contact.
    """
    rows = await Account.raw(CONTACT_ROW_SQL, account_id, contact_id)
    return rows[0] if rows else None


async def count_contacts(account_id: int, access: Access) -> int:
    """Count the contacts at an account that ``access`` may read."""
    args: list[object] = [account_id]
    scope = scope_sql(access, "contact", "c", args)
    rows = await Account.raw(
        f"SELECT count(*) AS n FROM contact c WHERE c.account = {{}} AND {scope}",
        *args,
    )
    return int(rows[0]["n"])


async def related_deals(
    link: Literal["account", "contact"],
    record_id: int,
    total: int,
    paging: PageRequest,
    access: Access = SYSTEM,
) -> Page[dict[str, Any]]:
    """List the deals of an account or a contact that ``access`` may read,
    newest first, without the fields hidden from the viewer.

    ``total`` is the number of such deals, which the caller has counted.
    """
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    args: list[object] = [record_id]
    scope = scope_sql(access, "deal", "d", args)
    sql = DEALS_SQL.format(link=DEAL_LINKS[link], scope=scope)
    rows = await Deal.raw(sql, *args, paging.size, paging.offset)
    return Page(rows=redact_rows(access, "deal", rows), total=total, paging=paging)


async def related_tickets(
    link: Literal["account", "requester"],
    record_id: int,
    total: int,
    paging: PageRequest,
    access: Access = SYSTEM,
) -> Page[dict[str, Any]]:
    """List the tickets of an account or of their requester that ``access``
    may read, newest first.

    ``total`` is the number of such tickets, which the caller has counted.
    """
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    args: list[object] = [record_id]
    scope = scope_sql(access, "ticket", "t", args)
    sql = TICKETS_SQL.format(link=TICKET_LINKS[link], scope=scope)
    rows = await Ticket.raw(sql, *args, paging.size, paging.offset)
    return Page(rows=redact_rows(access, "ticket", rows), total=total, paging=paging)


async def load_account_page(
    account_id: int,
    subsidiaries: PageRequest,
    contacts: PageRequest,
    deals: PageRequest,
    tickets: PageRequest,
    access: Access = SYSTEM,
) -> AccountPage:
    """Load an account and the requested page of each of its lists.

    Raises NotFound for an unknown id and for an account outside the read
    scope of ``access``. Runs one query for the account and its list sizes,
    then one per list that has rows on the requested page.
    """
    account = await get_account(account_id, access)
    require_record(access, "account", "read", account)
    account = redact(access, "account", account) or account
    return AccountPage(
        account=account,
        subsidiaries=await account_subsidiaries(
            account_id, account["subsidiary_count"], subsidiaries, access
        ),
        contacts=await account_contacts(
            account_id, account["contact_count"], contacts, access
        ),
        deals=await related_deals(
            "account", account_id, account["deal_count"], deals, access
        ),
        tickets=await related_tickets(
            "account", account_id, account["ticket_count"], tickets, access
        ),
    )
