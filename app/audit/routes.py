"""The history tab of record pages and the administrators' audit log page."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromQuery
from litestar.response import Template

from app.access.guards import ADMIN, admin_only, permission
from app.access.permissions import Access
from app.access.scopes import require_record
from app.accounts.queries import get_account
from app.audit.queries import AuditFilter, parse_cursor, record_history, search_log
from app.audit.service import ACTIONS, AUDITED_TABLES
from app.auth.service import CurrentUser
from app.contacts.queries import get_contact
from app.deals.queries import get_deal
from app.errors import FieldError
from app.pagination import reject_unknown_query
from app.tickets.queries import get_ticket
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]

# The record types with a page, and the path their pages live under.
RECORD_PATHS = {
    "deal": "/deals",
    "ticket": "/tickets",
    "account": "/accounts",
    "contact": "/contacts",
}


class HistoryController(Controller):
    """The history tab's fragment, one route per record page."""

    before_request = staticmethod(reject_unknown_query)

    @get("/deals/{record_id:int}/history", opt=permission("deal", "read"))
    async def deal_history(
        self,
        request: UserRequest,
        record_id: RecordId,
        before: FromQuery[str | None] = None,
    ) -> Template:
        return await history_fragment(request, "deal", record_id, before)

    @get("/tickets/{record_id:int}/history", opt=permission("ticket", "read"))
    async def ticket_history(
        self,
        request: UserRequest,
        record_id: RecordId,
        before: FromQuery[str | None] = None,
    ) -> Template:
        return await history_fragment(request, "ticket", record_id, before)

    @get("/accounts/{record_id:int}/history", opt=permission("account", "read"))
    async def account_history(
        self,
        request: UserRequest,
        record_id: RecordId,
        before: FromQuery[str | None] = None,
    ) -> Template:
        return await history_fragment(request, "account", record_id, before)

    @get("/contacts/{record_id:int}/history", opt=permission("contact", "read"))
    async def contact_history(
        self,
        request: UserRequest,
        record_id: RecordId,
        before: FromQuery[str | None] = None,
    ) -> Template:
        return await history_fragment(request, "contact", record_id, before)


async def load_record(record_type: str, record_id: int, access: Access) -> None:
    """Raise NotFound unless the record exists and the viewer may read it."""
    if record_type == "deal":
        record = await get_deal(record_id)
    elif record_type == "ticket":
        record = await get_ticket(record_id)
    elif record_type == "account":
        record = await get_account(record_id, access)
    else:
        record = await get_contact(record_id, access)
    require_record(access, record_type, "read", record)


async def history_fragment(
    request: UserRequest, record_type: str, record_id: int, raw_before: str | None
) -> Template:
    cursor = parse_cursor(raw_before)
    access = request.user.access
    await load_record(record_type, record_id, access)

    page = await record_history(
        record_type,
        record_id,
        hidden_fields=access.hidden_fields(record_type),
        before=cursor,
    )
    for row in page.rows:
        # An editor's email and client address are personal data, shown
        # only to administrators and to the editor themself.
        if not access.sees_personal_details(row["actor_id"]):
            del row["actor_email"], row["client_address"]
    return Template(
        "audit/_history.html",
        context={
            "page": page,
            "more_url": f"{RECORD_PATHS[record_type]}/{record_id}/history",
            "appending": cursor is not None,
        },
    )


class AuditAdminController(Controller):
    path = "/admin/audit"
    guards = [admin_only]

    @get("/", opt={"permission": ADMIN}, before_request=reject_unknown_query)
    async def audit_page(
        self,
        actor: FromQuery[str | None] = None,
        action: FromQuery[str | None] = None,
        record_type: FromQuery[str | None] = None,
        record_id: FromQuery[str | None] = None,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        before: FromQuery[str | None] = None,
    ) -> Template:
        typed = {
            "actor": actor,
            "action": action,
            "record_type": record_type,
            "record_id": record_id,
            "since": since,
            "until": until,
            "q": q,
        }
        context: dict[str, Any] = {
            "typed": {name: value or "" for name, value in typed.items()},
            "actions": ACTIONS,
            "record_types": list(AUDITED_TABLES),
            "record_paths": RECORD_PATHS,
            "error": None,
            "page": None,
            "filter_params": {},
            "first_page": before is not None,
        }
        try:
            audit_filter = AuditFilter.parse(typed)
            cursor = parse_cursor(before)
        except FieldError as error:
            logger.info("audit filter rejected field=%s", error.field)
            context["error"] = error
            # The filter is in the URL, so a bad value makes a bad request.
            return Template("audit/admin.html", context=context, status_code=400)

        context["page"] = await search_log(audit_filter, cursor)
        context["filter_params"] = audit_filter.query_params()
        return Template("audit/admin.html", context=context)
