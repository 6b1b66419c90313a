"""Resolvers of the streams a page may subscribe to, and of each one's variant.

A topic is "<family>" or "<family>:<id>". Each family has a resolver that
checks the record exists and that the viewer may read it, and returns the
subscription's variant: the part of the viewer's page that changes what
must be pushed to it, which includes the viewer's access to the object
types the stream's fragments show (see ``app.access.views``). A stream the
viewer may not read is reported as not found, like a missing record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.access.guards import ADMIN, IMPORT, allows
from app.access.scopes import permits_record
from app.access.views import variant
from app.accounts import queries as account_queries
from app.auth.service import CurrentUser
from app.boards import BoardFilter
from app.contacts import queries as contact_queries
from app.deals.tables import Deal, Pipeline
from app.errors import FieldError, NotFound
from app.fields import MAX_ID
from app.imports.tables import ImportJob
from app.tickets.tables import Ticket

Resolver = Callable[[int | None, CurrentUser, BoardFilter], Awaitable[str]]

# Every socket connect runs one of these, so they are plain SQL: Piccolo's
# query builder costs about three times as much CPU per query.
PIPELINE_EXISTS = "SELECT 1 FROM pipeline WHERE id = {}"
DEAL_SCOPE = "SELECT id, owner, team FROM deal WHERE id = {}"
TICKET_SCOPE = "SELECT id, assignee, team FROM ticket WHERE id = {}"


async def pipeline_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if not user.access.can("deal", "read"):
        raise NotFound("pipeline", record_id)
    if record_id is None or not await Pipeline.raw(PIPELINE_EXISTS, record_id):
        raise NotFound("pipeline", record_id)
    board.check_visible(user.access, "deal", "owner")
    return variant(board.key, user.access, ["deal"])


async def deal_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    rows = await Deal.raw(DEAL_SCOPE, record_id) if record_id is not None else []
    deal = rows[0] if rows else None
    if deal is None or not permits_record(user.access, "deal", "read", deal):
        raise NotFound("deal", record_id)
    # "admin": a rule's note links to the rule's page for administrators.
    return variant("", user.access, ["deal", "comment", "admin"])


async def ticket_board_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if not user.access.can("ticket", "read"):
        raise NotFound("tickets", record_id)
    board.check_visible(user.access, "ticket", "assignee")
    return variant(board.key, user.access, ["ticket"])


async def ticket_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    rows = await Ticket.raw(TICKET_SCOPE, record_id) if record_id is not None else []
    ticket = rows[0] if rows else None
    if ticket is None or not permits_record(user.access, "ticket", "read", ticket):
        raise NotFound("ticket", record_id)
    # "admin": a rule's note links to the rule's page for administrators.
    return variant("", user.access, ["ticket", "comment", "admin"])


async def account_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if record_id is None:
        raise NotFound("account", record_id)
    account = await account_queries.get_account(record_id)
    if not permits_record(user.access, "account", "read", account):
        raise NotFound("account", record_id)
    return variant("", user.access, ["account", "contact"])


async def contact_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if record_id is None:
        raise NotFound("contact", record_id)
    contact = await contact_queries.get_contact(record_id)
    if not permits_record(user.access, "contact", "read", contact):
        raise NotFound("contact", record_id)
    return variant("", user.access, ["contact"])


async def lead_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    from app.leads.queries import get_lead

    if record_id is None:
        raise NotFound("lead", record_id)
    lead = await get_lead(record_id)
    if not permits_record(user.access, "lead", "read", lead):
        raise NotFound("lead", record_id)
    return variant("", user.access, ["lead"])


async def lead_list_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if not user.access.can("lead", "read"):
        raise NotFound("leads", record_id)
    return variant("", user.access, ["lead"])


async def import_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    """Import progress is shown only to the user who started the import."""
    job = (
        await ImportJob.select(ImportJob.user).where(ImportJob.id == record_id).first()
        if record_id is not None
        else None
    )
    if job is None or job["user"] != user.id or not allows(user.access, IMPORT):
        raise NotFound("import", record_id)
    return ""


async def user_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    """Allow a user to subscribe to their own notifications and nobody else's."""
    if record_id is None or record_id != user.id:
        raise NotFound("user", record_id)
    return ""


async def campaign_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    from app.campaigns.tables import Campaign

    if not user.access.can("campaign", "read") or record_id is None:
        raise NotFound("campaign", record_id)
    if not await Campaign.raw("SELECT 1 FROM campaign WHERE id = {}", record_id):
        raise NotFound("campaign", record_id)
    return ""


async def workflow_rule_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    """Allow only administrators to follow a rule's timer planning progress."""
    from app.workflows.tables import WorkflowRule

    if not allows(user.access, ADMIN) or record_id is None:
        raise NotFound("workflow rule", record_id)
    exists = "SELECT 1 FROM workflow_rule WHERE id = {}"
    if not await WorkflowRule.raw(exists, record_id):
        raise NotFound("workflow rule", record_id)
    return ""


RESOLVERS: dict[str, Resolver] = {
    "pipeline": pipeline_topic,
    "deal": deal_topic,
    "tickets": ticket_board_topic,
    "ticket": ticket_topic,
    "account": account_topic,
    "contact": contact_topic,
    "lead": lead_topic,
    "leads": lead_list_topic,
    "lead-board": lead_list_topic,
    "import": import_topic,
    "user": user_topic,
    "campaign": campaign_topic,
    "workflow-rule": workflow_rule_topic,
}


async def resolve_topic(topic: str, user: CurrentUser, board: BoardFilter) -> str:
    """Return the variant for ``topic``; raise if it is unknown or not readable."""
    family, _, raw_id = topic.partition(":")
    resolver = RESOLVERS.get(family)
    if resolver is None:
        raise FieldError("topic", topic, "is not a known stream")
    record_id = None
    if raw_id:
        try:
            record_id = int(raw_id)
        except ValueError:
            raise FieldError("topic", topic, "has an invalid id") from None
        if not 0 < record_id <= MAX_ID:
            raise FieldError("topic", topic, "has an id out of range")
    return await resolver(record_id, user, board)
