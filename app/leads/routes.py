"""The lead list, the lead board, lead pages, conversion and activities."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from app.access.guards import permission
from app.access.permissions import Access
from app.access.scopes import check_writable, permits_record, redact, require_record
from app.auth.service import CurrentUser
from app.boards import Cursor
from app.deals import queries as deal_queries
from app.errors import EditConflict, FieldError, NotFound
from app.leads import queries
from app.leads.conversion import chosen_match, find_matches, readable_matches
from app.leads.queries import LeadFilter
from app.leads.service import (
    ACTIVITY_KINDS,
    EDITABLE,
    EDITABLE_STATUSES,
    MAX_LENGTHS,
    convert_lead,
    create_lead,
    parse_lead_field,
    record_activity,
    update_lead,
)
from app.leads.tables import STATUSES
from app.merge import Conflict, Edit
from app.pagination import PageRequest, parse_search, reject_unknown_query
from app.people import people_choices
from app.web.forms import EditForm, FormData, RecordId, edit_form_state, form_fields
from app.web.pages import live_context

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
# Converting creates these besides changing the lead.
CONVERSION_NEEDS = ("contact", "account", "deal")


class LeadBoardController(Controller):
    path = "/leads"

    @get("/board", opt=permission("lead", "read"), before_request=reject_unknown_query)
    async def board_page(self, request: UserRequest) -> Template:
        access = request.user.access
        live = await live_context(["lead-board"])
        return Template(
            "leads/board.html",
            context={
                "board": await queries.get_lead_board(access),
                "access": access,
                **live,
            },
        )

    @get(
        "/board/fragment",
        opt=permission("lead", "read"),
        before_request=reject_unknown_query,
    )
    async def board_fragment(self, request: UserRequest) -> Template:
        access = request.user.access
        return Template(
            "leads/_board.html",
            context={"board": await queries.get_lead_board(access), "access": access},
        )

    @get(
        "/board/columns/{status:str}",
        opt=permission("lead", "read"),
        before_request=reject_unknown_query,
    )
    async def column_page(
        self,
        request: UserRequest,
        status: FromPath[str],
        after: FromQuery[str | None] = None,
    ) -> Template:
        if status not in STATUSES:
            raise FieldError("status", status, f"must be one of {', '.join(STATUSES)}")
        cards, next_cursor = await queries.lead_column_cards(
            status, Cursor.parse(after), access=request.user.access
        )
        return Template(
            "leads/_board_cards.html",
            context={
                "cards": cards,
                "next_cursor": next_cursor,
                "status": status,
                "access": request.user.access,
            },
        )

    @post("/{lead_id:int}/status", opt=permission("lead", "edit"))
    async def move(
        self, request: UserRequest, lead_id: RecordId, data: FormData
    ) -> Response:
        """Change a lead's status from the board, based on the status the viewer saw.

        Returns 204 and leaves the card's move to the live update, or 409 with
        the card back in the column the lead is really in.
        """
        access = request.user.access
        lead = await queries.get_lead(lead_id)
        require_record(access, "lead", "edit", lead)
        check_writable(access, "lead", ["status"])
        try:
            edit = Edit(
                base=parse_lead_field("status", data.get("from_status")),
                new=parse_lead_field("status", data.get("status")),
            )
            result = await update_lead(lead_id, {"status": edit}, request.user.id)
            if result.conflicts:
                raise EditConflict("lead", lead_id, result.conflicts)
        except (EditConflict, FieldError) as error:
            logger.info(
                "lead board move rejected lead_id=%s user_id=%s status=%r error=%s",
                lead_id,
                request.user.id,
                data.get("status"),
                error,
            )
            return await refused_move(lead_id, error, access)
        return Response(b"", status_code=204)


class LeadController(Controller):
    path = "/leads"

    @get("/", opt=permission("lead", "read"), before_request=reject_unknown_query)
    async def lead_list(
        self,
        request: UserRequest,
        q: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
        owner: FromQuery[str | None] = None,
        order: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
    ) -> Template:
        lead_filter = LeadFilter.parse(parse_search(q), status, source, owner, order)
        paging = PageRequest.parse(page, size, path="/leads", keep=lead_filter.keep())
        access = request.user.access
        leads = await queries.search_leads(lead_filter, paging, access)
        live = await live_context(["leads"], presence=False)
        return Template(
            "leads/list.html",
            context={
                "leads": leads,
                "filter": lead_filter,
                "statuses": STATUSES,
                "sources": await queries.list_sources(),
                "access": access,
                **await people_choices(),
                **live,
            },
        )

    @get("/new", opt=permission("lead", "create"))
    async def new_lead_page(self, request: UserRequest) -> Template:
        return Template("leads/new.html", context=await new_lead_context({}, None))

    @post("/", opt=permission("lead", "create"))
    async def create(self, request: UserRequest, data: FormData) -> Template | Redirect:
        user = request.user
        try:
            check_writable(user.access, "lead", [n for n in EDITABLE if n in data])
            owner = parse_lead_field("owner", data.get("owner")) or user.id
            if not user.access.permits("lead", "create", owner, user.access.team_ids):
                raise FieldError("owner", data.get("owner") or owner, "must be you")
            lead_id = await create_lead(data, user.id)
        except FieldError as error:
            return Template(
                "leads/new.html",
                context=await new_lead_context(data, error),
                status_code=422,
            )
        return Redirect(f"/leads/{lead_id}")

    @get("/{lead_id:int}", opt=permission("lead", "read"))
    async def lead_page(self, request: UserRequest, lead_id: RecordId) -> Template:
        access = request.user.access
        live = await live_context([f"lead:{lead_id}"])
        lead = await LEAD_FORM.load_for(lead_id, access, "read")
        return Template(
            "leads/detail.html",
            context={
                "lead": lead,
                "form": await lead_form_context(lead, access),
                "activities": await queries.lead_activities(lead_id),
                "activity_kinds": ACTIVITY_KINDS,
                "conversion": await conversion_context(lead, access),
                "access": access,
                **live,
            },
        )

    @get("/{lead_id:int}/form", opt=permission("lead", "edit"))
    async def lead_form(self, request: UserRequest, lead_id: RecordId) -> Template:
        return await LEAD_FORM.render(lead_id, request.user.access)

    @post("/{lead_id:int}", opt=permission("lead", "edit"))
    async def edit_lead(
        self, request: UserRequest, lead_id: RecordId, data: FormData
    ) -> Template:
        return await LEAD_FORM.save(lead_id, data, request.user.id, request.user.access)

    @post("/{lead_id:int}/activities", opt=permission("lead", "edit"))
    async def add_activity(
        self, request: UserRequest, lead_id: RecordId, data: FormData
    ) -> Template | Redirect:
        await LEAD_FORM.load_for(lead_id, request.user.access, "edit")
        try:
            await record_activity(
                lead_id,
                data.get("kind") or "",
                data.get("detail") or "",
                request.user.id,
            )
        except FieldError as error:
            return Template(
                "leads/_activity_error.html", context={"error": error}, status_code=422
            )
        return Redirect(f"/leads/{lead_id}")

    @post("/{lead_id:int}/convert", opt=permission("lead", "edit"))
    async def convert(
        self, request: UserRequest, lead_id: RecordId, data: FormData
    ) -> Template | Redirect:
        access = request.user.access
        lead = await LEAD_FORM.load_for(lead_id, access, "edit")
        missing = [kind for kind in CONVERSION_NEEDS if not access.can(kind, "create")]
        if missing:
            logger.info(
                "lead conversion denied lead_id=%s user_id=%s missing=%s",
                lead_id,
                request.user.id,
                missing,
            )
            raise PermissionDeniedException(
                "Converting a lead needs the right to create "
                + ", ".join(f"{kind}s" for kind in missing)
                + "."
            )
        try:
            offered = readable_matches(await find_matches(lead), access)
            chosen_match("contact", data.get("contact"), offered.contacts)
            chosen_match("account", data.get("account"), offered.accounts)
            await convert_lead(lead_id, data, request.user.id)
        except FieldError as error:
            logger.info(
                "lead conversion rejected lead_id=%s user_id=%s field=%s",
                lead_id,
                request.user.id,
                error.field,
            )
            return Template(
                "leads/_convert.html",
                context={
                    "lead": lead,
                    "conversion": await conversion_context(lead, access, data, error),
                },
                status_code=422,
            )
        return Redirect(f"/leads/{lead_id}")


async def refused_move(
    lead_id: int, error: EditConflict | FieldError, access: Access
) -> Template:
    """Put the card back where the server has it and explain why the move failed."""
    card = await queries.get_board_card(lead_id)
    if card is None:
        raise NotFound("lead", lead_id)
    if isinstance(error, EditConflict):
        conflict: Conflict = error.conflicts[0]
        who = conflict.changed_by or "Someone"
        message = (
            f"{who} changed the status of “{card['name'] or 'Unnamed lead'}” "
            f"to {conflict.theirs} meanwhile."
        )
    else:
        message = error.message
    return Template(
        "leads/_board_refused.html",
        context={
            "lead": redact(access, "lead", card),
            "message": message,
            "access": access,
        },
        status_code=409,
    )


async def lead_form_context(
    lead: dict[str, Any],
    access: Access,
    typed: dict[str, Any] | None = None,
    conflicts: list[Conflict] | None = None,
    error: FieldError | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    """Build the lead form's context; a viewer who may not edit gets none."""
    if lead["status"] == "converted" or not permits_record(
        access, "lead", "edit", lead
    ):
        return {"lead": lead, "editable": False}
    fields = form_fields(access, "lead", EDITABLE)
    return {
        "lead": lead,
        "editable": True,
        **fields,
        **edit_form_state(lead, fields["writable"], typed, conflicts, error, saved),
        "statuses": EDITABLE_STATUSES,
        "max_lengths": MAX_LENGTHS,
        **await people_choices(keep=[lead["owner"]]),
    }


async def conversion_context(
    lead: dict[str, Any],
    access: Access,
    typed: dict[str, Any] | None = None,
    error: FieldError | None = None,
) -> dict[str, Any]:
    """Build the convert form's context, or None when the viewer may not convert."""
    allowed = permits_record(access, "lead", "edit", lead) and all(
        access.can(kind, "create") for kind in CONVERSION_NEEDS
    )
    if lead["status"] == "converted" or not allowed:
        return {"allowed": False, "error": error}
    pipelines = await deal_queries.list_pipelines()
    stages = []
    for pipeline in pipelines:
        for stage in await deal_queries.list_stages(pipeline["id"]):
            stages.append({**stage, "pipeline_name": pipeline["name"]})
    matches = readable_matches(await find_matches(lead), access)
    values = dict(typed or {})
    # The first matching record is preselected, so converting does not
    # duplicate it unless the viewer chooses a new one.
    if "contact" not in values and matches.contacts:
        values["contact"] = str(matches.contacts[0]["id"])
    if "account" not in values and matches.accounts:
        values["account"] = str(matches.accounts[0]["id"])
    return {
        "allowed": True,
        "stages": stages,
        "values": values,
        "contacts": matches.contacts,
        "accounts": matches.accounts,
        "error": error,
    }


async def new_lead_context(
    typed: dict[str, Any], error: FieldError | None
) -> dict[str, Any]:
    return {
        "values": typed,
        "error": error,
        "statuses": EDITABLE_STATUSES,
        "max_lengths": MAX_LENGTHS,
        **await people_choices(),
    }


LEAD_FORM = EditForm(
    record_type="lead",
    template="leads/_form.html",
    editable=EDITABLE,
    parse=parse_lead_field,
    update=update_lead,
    load=queries.get_lead,
    context=lead_form_context,
)
