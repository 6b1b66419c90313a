"""Resolvers of the streams a page may subscribe to, and of each one's variant.

A topic is "<family>" or "<family>:<id>". Each family has a resolver that
checks the record exists and returns the subscription's variant: the part
of the viewer's page that changes what must be pushed to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.accounts.tables import Account
from app.auth.service import CurrentUser
from app.boards import BoardFilter
from app.contacts.tables import Contact
from app.deals.tables import Deal, Pipeline
from app.errors import FieldError, NotFound
from app.imports.tables import ImportJob
from app.tickets.tables import Ticket

Resolver = Callable[[int | None, CurrentUser, BoardFilter], Awaitable[str]]


async def pipeline_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if record_id is None or not await Pipeline.exists().where(Pipeline.id == record_id):
        raise NotFound("pipeline", record_id)
    return board.key


async def deal_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if record_id is None or not await Deal.exists().where(Deal.id == record_id):
        raise NotFound("deal", record_id)
    return ""


async def ticket_board_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    return board.key


async def ticket_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if record_id is None or not await Ticket.exists().where(Ticket.id == record_id):
        raise NotFound("ticket", record_id)
    return ""


async def account_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if record_id is None or not await Account.exists().where(Account.id == record_id):
        raise NotFound("account", record_id)
    return ""


async def contact_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    if record_id is None or not await Contact.exists().where(Contact.id == record_id):
        raise NotFound("contact", record_id)
    return ""


async def import_topic(
    record_id: int | None, user: CurrentUser, board: BoardFilter
) -> str:
    """Import progress is shown only to the user who started the import."""
    job = (
        await ImportJob.select(ImportJob.user).where(ImportJob.id == record_id).first()
        if record_id is not None
        else None
    )
    if job is None or job["user"] != user.id:
        raise NotFound("import", record_id)
    return ""


RESOLVERS: dict[str, Resolver] = {
    "pipeline": pipeline_topic,
    "deal": deal_topic,
    "tickets": ticket_board_topic,
    "ticket": ticket_topic,
    "account": account_topic,
    "contact": contact_topic,
    "import": import_topic,
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
    return await resolver(record_id, user, board)
