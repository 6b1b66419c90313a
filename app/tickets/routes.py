"""Ticket board and ticket pages."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Response, Template

from app.access.guards import permission
from app.access.permissions import Access
from app.access.scopes import check_writable, redact, require_record
from app.auth.service import CurrentUser
from app.boards import BoardFilter, Cursor
from app.comments.pages import comment_context, post_comment
from app.email.routes import ticket_email_context
from app.errors import EditConflict, FieldError
from app.merge import Conflict
from app.pagination import reject_unknown_query
from app.people import people_choices
from app.tasks.routes import task_context
from app.tickets import queries
from app.tickets.service import (
    EDITABLE,
    parse_ticket_field,
    set_ticket_field,
    update_ticket,
)
from app.tickets.tables import CHANNELS, PRIORITIES, STATUSES
from app.web.deletion import delete_context
from app.web.forms import (
    EditForm,
    FormData,
    RecordId,
    edit_form_state,
    form_fields,
    value_labels,
)
from app.web.pages import live_context

UserRequest = Request[CurrentUser, Any, Any]
QUICK_FIELDS = ("status", "priority", "assignee")


class TicketBoardController(Controller):
    path = "/tickets"
    before_request = staticmethod(reject_unknown_query)

    @get("/", opt=permission("ticket", "read"))
    async def board_page(
        self,
        request: UserRequest,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        access = request.user.access
        board_filter = BoardFilter.parse(person, team)
        board_filter.check_visible(access, "ticket", "assignee")
        live = await live_context(["tickets"], board_filter.key)
        return Template(
            "tickets/board.html",
            context={
                "board": await queries.get_board(board_filter, access),
                "access": access,
                **await people_choices(),
                **live,
            },
        )

    @get("/board", opt=permission("ticket", "read"))
    async def board_fragment(
        self,
        request: UserRequest,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        access = request.user.access
        board_filter = BoardFilter.parse(person, team)
        board_filter.check_visible(access, "ticket", "assignee")
        board = await queries.get_board(board_filter, access)
        return Template(
            "tickets/_board.html", context={"board": board, "access": access}
        )

    @get("/columns/{status:str}", opt=permission("ticket", "read"))
    async def column_page(
        self,
        request: UserRequest,
        status: FromPath[str],
        after: FromQuery[str | None] = None,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        if status not in STATUSES:
            raise FieldError("status", status, f"must be one of {', '.join(STATUSES)}")
        board_filter = BoardFilter.parse(person, team)
        board_filter.check_visible(request.user.access, "ticket", "assignee")
        cards, next_cursor = await queries.column_cards(
            status, board_filter, Cursor.parse(after), access=request.user.access
        )
        return Template(
            "tickets/_cards.html",
            context={
                "cards": cards,
                "next_cursor": next_cursor,
                "status": status,
                "filter_key": board_filter.key,
                "access": request.user.access,
            },
        )


class TicketController(Controller):
    path = "/tickets"

    @get("/{ticket_id:int}", opt=permission("ticket", "read"))
    async def ticket_page(
        self,
        request: UserRequest,
        ticket_id: RecordId,
        email_page: FromQuery[str | None] = None,
    ) -> Template:
        access = request.user.access
        live = await live_context([f"ticket:{ticket_id}"])
        ticket = await load_ticket(ticket_id, access)
        return Template(
            "tickets/detail.html",
            context={
                "ticket": ticket,
                "form": await ticket_form_context(ticket, access),
                "access": access,
                **await comment_context("ticket", ticket, access),
                **await task_context("ticket", ticket, access),
                **await delete_context("ticket", ticket, access),
                **await ticket_email_context(ticket, access, email_page),
                **live,
            },
        )

    @get("/{ticket_id:int}/form", opt=permission("ticket", "edit"))
    async def ticket_form(self, request: UserRequest, ticket_id: RecordId) -> Template:
        return await TICKET_FORM.render(ticket_id, request.user.access)

    @post("/{ticket_id:int}", opt=permission("ticket", "edit"))
    async def edit_ticket(
        self, request: UserRequest, ticket_id: RecordId, data: FormData
    ) -> Template:
        return await TICKET_FORM.save(
            ticket_id, data, request.user.id, request.user.access
        )

    @post("/{ticket_id:int}/fields/{name:str}", opt=permission("ticket", "edit"))
    async def quick_change(
        self,
        request: UserRequest,
        ticket_id: RecordId,
        name: FromPath[str],
        data: FormData,
    ) -> Response:
        """Change status, priority or assignee from a board card."""
        if name not in QUICK_FIELDS:
            raise FieldError("field", name, f"must be one of {', '.join(QUICK_FIELDS)}")
        access = request.user.access
        await load_ticket(ticket_id, access, "edit")
        check_writable(access, "ticket", [name])
        try:
            await set_ticket_field(
                ticket_id,
                name,
                data.get(name),
                data.get(f"from_{name}"),
                request.user.id,
            )
        except (EditConflict, FieldError) as error:
            return await refused_change(ticket_id, error, access)
        return Response(b"", status_code=204)

    @post("/{ticket_id:int}/comments", opt=permission("comment", "create"))
    async def comment(
        self, request: UserRequest, ticket_id: RecordId, data: FormData
    ) -> Template:
        ticket = await load_ticket(ticket_id, request.user.access)
        return await post_comment("ticket", ticket, data, request.user)


async def load_ticket(
    ticket_id: int, access: Access, action: str = "read"
) -> dict[str, Any]:
    """Load a ticket the viewer may read, without the fields hidden from them.

    Raises NotFound outside the read scope and 403 when ``action`` is not
    allowed on the ticket.
    """
    ticket = await queries.get_ticket(ticket_id)
    require_record(access, "ticket", action, ticket)
    redacted = redact(access, "ticket", ticket)
    assert redacted is not None
    return redacted


async def refused_change(
    ticket_id: int, error: EditConflict | FieldError, access: Access
) -> Template:
    """Put the card back as the server has it and explain why the change failed."""
    ticket = await load_ticket(ticket_id, access)
    if isinstance(error, EditConflict):
        conflict: Conflict = error.conflicts[0]
        who = conflict.changed_by or "Someone"
        describe = value_labels({"assignee": (await people_choices())["users"]})
        message = (
            f"{who} changed the {conflict.field} of “{ticket['subject']}” "
            f"to {describe(conflict.field, conflict.theirs)} meanwhile."
        )
    else:
        message = error.message
    return Template(
        "tickets/_change_refused.html",
        context={"ticket": ticket, "message": message, "access": access},
        status_code=409,
    )


async def ticket_form_context(
    ticket: dict[str, Any],
    access: Access,
    typed: dict[str, Any] | None = None,
    conflicts: list[Conflict] | None = None,
    error: FieldError | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    """Build the ticket form's context; a viewer who may not edit gets none."""
    if not access.permits("ticket", "edit", ticket["assignee"], [ticket["team"]]):
        return {"ticket": ticket, "editable": False}
    people = await people_choices(keep=[ticket["assignee"]])
    fields = form_fields(access, "ticket", EDITABLE)
    return {
        "ticket": ticket,
        "editable": True,
        **fields,
        **edit_form_state(ticket, fields["writable"], typed, conflicts, error, saved),
        "statuses": STATUSES,
        "priorities": PRIORITIES,
        "channels": CHANNELS,
        **people,
        "describe": value_labels(
            {"assignee": people["users"], "team": people["teams"]}
        ),
    }


TICKET_FORM = EditForm(
    record_type="ticket",
    template="tickets/_form.html",
    editable=EDITABLE,
    parse=parse_ticket_field,
    update=update_ticket,
    load=queries.get_ticket,
    context=ticket_form_context,
)
