"""Assignment pages: each team's strategy and capacities, and agents' away toggle."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, SIGNED_IN, admin_only
from app.access.service import list_teams
from app.assignment.service import (
    PolicyInput,
    get_team_policy,
    is_away,
    parse_capacity,
    save_team_policy,
    set_away,
)
from app.assignment.tables import STRATEGIES
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.fields import reference
from app.pagination import PageRequest, reject_unknown_query
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]


def policy_from_form(form: FormMultiDict) -> PolicyInput:
    """Read the team form; ``capacity.<user id>`` fields carry the capacities
    of the members shown on the page, empty or 0 for the team's default."""
    capacities: dict[int, int] = {}
    for key, value in form.multi_items():
        kind, _, raw_id = key.partition(".")
        if kind != "capacity":
            continue
        user_id = reference("capacity", raw_id)
        if user_id is not None:
            capacities[user_id] = parse_capacity(f"capacity of user {user_id}", value)
    return PolicyInput(
        strategy=str(form.get("strategy", "")),
        require_online=form.get("require_online") == "on",
        default_capacity=parse_capacity(
            "default_capacity", str(form.get("default_capacity", ""))
        ),
        capacities=capacities,
    )


class AssignmentAdminController(Controller):
    path = "/admin/assignment"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/", before_request=reject_unknown_query)
    async def teams_page(self, page: FromQuery[str | None] = None) -> Template:
        paging = PageRequest.parse(page, path="/admin/assignment")
        return Template(
            "assignment/teams.html",
            context={"teams": await list_teams(paging), "section": "admin"},
        )

    @get("/teams/{team_id:int}")
    async def team_page(
        self, team_id: RecordId, page: FromQuery[str | None] = None
    ) -> Template:
        return await team_form(team_id, page, None, None)

    @post("/teams/{team_id:int}")
    async def save_team(
        self,
        request: UserRequest,
        team_id: RecordId,
        page: FromQuery[str | None] = None,
    ) -> Template | Redirect:
        form = await request.form()
        try:
            await save_team_policy(team_id, policy_from_form(form), request.user.id)
        except FieldError as error:
            logger.info(
                "assignment policy rejected team_id=%s user_id=%s field=%s",
                team_id,
                request.user.id,
                error.field,
            )
            return await team_form(team_id, page, error, form)
        suffix = f"&page={page}" if page else ""
        return Redirect(f"/admin/assignment/teams/{team_id}?saved=1{suffix}")


async def team_form(
    team_id: int,
    page: str | None,
    error: FieldError | None,
    form: FormMultiDict | None,
) -> Template:
    paging = PageRequest.parse(page, path=f"/admin/assignment/teams/{team_id}")
    context = await get_team_policy(team_id, paging)
    if form is not None:
        # Show what was typed, so the error can be fixed in place.
        context["policy"] = {
            "strategy": form.get("strategy", ""),
            "require_online": form.get("require_online") == "on",
            "default_capacity": form.get("default_capacity", ""),
        }
    return Template(
        "assignment/team.html",
        context={
            **context,
            "strategies": STRATEGIES,
            "error": error,
            "page": page,
            "section": "admin",
        },
        status_code=422 if error else 200,
    )


class AvailabilityController(Controller):
    path = "/availability"
    opt = {"permission": SIGNED_IN}

    @get("/")
    async def availability_page(self, request: UserRequest) -> Template:
        return Template(
            "assignment/availability.html",
            context={"away": await is_away(request.user.id)},
        )

    @post("/")
    async def set_availability(self, request: UserRequest) -> Redirect:
        form = await request.form()
        away = form.get("away") == "1"
        await set_away(request.user.id, away)
        return Redirect("/availability")
