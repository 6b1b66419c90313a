"""Ticket board and ticket pages."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Response, Template

from app.auth.service import CurrentUser
from app.boards import BoardFilter, Cursor
from app.comments.service import add_comment, timeline
from app.errors import EditConflict, FieldError
from app.merge import Conflict
from app.people import people_choices
from app.tickets import queries
from app.tickets.service import (
    EDITABLE,
    parse_ticket_field,
    set_ticket_field,
    update_ticket,
)
from app.tickets.tables import CHANNELS, PRIORITIES, STATUSES
from app.web.forms import (
    EditForm,
    FormData,
    RecordId,
    edit_form_state,
    value_labels,
)
from app.web.pages import live_context

UserRequest = Request[CurrentUser, Any, Any]
QUICK_FIELDS = ("status", "priority", "assignee")


class TicketBoardController(Controller):
    path = "/tickets"

    @get("/")
    async def board_page(
        self, person: FromQuery[str | None] = None, team: FromQuery[str | None] = None
    ) -> Template:
        board_filter = BoardFilter.parse(person, team)
        live = await live_context(["tickets"], board_filter.key)
        return Template(
            "tickets/board.html",
            context={
                "board": await queries.get_board(board_filter),
                **await people_choices(),
                **live,
            },
        )

    @get("/board")
    async def board_fragment(
        self, person: FromQuery[str | None] = None, team: FromQuery[str | None] = None
    ) -> Template:
        board = await queries.get_board(BoardFilter.parse(person, team))
        return Template("tickets/_board.html", context={"board": board})

    @get("/columns/{status:str}")
    async def column_page(
        self,
        status: FromPath[str],
        after: FromQuery[str | None] = None,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        if status not in STATUSES:
            raise FieldError("status", status, f"must be one of {', '.join(STATUSES)}")
        board_filter = BoardFilter.parse(person, team)
        cards, next_cursor = await queries.column_cards(
            status, board_filter, Cursor.parse(after)
        )
        return Template(
            "tickets/_cards.html",
            context={
                "cards": cards,
                "next_cursor": next_cursor,
                "status": status,
                "filter_key": board_filter.key,
            },
        )


class TicketController(Controller):
    path = "/tickets"

    @get("/{ticket_id:int}")
    async def ticket_page(self, ticket_id: RecordId) -> Template:
        live = await live_context([f"ticket:{ticket_id}"])
        ticket = await queries.get_ticket(ticket_id)
        return Template(
            "tickets/detail.html",
            context={
                "ticket": ticket,
                "form": await ticket_form_context(ticket),
                "comments": await timeline("ticket", ticket_id),
                **live,
            },
        )

    @get("/{ticket_id:int}/form")
    async def ticket_form(self, ticket_id: RecordId) -> Template:
        ticket = await queries.get_ticket(ticket_id)
        return Template(
            "tickets/_form.html", context={"form": await ticket_form_context(ticket)}
        )

    @post("/{ticket_id:int}")
    async def edit_ticket(
        self, request: UserRequest, ticket_id: RecordId, data: FormData
    ) -> Template:
        return await TICKET_FORM.save(ticket_id, data, request.user.id)

    @post("/{ticket_id:int}/fields/{name:str}")
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
        try:
            await set_ticket_field(
                ticket_id,
                name,
                data.get(name),
                data.get(f"from_{name}"),
                request.user.id,
            )
        except (EditConflict, FieldError) as error:
            return await refused_change(ticket_id, error)
        return Response(b"", status_code=204)

    @post("/{ticket_id:int}/comments")
    async def comment(
        self, request: UserRequest, ticket_id: RecordId, data: FormData
    ) -> Template:
        await add_comment("ticket", ticket_id, data.get("body", ""), request.user.id)
        return Template(
            "comments/_form.html", context={"action": f"/tickets/{ticket_id}/comments"}
        )


async def refused_change(ticket_id: int, error: EditConflict | FieldError) -> Template:
    """Put the card back as the server has it and explain why the change failed."""
    ticket = await queries.get_ticket(ticket_id)
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
        context={"ticket": ticket, "message": message},
        status_code=409,
    )


async def ticket_form_context(
    ticket: dict[str, Any],
    typed: dict[str, Any] | None = None,
    conflicts: list[Conflict] | None = None,
    error: FieldError | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    people = await people_choices(keep=[ticket["assignee"]])
    return {
        "ticket": ticket,
        **edit_form_state(ticket, EDITABLE, typed, conflicts, error, saved),
        "statuses": STATUSES,
        "priorities": PRIORITIES,
        "channels": CHANNELS,
        **people,
        "describe": value_labels({"assignee": people["users"]}),
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
