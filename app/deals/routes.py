"""Pipeline board and deal pages."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Response, Template

from app.auth.service import CurrentUser
from app.boards import BoardFilter, Cursor
from app.comments.service import add_comment, timeline
from app.deals import queries
from app.deals.service import (
    EDITABLE,
    create_deal,
    move_deal,
    parse_deal_field,
    update_deal,
)
from app.errors import EditConflict, FieldError
from app.fields import reference
from app.merge import Conflict
from app.people import people_choices
from app.web.forms import (
    EditForm,
    FormData,
    RecordId,
    edit_form_state,
    value_labels,
)
from app.web.pages import live_context

UserRequest = Request[CurrentUser, Any, Any]


class PipelineController(Controller):
    path = "/pipelines"

    @get("/")
    async def first_pipeline(self) -> Redirect:
        pipelines = await queries.list_pipelines()
        if not pipelines:
            return Redirect("/import")
        return Redirect(f"/pipelines/{pipelines[0]['id']}")

    @get("/{pipeline_id:int}")
    async def board_page(
        self,
        pipeline_id: RecordId,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        board_filter = BoardFilter.parse(person, team)
        live = await live_context([f"pipeline:{pipeline_id}"], board_filter.key)
        board = await queries.get_board(pipeline_id, board_filter)
        return Template(
            "deals/board.html",
            context={
                "board": board,
                "pipelines": await queries.list_pipelines(),
                "stages": [column.stage for column in board.columns],
                **await people_choices(),
                **live,
            },
        )

    @get("/{pipeline_id:int}/board")
    async def board_fragment(
        self,
        pipeline_id: RecordId,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        board = await queries.get_board(pipeline_id, BoardFilter.parse(person, team))
        return Template(
            "deals/_board.html",
            context={
                "board": board,
                "stages": [column.stage for column in board.columns],
            },
        )

    @get("/{pipeline_id:int}/stages/{stage_id:int}/cards")
    async def column_page(
        self,
        pipeline_id: RecordId,
        stage_id: RecordId,
        after: FromQuery[str | None] = None,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        board_filter = BoardFilter.parse(person, team)
        cards, next_cursor = await queries.column_cards(
            pipeline_id, stage_id, board_filter, Cursor.parse(after)
        )
        return Template(
            "deals/_cards.html",
            context={
                "cards": cards,
                "stages": await queries.list_stages(pipeline_id),
                "next_cursor": next_cursor,
                "pipeline_id": pipeline_id,
                "stage_id": stage_id,
                "filter_key": board_filter.key,
            },
        )


class DealController(Controller):
    path = "/deals"

    @get("/{deal_id:int}")
    async def deal_page(self, deal_id: RecordId) -> Template:
        live = await live_context([f"deal:{deal_id}"])
        deal = await queries.get_deal(deal_id)
        return Template(
            "deals/detail.html",
            context={
                "deal": deal,
                "form": await deal_form_context(deal),
                "comments": await timeline("deal", deal_id),
                **live,
            },
        )

    @get("/{deal_id:int}/form")
    async def deal_form(self, deal_id: RecordId) -> Template:
        deal = await queries.get_deal(deal_id)
        return Template(
            "deals/_form.html", context={"form": await deal_form_context(deal)}
        )

    @post("/{deal_id:int}")
    async def edit_deal(
        self, request: UserRequest, deal_id: RecordId, data: FormData
    ) -> Template:
        return await DEAL_FORM.save(deal_id, data, request.user.id)

    @post("/{deal_id:int}/stage")
    async def move(
        self, request: UserRequest, deal_id: RecordId, data: FormData
    ) -> Response:
        to_stage = reference("stage", data.get("stage"))
        from_stage = reference("from_stage", data.get("from_stage"))
        if to_stage is None:
            raise FieldError("stage", data.get("stage"), "must be chosen")
        try:
            await move_deal(deal_id, to_stage, from_stage or 0, request.user.id)
        except (EditConflict, FieldError) as error:
            return await refused_move(deal_id, error)
        return Response(b"", status_code=204)

    @post("/{deal_id:int}/comments")
    async def comment(
        self, request: UserRequest, deal_id: RecordId, data: FormData
    ) -> Template:
        await add_comment("deal", deal_id, data.get("body", ""), request.user.id)
        return Template(
            "comments/_form.html", context={"action": f"/deals/{deal_id}/comments"}
        )

    @get("/new")
    async def new_deal_page(self, pipeline: FromQuery[str | None] = None) -> Template:
        pipeline_id = reference("pipeline", pipeline)
        return Template(
            "deals/new.html", context=await new_deal_context(pipeline_id, {}, None)
        )

    @post("/")
    async def create(self, request: UserRequest, data: FormData) -> Template | Redirect:
        try:
            deal_id = await create_deal(data, request.user.id)
        except FieldError as error:
            pipeline = (
                reference("pipeline", data.get("pipeline"))
                if data.get("pipeline")
                else None
            )
            return Template(
                "deals/new.html",
                context=await new_deal_context(pipeline, data, error),
                status_code=422,
            )
        return Redirect(f"/deals/{deal_id}")


async def refused_move(deal_id: int, error: EditConflict | FieldError) -> Template:
    """Put the card back where the server has it and explain why the move failed."""
    deal = await queries.get_deal(deal_id)
    if isinstance(error, EditConflict):
        conflict: Conflict = error.conflicts[0]
        who = conflict.changed_by or "Someone"
        message = f"{who} moved “{deal['name']}” to {deal['stage_name']} meanwhile."
    else:
        message = error.message
    return Template(
        "deals/_move_refused.html",
        context={
            "deal": deal,
            "stages": await queries.list_stages(deal["pipeline"]),
            "message": message,
        },
        status_code=409,
    )


async def deal_form_context(
    deal: dict[str, Any],
    typed: dict[str, Any] | None = None,
    conflicts: list[Conflict] | None = None,
    error: FieldError | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    stages = await queries.list_stages(deal["pipeline"])
    people = await people_choices(keep=[deal["owner"]])
    return {
        "deal": deal,
        **edit_form_state(deal, EDITABLE, typed, conflicts, error, saved),
        "stages": stages,
        **people,
        "describe": value_labels({"stage": stages, "owner": people["users"]}),
    }


async def new_deal_context(
    pipeline_id: int | None, typed: dict[str, Any], error: FieldError | None
) -> dict[str, Any]:
    pipelines = await queries.list_pipelines()
    if pipeline_id is None and pipelines:
        pipeline_id = pipelines[0]["id"]
    elif pipeline_id is not None:
        await queries.get_pipeline(pipeline_id)
    return {
        "pipelines": pipelines,
        "pipeline_id": pipeline_id,
        "stages": await queries.list_stages(pipeline_id) if pipeline_id else [],
        "values": typed,
        "error": error,
        **await people_choices(),
    }


DEAL_FORM = EditForm(
    record_type="deal",
    template="deals/_form.html",
    editable=EDITABLE,
    parse=parse_deal_field,
    update=update_deal,
    load=queries.get_deal,
    context=deal_form_context,
)
