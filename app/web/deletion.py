"""Deleting deals, tickets, accounts and contacts from their pages.

A record page shows a Delete step to users whose role may delete that
record: a ``<details>`` element that opens a confirmation form, with no
script. The form posts to ``/<records>/<id>/delete`` with the version the
page showed, and the delete goes through ``app.deletion.delete_record``, as
the API's DELETE does. So the same checks apply (403 without the delete
right, 409 for an account or contact that other records still refer to),
the audit log records the values before the delete, and the delete event
takes the card off open boards. Open pages of the record replace their
summary with ``render_deleted_notice``'s notice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect, Template

from app.access.guards import permission
from app.access.permissions import Access
from app.access.scopes import owner_teams_sql, permits_record, redact
from app.access.views import split_variant
from app.accounts.queries import get_account
from app.auth.service import CurrentUser
from app.auth.tables import User
from app.contacts.queries import get_contact
from app.deals.queries import get_deal
from app.deletion import DELETABLE, HasDependents, count_dependents, delete_record
from app.errors import FieldError, VersionMismatch
from app.fields import reference
from app.tickets.queries import get_ticket
from app.web.forms import FormData, RecordId
from app.web.templating import render
from realtime.messages import Event

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
Loader = Callable[[int, Access], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class RecordPage:
    """A record type with a page, and where its users go once it is deleted."""

    object_type: str
    # The path its pages live under, such as "/deals".
    path: str
    load: Loader
    # The record's title on its page.
    title: Callable[[dict[str, Any]], str]
    # The list or board that a delete leads to, from the row as it was.
    back_url: Callable[[dict[str, Any]], str]
    back_label: str
    # What else the delete removes, shown before the user confirms.
    takes_along: str = ""


async def load_deal(deal_id: int, access: Access) -> dict[str, Any]:
    return await get_deal(deal_id)


async def load_ticket(ticket_id: int, access: Access) -> dict[str, Any]:
    return await get_ticket(ticket_id)


def contact_title(contact: dict[str, Any]) -> str:
    return contact.get("name") or contact.get("email") or "Unnamed contact"


PAGES = {
    page.object_type: page
    for page in (
        RecordPage(
            "deal",
            "/deals",
            load_deal,
            lambda deal: deal["name"],
            lambda row: f"/pipelines/{row['pipeline']}",
            "Back to the pipeline",
            "Its comments and tasks are deleted with it.",
        ),
        RecordPage(
            "ticket",
            "/tickets",
            load_ticket,
            lambda ticket: ticket["subject"],
            lambda row: "/tickets",
            "Back to the tickets",
            "Its comments and tasks are deleted with it.",
        ),
        RecordPage(
            "account",
            "/accounts",
            get_account,
            lambda account: account["name"],
            lambda row: "/accounts",
            "Back to the accounts",
        ),
        RecordPage(
            "contact",
            "/contacts",
            get_contact,
            contact_title,
            lambda row: "/contacts",
            "Back to the contacts",
        ),
    )
}


async def delete_context(
    object_type: str, record: dict[str, Any], access: Access
) -> dict[str, Any]:
    """Build the Delete step of a record page, or none for users who may not
    delete the record.

    A record that others still refer to gets the reason in place of the
    button, in the words the delete would reject it with.
    """
    if not permits_record(access, object_type, "delete", record):
        return {"delete_step": None}
    page = PAGES[object_type]
    dependents = await count_dependents(DELETABLE[object_type], record["id"])
    blocked = str(HasDependents(object_type, record["id"], dependents))
    return {
        "delete_step": {
            "object_type": object_type,
            "action": f"{page.path}/{record['id']}/delete",
            "version": record["version"],
            "title": page.title(record),
            "takes_along": page.takes_along,
            "blocked": blocked if dependents else None,
        }
    }


def parse_version(raw: str | None) -> int:
    version = reference("version", raw)
    if version is None:
        raise FieldError("version", raw, "is missing, so reload the record's page")
    return version


async def refused_delete(
    object_type: str, record_id: int, access: Access, message: str
) -> Template:
    """Render the record's Delete step again, with why the delete failed (409)."""
    page = PAGES[object_type]
    record = redact(access, object_type, await page.load(record_id, access))
    assert record is not None
    return Template(
        "delete_refused.html",
        context={
            "message": message,
            "record_url": f"{page.path}/{record_id}",
            **await delete_context(object_type, record, access),
        },
        status_code=409,
    )


async def delete_from_page(
    request: UserRequest, object_type: str, record_id: int, data: dict[str, Any]
) -> Redirect | Template:
    """Delete the record at the version its page showed, and go to its list.

    Raises NotFound outside the read scope and 403 without the delete
    right, before anything else is checked.
    """
    access = request.user.access
    version = parse_version(data.get("version"))
    try:
        row = await delete_record(
            object_type, record_id, access, request.user.id, version
        )
    except HasDependents as error:
        return await refused_delete(object_type, record_id, access, str(error))
    except VersionMismatch as error:
        logger.info(
            "page delete rejected: changed meanwhile %s_id=%s user_id=%s "
            "version=%s current=%s",
            object_type,
            record_id,
            request.user.id,
            error.expected,
            error.current,
        )
        message = (
            f"Someone changed this {object_type} after you opened its page, so "
            "it was not deleted. Check the changes, then delete it again."
        )
        return await refused_delete(object_type, record_id, access, message)
    return Redirect(PAGES[object_type].back_url(row), status_code=303)


def delete_route(object_type: str) -> HTTPRouteHandler:
    """Build the POST route that deletes a record of ``object_type`` from its page."""

    @post(
        f"{PAGES[object_type].path}/{{record_id:int}}/delete",
        opt=permission(object_type, "delete"),
        name=f"delete_{object_type}_page",
    )
    async def delete_page_record(
        request: UserRequest, record_id: RecordId, data: FormData
    ) -> Redirect | Template:
        return await delete_from_page(request, object_type, record_id, data)

    return delete_page_record


DELETE_ROUTES = [delete_route(object_type) for object_type in PAGES]


async def deleted_row(event: Event) -> dict[str, Any]:
    """Return a deleted record's row from its delete event, for scope checks.

    The event carries each column's value before the delete. An account's
    or contact's scope follows its owner's teams, which are read now.
    """
    row = {
        name: change[0]
        for name, change in event.changes.items()
        if isinstance(change, list) and len(change) == 2
    }
    row["id"] = event.record_id
    if event.record_type in ("account", "contact") and row.get("owner") is not None:
        teams = await User.raw(
            f"SELECT {owner_teams_sql('r', 'id')} AS owner_teams "
            "FROM app_user r WHERE r.id = {}",
            row["owner"],
        )
        row["owner_teams"] = teams[0]["owner_teams"] if teams else []
    return row


async def render_deleted_notice(event: Event, variants: set[str]) -> dict[str, str]:
    """Replace the summary of a deleted record's open pages with a notice.

    Only viewers who could read the record receive the notice, and the
    others an empty fragment.
    """
    object_type = event.record_type
    page = PAGES[object_type]
    row = await deleted_row(event)
    actor = None
    if event.actor_id is not None:
        actor = await User.select(User.name).where(User.id == event.actor_id).first()
    notice = render(
        "_record_deleted.html",
        record_type=object_type,
        record_id=event.record_id,
        actor_name=actor["name"] if actor else None,
        back_url=page.back_url(row),
        back_label=page.back_label,
    )
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        readable = permits_record(access, object_type, "read", row)
        fragments[variant] = notice if readable else ""
    return fragments
