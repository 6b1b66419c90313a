"""What a lead's conversion may reuse, and the leads a record was converted from.

Converting a lead offers an existing contact whose email is the lead's, and
existing accounts named like the lead's company or whose domain is the
lead's email domain. Free-mail domains such as gmail.com do not match an
account, because unrelated people share them. The contact, account and
deal pages show the leads they came from, with their source, answers and
newest activities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.access.permissions import Access
from app.access.scopes import owner_teams_sql, permits_record, redact
from app.email.settings import FREE_MAIL_DOMAINS
from app.errors import FieldError
from app.leads.queries import decode_lead, lead_activities
from app.leads.tables import Lead

# At most this many candidates of each kind are offered.
MAX_MATCHES = 10
# A record's page shows at most this many of the leads converted into it,
# newest first, and this many activities of each.
MAX_ORIGIN_LEADS = 10
MAX_ORIGIN_ACTIVITIES = 10
# The form value that creates a record instead of reusing one.
NEW = "new"
ORIGIN_COLUMNS = {
    "contact": "converted_contact",
    "account": "converted_account",
    "deal": "converted_deal",
}


@dataclass(frozen=True)
class Matches:
    contacts: list[dict[str, Any]]
    accounts: list[dict[str, Any]]


def email_domain(email: str | None) -> str | None:
    """Return the lead's email domain, or None for a free-mail domain."""
    domain = (email or "").rpartition("@")[2].strip().lower()
    if not domain or domain in FREE_MAIL_DOMAINS:
        return None
    return domain


async def find_matches(lead: dict[str, Any]) -> Matches:
    """Return the existing contacts and accounts the lead may be converted into."""
    contacts: list[dict[str, Any]] = []
    if lead.get("email"):
        contacts = await Lead.raw(
            "SELECT c.id, c.first_name, c.last_name, c.email, c.owner, c.account, "
            f"a.name AS account_name, {owner_teams_sql('c')} AS owner_teams "
            "FROM contact c LEFT JOIN account a ON a.id = c.account "
            "WHERE lower(c.email) = lower({}) ORDER BY c.id LIMIT {}",
            lead["email"],
            MAX_MATCHES,
        )
    company = (lead.get("company") or "").strip()
    domain = email_domain(lead.get("email"))
    accounts: list[dict[str, Any]] = []
    if company or domain:
        accounts = await Lead.raw(
            "SELECT a.id, a.name, a.domain, a.owner, "
            f"{owner_teams_sql('a')} AS owner_teams "
            "FROM account a "
            "WHERE ({} <> '' AND lower(trim(a.name)) = lower({})) "
            "OR ({}::text IS NOT NULL AND lower(a.domain) = {}) "
            "ORDER BY a.id LIMIT {}",
            company,
            company,
            domain,
            domain,
            MAX_MATCHES,
        )
    return Matches(contacts=contacts, accounts=accounts)


def readable_matches(matches: Matches, access: Access) -> Matches:
    """Keep the candidates the viewer may read, without their hidden fields."""
    return Matches(
        contacts=[
            redact(access, "contact", row) or row
            for row in matches.contacts
            if permits_record(access, "contact", "read", row)
        ],
        accounts=[
            redact(access, "account", row) or row
            for row in matches.accounts
            if permits_record(access, "account", "read", row)
        ],
    )


def chosen_match(name: str, raw: Any, candidates: list[dict[str, Any]]) -> int | None:
    """Read the form's choice of ``name``: None to create one, or a candidate's id.

    Raises FieldError naming the field when the id is not a candidate.
    """
    text = str(raw or "").strip()
    if text in ("", NEW):
        return None
    if not text.isdigit():
        raise FieldError(name, raw, f"must be {NEW!r} or the id of a matching {name}")
    chosen = int(text)
    if chosen not in {row["id"] for row in candidates}:
        raise FieldError(
            name, raw, f"is not a {name} that matches the lead; choose another"
        )
    return chosen


async def origin_leads(
    record_type: str, record_id: int, access: Access
) -> dict[str, Any]:
    """Return the readable leads converted into a record, for its page.

    Leads the viewer may not read are counted in ``hidden`` and not shown,
    and ``more`` counts the leads past ``MAX_ORIGIN_LEADS``.
    """
    column = ORIGIN_COLUMNS[record_type]
    rows = await Lead.raw(
        "SELECT l.id, l.name, l.email, l.company, l.source, l.status, l.owner, "
        "l.answers::text AS answers, '[]' AS score_factors, l.converted_at, "
        f"l.created_at, {owner_teams_sql('l')} AS owner_teams, "
        "count(*) OVER () AS total "
        f"FROM lead l WHERE l.{column} = {{}} "
        "ORDER BY l.converted_at DESC NULLS LAST, l.id DESC LIMIT {}",
        record_id,
        MAX_ORIGIN_LEADS,
    )
    leads = []
    hidden = 0
    for row in rows:
        lead = decode_lead(row)
        if not permits_record(access, "lead", "read", lead):
            hidden += 1
            continue
        shown = redact(access, "lead", lead) or lead
        shown["activities"] = await lead_activities(
            lead["id"], limit=MAX_ORIGIN_ACTIVITIES
        )
        leads.append(shown)
    total = int(rows[0]["total"]) if rows else 0
    return {
        "leads": leads,
        "hidden": hidden,
        "more": total - len(rows),
        "record_type": record_type,
    }
