"""Pipeline board and deal pages."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from app.access.guards import SIGNED_IN, permission
from app.access.permissions import Access
from app.access.scopes import check_writable, redact, require_record
from app.auth.service import CurrentUser
from app.boards import BoardFilter, Cursor
from app.comments.pages import comment_context, post_comment
from app.deals import queries
from app.deals.list_page import deal_list_page
from app.deals.listing import DealListFilter
from app.deals.service import (
    EDITABLE,
    REQUIRABLE,
    MissingFields,
    check_readable_references,
    create_deal,
    field_list,
    move_deal,
    owner_team,
    parse_deal_field,
    update_deal,
)
from app.errors import EditConflict, FieldError
from app.fields import reference
from app.forecast.scores import stored_chance
from app.leads.conversion import origin_leads
from app.merge import Conflict, changed_values
from app.pagination import parse_search, reject_unknown_query
from app.people import people_choices
from app.tasks.routes import task_context
from app.web.deletion import delete_context
from app.web.forms import (
    EditForm,
    FormData,
    RecordId,
    edit_form_state,
    form_edits,
    form_fields,
    value_labels,
)
from app.web.pages import live_context

UserRequest = Request[CurrentUser, Any, Any]

logger = logging.getLogger(__name__)


class PipelineController(Controller):
    path = "/pipelines"

    @get("/", opt={"permission": SIGNED_IN})
    async def first_pipeline(self) -> Redirect:
        pipelines = await queries.list_pipelines()
        if not pipelines:
            return Redirect("/import")
        return Redirect(f"/pipelines/{pipelines[0]['id']}")

    @get(
        "/{pipeline_id:int}",
        opt=permission("deal", "read"),
        before_request=reject_unknown_query,
    )
    async def board_page(
        self,
        request: UserRequest,
        pipeline_id: RecordId,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        access = request.user.access
        board_filter = BoardFilter.parse(person, team)
        board_filter.check_visible(access, "deal", "owner")
        live = await live_context([f"pipeline:{pipeline_id}"], board_filter.key)
        board = await queries.get_board(pipeline_id, board_filter, access)
        return Template(
            "deals/board.html",
            context={
                "board": board,
                "pipelines": await queries.list_pipelines(),
                "stages": [column.stage for column in board.columns],
                "access": access,
                **await people_choices(),
                **live,
            },
        )

    @get(
        "/{pipeline_id:int}/board",
        opt=permission("deal", "read"),
        before_request=reject_unknown_query,
    )
    async def board_fragment(
        self,
        request: UserRequest,
        pipeline_id: RecordId,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        access = request.user.access
        board_filter = BoardFilter.parse(person, team)
        board_filter.check_visible(access, "deal", "owner")
        board = await queries.get_board(pipeline_id, board_filter, access)
        return Template(
            "deals/_board.html",
            context={
                "board": board,
                "stages": [column.stage for column in board.columns],
                "access": access,
            },
        )

    @get(
        "/{pipeline_id:int}/stages/{stage_id:int}/cards",
        opt=permission("deal", "read"),
        before_request=reject_unknown_query,
    )
    async def column_page(
        self,
        request: UserRequest,
        pipeline_id: RecordId,
        stage_id: RecordId,
        after: FromQuery[str | None] = None,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
    ) -> Template:
        board_filter = BoardFilter.parse(person, team)
        board_filter.check_visible(request.user.access, "deal", "owner")
        cards, next_cursor = await queries.column_cards(
            pipeline_id,
            stage_id,
            board_filter,
            Cursor.parse(after),
            access=request.user.access,
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
                "access": request.user.access,
            },
        )


class DealController(Controller):
    path = "/deals"

    @get("/", opt=permission("deal", "read"), before_request=reject_unknown_query)
    async def deal_list(
        self,
        request: UserRequest,
        q: FromQuery[str | None] = None,
        pipeline: FromQuery[str | None] = None,
        stage: FromQuery[str | None] = None,
        person: FromQuery[str | None] = None,
        team: FromQuery[str | None] = None,
        close_from: FromQuery[str | None] = None,
        close_to: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        sort: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
    ) -> Template:
        """List deals (``app.deals.list_page``). ``person`` is the owner,
        ``status`` open, won or lost, and ``sort`` a column, descending after -."""
        deal_filter = DealListFilter.parse(
            parse_search(q),
            pipeline,
            stage,
            person,
            team,
            close_from,
            close_to,
            status,
            sort,
        )
        return await deal_list_page(request.user.access, deal_filter, page, size)

    @get("/{deal_id:int}", opt=permission("deal", "read"))
    async def deal_page(self, request: UserRequest, deal_id: RecordId) -> Template:
        access = request.user.access
        live = await live_context([f"deal:{deal_id}"])
        deal = await load_deal(deal_id, access)
        return Template(
            "deals/detail.html",
            context={
                "deal": deal,
                "chance": await stored_chance(deal_id),
                "form": await deal_form_context(deal, access),
                "access": access,
                **await comment_context("deal", deal, access),
                "origin": await origin_leads("deal", deal_id, access),
                **await task_context("deal", deal, access),
                **await delete_context("deal", deal, access),
                **live,
            },
        )

    @get("/{deal_id:int}/form", opt=permission("deal", "edit"))
    async def deal_form(self, request: UserRequest, deal_id: RecordId) -> Template:
        return await DEAL_FORM.render(deal_id, request.user.access)

    @post("/{deal_id:int}", opt=permission("deal", "edit"))
    async def edit_deal(
        self, request: UserRequest, deal_id: RecordId, data: FormData
    ) -> Template:
        return await DEAL_FORM.save(deal_id, data, request.user.id, request.user.access)

    @post("/{deal_id:int}/stage", opt=permission("deal", "edit"))
    async def move(
        self, request: UserRequest, deal_id: RecordId, data: FormData
    ) -> Response:
        """Move a deal, with the fields its new stage requires when the post
        comes from the entry form.

        A move into a stage whose required fields are empty returns that
        form (422). A move that is no longer possible puts the card back (409).
        """
        access = request.user.access
        await load_deal(deal_id, access, "edit")
        check_writable(access, "deal", ["stage"])
        to_stage = reference("stage", data.get("stage"))
        from_stage = reference("from_stage", data.get("from_stage"))
        if to_stage is None:
            raise FieldError("stage", data.get("stage"), "must be chosen")
        filled = [name for name in REQUIRABLE if name in data]
        try:
            check_writable(access, "deal", filled)
            edits = form_edits(data, tuple(filled), parse_deal_field)
            await check_readable_references(access, changed_values(edits), deal_id)
            await move_deal(deal_id, to_stage, from_stage or 0, request.user.id, edits)
        except MissingFields as error:
            return await entry_form(deal_id, to_stage, error, access, data, None)
        except FieldError as error:
            if error.field in filled:
                logger.info(
                    "stage entry form rejected deal_id=%s user_id=%s field=%s",
                    deal_id,
                    request.user.id,
                    error.field,
                )
                return await entry_form(deal_id, to_stage, None, access, data, error)
            return await refused_move(deal_id, error, access)
        except EditConflict as error:
            return await refused_move(deal_id, error, access)
        return Response(b"", status_code=204)

    @get(
        "/{deal_id:int}/entry-choices/{field_name:str}", opt=permission("deal", "edit")
    )
    async def entry_choice_options(
        self,
        request: UserRequest,
        deal_id: RecordId,
        field_name: FromPath[str],
        search: FromQuery[str | None] = None,
        optional: FromQuery[str | None] = None,
    ) -> Template:
        """The options of an account, contact or product picker, in the entry
        form or the edit form.

        The picker sends its chosen id under the field's name, and that
        option stays chosen. ``optional`` makes the empty option read "None"
        instead of "Choose…".
        """
        if field_name not in queries.CHOICE_SQL:
            raise FieldError("field", field_name, "has no list of choices")
        access = request.user.access
        deal = await load_deal(deal_id, access, "edit")
        selected = request.query_params.get(field_name) or ""
        choices = await picker_choices(
            field_name, parse_search(search), selected, deal, access
        )
        return Template(
            "deals/_entry_options.html",
            context={
                "choices": choices,
                "field": field_name,
                "selected": selected,
                "optional": bool(optional),
            },
        )

    @post("/{deal_id:int}/comments", opt=permission("comment", "create"))
    async def comment(
        self, request: UserRequest, deal_id: RecordId, data: FormData
    ) -> Template:
        deal = await load_deal(deal_id, request.user.access)
        return await post_comment("deal", deal, data, request.user)

    @get("/new", opt=permission("deal", "create"))
    async def new_deal_page(
        self, request: UserRequest, pipeline: FromQuery[str | None] = None
    ) -> Template:
        pipeline_id = reference("pipeline", pipeline)
        return Template(
            "deals/new.html",
            context=await new_deal_context(pipeline_id, {}, None, request.user.access),
        )

    @post("/", opt=permission("deal", "create"))
    async def create(self, request: UserRequest, data: FormData) -> Template | Redirect:
        access = request.user.access
        try:
            check_writable(access, "deal", [name for name in EDITABLE if name in data])
            await check_create_scope(data, request.user)
            references = {
                name: parse_deal_field(name, data.get(name))
                for name in queries.CHOICE_SQL
            }
            await check_readable_references(access, references)
            deal_id = await create_deal(data, request.user.id)
        except FieldError as error:
            pipeline = (
                reference("pipeline", data.get("pipeline"))
                if data.get("pipeline")
                else None
            )
            return Template(
                "deals/new.html",
                context=await new_deal_context(pipeline, data, error, access),
                status_code=422,
            )
        return Redirect(f"/deals/{deal_id}")


async def load_deal(
    deal_id: int, access: Access, action: str = "read"
) -> dict[str, Any]:
    """Load a deal the viewer may read, without the fields hidden from them.

    Raises NotFound outside the read scope and 403 when ``action`` is not
    allowed on the deal.
    """
    deal = await queries.get_deal(deal_id)
    require_record(access, "deal", action, deal)
    redacted = redact(access, "deal", deal)
    assert redacted is not None
    return redacted


async def check_create_scope(data: dict[str, Any], user: CurrentUser) -> None:
    """Reject a new deal that would fall outside the viewer's create scope."""
    owner = reference("owner", data.get("owner")) or user.id
    team = reference("team", data.get("team")) or await owner_team(owner)
    if not user.access.permits("deal", "create", owner, [team]):
        scope = user.access.scope("deal", "create")
        reason = "must be you" if scope == "own" else "must be in one of your teams"
        raise FieldError("owner", data.get("owner") or owner, reason)


async def entry_form(
    deal_id: int,
    to_stage: int,
    missing: MissingFields | None,
    access: Access,
    typed: dict[str, Any],
    error: FieldError | None,
) -> Template:
    """Render the form that requests the fields a stage requires.

    ``missing`` is the error that rejected the move. Without it, a value
    typed in the form was invalid, and the form shows the fields it showed.
    """
    deal = await load_deal(deal_id, access)
    if missing is not None:
        names = missing.missing
        stage_name = missing.stage_name
    else:
        names = [name for name in REQUIRABLE if name in typed]
        stage_name = next(
            (
                stage["name"]
                for stage in await queries.list_stages(deal["pipeline"])
                if stage["id"] == to_stage
            ),
            str(to_stage),
        )
    # The form lists a field the viewer may not set without an input for it.
    locked = [name for name in names if not access.can_write("deal", name)]
    choices = {}
    for name in names:
        if name in queries.CHOICE_SQL and name not in locked:
            selected = str(typed.get(name) or "")
            choices[name] = await picker_choices(name, "", selected, deal, access)
    return Template(
        "deals/_entry_form.html",
        context={
            "deal": deal,
            "to_stage": to_stage,
            "from_stage": typed.get("from_stage") or deal["stage"],
            "stage_name": stage_name,
            "title": quoted_name(deal, access),
            "fields": names,
            "needs": field_list(names),
            "labels": REQUIRABLE,
            "locked": locked,
            "choices": choices,
            "values": typed,
            "error": error,
            **await people_choices(),
        },
        status_code=422,
    )


def quoted_name(deal: dict[str, Any], access: Access) -> str:
    """Name a deal in a sentence: its name in quotes, or "this deal" when the
    name is hidden from the viewer."""
    if access.can_see("deal", "name"):
        return f"“{deal['name']}”"
    return "this deal"


async def refused_move(
    deal_id: int, error: EditConflict | FieldError, access: Access
) -> Template:
    """Put the card back where the server has it and explain why the move failed."""
    deal = await load_deal(deal_id, access)
    if isinstance(error, EditConflict):
        conflict: Conflict = error.conflicts[0]
        who = conflict.changed_by or "Someone"
        title = quoted_name(deal, access)
        message = f"{who} moved {title} to {deal['stage_name']} meanwhile."
    else:
        message = error.message
    return Template(
        "deals/_move_refused.html",
        context={
            "deal": deal,
            "stages": await queries.list_stages(deal["pipeline"]),
            "message": message,
            "access": access,
        },
        status_code=409,
    )


async def deal_form_context(
    deal: dict[str, Any],
    access: Access,
    typed: dict[str, Any] | None = None,
    conflicts: list[Conflict] | None = None,
    error: FieldError | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    """Build the deal form's context; a viewer who may not edit gets none."""
    if not access.permits("deal", "edit", deal["owner"], [deal["team"]]):
        return {"deal": deal, "editable": False, "markers": EDITABLE}
    stages = await queries.list_stages(deal["pipeline"])
    people = await people_choices(keep=[deal["owner"]])
    fields = form_fields(access, "deal", EDITABLE)
    state = edit_form_state(deal, fields["writable"], typed, conflicts, error, saved)
    pickers = {}
    labels = {"stage": stages, "owner": people["users"], "team": people["teams"]}
    for name in queries.CHOICE_SQL:
        if name not in fields["writable"]:
            continue
        shown = state["inputs"][name]
        selected = "" if shown is None else str(shown)
        pickers[name] = await picker_choices(name, "", selected, deal, access)
        # A conflict names the stored value too, which may not be listed.
        stored = {"id": deal[name], "name": deal[f"{name}_name"]}
        labels[name] = [*pickers[name], stored]
    return {
        "deal": deal,
        "editable": True,
        **fields,
        **state,
        "stages": stages,
        "pickers": pickers,
        **people,
        "describe": value_labels(labels),
    }


async def picker_choices(
    name: str, search: str, selected: str, deal: dict[str, Any], access: Access
) -> list[dict[str, Any]]:
    """Return the options of an account, contact or product picker.

    They are the first matches of ``search`` that the viewer may read, after
    the ``selected`` record when the matches leave it out, so that saving
    the form keeps it. The deal's stored record is kept even when the viewer
    may not read it, with the name the deal page shows.
    """
    choices = await queries.entry_choices(name, search, deal, access)
    try:
        chosen = reference(name, selected)
    except FieldError:
        chosen = None
    if chosen is None or any(choice["id"] == chosen for choice in choices):
        return choices
    if chosen == deal.get(name):
        return [{"id": chosen, "name": deal.get(f"{name}_name")}, *choices]
    found = await queries.entry_choices(name, "", deal, access, record_id=chosen)
    return [*found, *choices]


async def new_deal_context(
    pipeline_id: int | None,
    typed: dict[str, Any],
    error: FieldError | None,
    access: Access,
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
        "writable": form_fields(access, "deal", EDITABLE)["writable"],
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
    check=check_readable_references,
)
