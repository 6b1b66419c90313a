"""Pipelines, stages, users and teams in the API.

Pipelines and stages may be read by anyone who may read deals, and created
or changed by administrators whose key has write scope on deals. A change
sends ``board.reload`` to the pipeline's board, as an import does, so open
boards show the new stages. Users and teams may be read with any valid key;
a user's email is shown to administrators and to the user themself only.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import asyncpg
from litestar import Response, delete, get, patch, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIType

from app import fields
from app.access.guards import ADMIN, SIGNED_IN, permission
from app.api.common import (
    KEY_SCOPE,
    ApiRequest,
    CursorQuery,
    IfMatch,
    JsonBody,
    LimitQuery,
    Listing,
    TeamQuery,
    delete_by_request,
    flag_parameter,
    id_parameter,
    if_match_target,
    item_response,
    listing_page,
    parse_flag,
    parse_version,
    problem_responses,
    sort_parameter,
    text_parameter,
)
from app.auth.tables import Team, User
from app.deals.service import check_requirable, in_requirable_order
from app.deals.tables import STAGE_KINDS, Pipeline, Stage
from app.errors import FieldError, NotFound, VersionMismatch
from app.events.service import change_set
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

READ_DEALS = permission("deal", "read")
# Administrators change pipelines, with a key that may write deals.
ADMIN_WRITE = {"permission": ADMIN, KEY_SCOPE: "deal:write"}
# Any valid key may read users and teams, as any signed-in user sees names.
ANY_KEY = {"permission": SIGNED_IN, KEY_SCOPE: ""}
PIPELINE_COLUMNS = "id, version, created_at, updated_at, name, position"
STAGE_COLUMNS = (
    "id, version, created_at, updated_at, pipeline, name, position, "
    "probability, kind, required_fields"
)
USER_COLUMNS = "id, name, email, team, active"
TEAM_COLUMNS = "id, name, region"
PIPELINE_FIELDS = ("name", "position")
STAGE_FIELDS = ("name", "position", "probability", "kind", "required_fields")
MAX_POSITION = 10_000

TRACKED_SORTS = {
    "id": "integer",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
PIPELINES = Listing(
    Pipeline,
    f"SELECT {PIPELINE_COLUMNS} FROM pipeline p",
    "p",
    {**TRACKED_SORTS, "name": "text", "position": "integer"},
)
STAGES = Listing(
    Stage,
    f"SELECT {STAGE_COLUMNS} FROM stage s",
    "s",
    {**TRACKED_SORTS, "name": "text", "position": "integer", "probability": "integer"},
)
# Sorting by email would tell other users' emails by their order.
USERS = Listing(
    User,
    f"SELECT {USER_COLUMNS} FROM app_user u",
    "u",
    {"id": "integer", "name": "text"},
)
TEAMS = Listing(
    Team,
    f"SELECT {TEAM_COLUMNS} FROM team t",
    "t",
    {"id": "integer", "name": "text", "region": "text"},
)
PipelineSort = Annotated[str | None, sort_parameter(PIPELINES.sorts)]
StageSort = Annotated[str | None, sort_parameter(STAGES.sorts)]
UserSort = Annotated[str | None, sort_parameter(USERS.sorts)]
TeamSort = Annotated[str | None, sort_parameter(TEAMS.sorts)]
PipelineQuery = Annotated[str | None, id_parameter("Only stages of this pipeline.")]
KindQuery = Annotated[
    str | None,
    text_parameter(
        "Only stages of this kind.", type=OpenAPIType.STRING, enum=list(STAGE_KINDS)
    ),
]
ActiveQuery = Annotated[
    str | None,
    flag_parameter("Only active users (true) or deactivated ones (false)."),
]
RegionQuery = Annotated[
    str | None,
    text_parameter(
        "Only teams of this region.", type=OpenAPIType.STRING, maxLength=120
    ),
]


def stage_conditions(
    pipeline: int | None, kind: str | None, args: list[object]
) -> list[str]:
    conditions = []
    if pipeline is not None:
        args.append(pipeline)
        conditions.append("s.pipeline = {}")
    if kind is not None:
        args.append(fields.choice("kind", kind, STAGE_KINDS))
        conditions.append("s.kind = {}")
    return conditions


def check_names(data: dict[str, Any], allowed: tuple[str, ...], kind: str) -> None:
    for name, value in data.items():
        if name not in allowed:
            raise FieldError(
                name, value, f"is not a {kind} field, so set only {', '.join(allowed)}"
            )


def whole_number(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(name, value, "must be a whole number")
    if not low <= value <= high:
        raise FieldError(name, value, f"must be from {low} to {high}")
    return value


def pipeline_values(data: dict[str, Any], creating: bool) -> dict[str, Any]:
    check_names(data, PIPELINE_FIELDS, "pipeline")
    values: dict[str, Any] = {}
    if "name" in data or creating:
        raw = data.get("name")
        if raw is not None and not isinstance(raw, str):
            raise FieldError("name", raw, "must be a string")
        values["name"] = fields.text("name", raw, required=True, max_length=200)
    if "position" in data:
        values["position"] = whole_number("position", data["position"], 0, MAX_POSITION)
    return values


def stage_values(data: dict[str, Any], creating: bool) -> dict[str, Any]:
    check_names(data, STAGE_FIELDS, "stage")
    values: dict[str, Any] = {}
    if "name" in data or creating:
        raw = data.get("name")
        if raw is not None and not isinstance(raw, str):
            raise FieldError("name", raw, "must be a string")
        values["name"] = fields.text("name", raw, required=True, max_length=120)
    if "position" in data:
        values["position"] = whole_number("position", data["position"], 0, MAX_POSITION)
    if "probability" in data:
        values["probability"] = whole_number("probability", data["probability"], 0, 100)
    if "kind" in data:
        raw = data["kind"]
        values["kind"] = fields.choice(
            "kind", raw if isinstance(raw, str) else str(raw), STAGE_KINDS
        )
    if "required_fields" in data:
        values["required_fields"] = required_fields(data["required_fields"])
    return values


def required_fields(raw: Any) -> list[str]:
    """Read a stage's ``required_fields``: a list of names from REQUIRABLE,
    stored in that order without repeats."""
    if not isinstance(raw, list):
        raise FieldError(
            "required_fields",
            raw,
            'must be a list of field names, such as ["amount", "close_date"]',
        )
    names = [
        check_requirable("required_fields", name, label="Required field")
        for name in raw
    ]
    return in_requirable_order(names)


async def load_pipeline(pipeline_id: int) -> dict[str, Any]:
    rows = await Pipeline.raw(
        f"SELECT {PIPELINE_COLUMNS} FROM pipeline WHERE id = {{}}", pipeline_id
    )
    if not rows:
        raise NotFound("pipeline", pipeline_id)
    return dict(rows[0])


async def load_stage(stage_id: int) -> dict[str, Any]:
    rows = await Stage.raw(
        f"SELECT {STAGE_COLUMNS} FROM stage WHERE id = {{}}", stage_id
    )
    if not rows:
        raise NotFound("stage", stage_id)
    return dict(rows[0])


async def write_row(
    table: str,
    record_id: int | None,
    values: dict[str, Any],
    expected_version: int | None,
    pipeline_id: int | None,
    actor_id: int,
) -> int:
    """Insert (``record_id`` None) or update a pipeline or stage row.

    The pipeline's board gets a ``board.reload`` event in the same
    transaction. Raises FieldError for a name that another row has, and
    VersionMismatch when an update's version differs.
    """
    kind = table
    try:
        async with change_set(actor_id) as changes:
            created = record_id is None
            if record_id is None:
                names = list(values)
                placeholders = ", ".join("{}" for _ in names)
                rows = await Pipeline.raw(
                    f"INSERT INTO {table} ({', '.join(names)}) "
                    f"VALUES ({placeholders}) RETURNING id",
                    *values.values(),
                )
                record_id = int(rows[0]["id"])
                audited = {name: [None, value] for name, value in values.items()}
            else:
                columns = ", ".join(["version", *values])
                locked = await Pipeline.raw(
                    f"SELECT {columns} FROM {table} WHERE id = {{}} FOR UPDATE",
                    record_id,
                )
                if not locked:
                    raise NotFound(kind, record_id)
                audited = {
                    name: [locked[0][name], value]
                    for name, value in values.items()
                    if locked[0][name] != value
                }
                current = locked[0]["version"]
                if expected_version is not None and current != expected_version:
                    raise VersionMismatch(kind, record_id, expected_version, current)
                assignments = ", ".join(f"{name} = {{}}" for name in values)
                await Pipeline.raw(
                    f"UPDATE {table} SET {assignments}{', ' if values else ''}"
                    "version = version + 1, updated_at = now() WHERE id = {}",
                    *values.values(),
                    record_id,
                )
            board = pipeline_id if pipeline_id is not None else record_id
            # The audit log records the row's change from this event.
            changes.add(
                f"{kind}.{'created' if created else 'updated'}",
                kind,
                record_id,
                [],
                audited,
            )
            changes.add(
                "board.reload",
                "pipeline",
                board,
                [f"pipeline:{board}"],
                {f"{kind}_id": record_id},
            )
    except asyncpg.UniqueViolationError:
        raise FieldError(
            "name", values.get("name"), f"is the name of another {kind}"
        ) from None
    logger.info(
        "%s saved %s_id=%s user_id=%s fields=%s",
        kind,
        kind,
        record_id,
        actor_id,
        sorted(values),
    )
    return record_id


@get(
    "/pipelines",
    opt=READ_DEALS,
    operation_id="list_pipelines",
    responses=problem_responses(),
    summary="List pipelines",
    tags=["pipelines"],
)
async def list_pipelines(
    request: ApiRequest,
    sort: PipelineSort = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    query = {"sort": sort, "cursor": cursor, "limit": limit}
    return await listing_page(request, PIPELINES, [], [], query)


@get(
    "/pipelines/{record_id:int}",
    opt=READ_DEALS,
    operation_id="get_pipeline",
    responses=problem_responses(404),
    summary="Read a pipeline",
    tags=["pipelines"],
)
async def get_pipeline(record_id: RecordId) -> Response[dict[str, Any]]:
    row = await load_pipeline(record_id)
    return item_response(row, row["version"])


@post(
    "/pipelines",
    opt=ADMIN_WRITE,
    operation_id="create_pipeline",
    responses=problem_responses(422),
    summary="Create a pipeline (administrators)",
    description="``name`` is required. Add its stages next.",
    tags=["pipelines"],
)
async def create_pipeline(
    request: ApiRequest, data: JsonBody
) -> Response[dict[str, Any]]:
    values = pipeline_values(data, creating=True)
    pipeline_id = await write_row("pipeline", None, values, None, None, request.user.id)
    row = await load_pipeline(pipeline_id)
    return item_response(row, row["version"], 201, f"/api/v1/pipelines/{pipeline_id}")


@patch(
    "/pipelines/{record_id:int}",
    opt=ADMIN_WRITE,
    operation_id="update_pipeline",
    responses=problem_responses(422, 404, 412, 428),
    summary="Change a pipeline (administrators)",
    tags=["pipelines"],
)
async def update_pipeline(
    request: ApiRequest,
    record_id: RecordId,
    data: JsonBody,
    if_match: IfMatch = None,
) -> Response[dict[str, Any]]:
    version = parse_version(if_match)
    values = pipeline_values(data, creating=False)
    with if_match_target(if_match, "pipeline", record_id):
        await write_row("pipeline", record_id, values, version, None, request.user.id)
    row = await load_pipeline(record_id)
    return item_response(row, row["version"])


@get(
    "/pipelines/{record_id:int}/stages",
    opt=READ_DEALS,
    operation_id="list_pipeline_stages",
    responses=problem_responses(404),
    summary="List the stages of a pipeline",
    tags=["pipelines"],
)
async def list_pipeline_stages(
    request: ApiRequest,
    record_id: RecordId,
    kind: KindQuery = None,
    sort: StageSort = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    await load_pipeline(record_id)
    args: list[object] = []
    conditions = stage_conditions(record_id, kind, args)
    query = {"kind": kind, "sort": sort, "cursor": cursor, "limit": limit}
    return await listing_page(request, STAGES, conditions, args, query)


@get(
    "/stages",
    opt=READ_DEALS,
    operation_id="list_stages",
    responses=problem_responses(),
    summary="List stages of every pipeline",
    tags=["pipelines"],
)
async def list_stages(
    request: ApiRequest,
    pipeline: PipelineQuery = None,
    kind: KindQuery = None,
    sort: StageSort = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    args: list[object] = []
    pipeline_id = fields.reference("pipeline", pipeline)
    conditions = stage_conditions(pipeline_id, kind, args)
    query = {
        "pipeline": pipeline,
        "kind": kind,
        "sort": sort,
        "cursor": cursor,
        "limit": limit,
    }
    return await listing_page(request, STAGES, conditions, args, query)


@post(
    "/pipelines/{record_id:int}/stages",
    opt=ADMIN_WRITE,
    operation_id="create_stage",
    responses=problem_responses(422, 404),
    summary="Add a stage to a pipeline (administrators)",
    description="``name`` is required, and ``kind`` is open, won or lost.",
    tags=["pipelines"],
)
async def create_stage(
    request: ApiRequest, record_id: RecordId, data: JsonBody
) -> Response[dict[str, Any]]:
    await load_pipeline(record_id)
    values = {"pipeline": record_id, **stage_values(data, creating=True)}
    stage_id = await write_row("stage", None, values, None, record_id, request.user.id)
    row = await load_stage(stage_id)
    return item_response(row, row["version"], 201, f"/api/v1/stages/{stage_id}")


@get(
    "/stages/{record_id:int}",
    opt=READ_DEALS,
    operation_id="get_stage",
    responses=problem_responses(404),
    summary="Read a stage",
    tags=["pipelines"],
)
async def get_stage(record_id: RecordId) -> Response[dict[str, Any]]:
    row = await load_stage(record_id)
    return item_response(row, row["version"])


@patch(
    "/stages/{record_id:int}",
    opt=ADMIN_WRITE,
    operation_id="update_stage",
    responses=problem_responses(422, 404, 412, 428),
    summary="Change a stage (administrators)",
    description=(
        "Change the given fields of a stage at the version in If-Match. "
        "``required_fields`` is the list of deal fields a deal must have to "
        "enter the stage, from amount, close_date, engage_date, owner, team, "
        "account, contact and product; an empty list requires none."
    ),
    tags=["pipelines"],
)
async def update_stage(
    request: ApiRequest,
    record_id: RecordId,
    data: JsonBody,
    if_match: IfMatch = None,
) -> Response[dict[str, Any]]:
    version = parse_version(if_match)
    with if_match_target(if_match, "stage", record_id):
        stage = await load_stage(record_id)
        values = stage_values(data, creating=False)
        await write_row(
            "stage", record_id, values, version, stage["pipeline"], request.user.id
        )
    row = await load_stage(record_id)
    return item_response(row, row["version"])


def delete_route(kind: str, summary: str) -> HTTPRouteHandler:
    """Build the DELETE route of a pipeline or a stage, which administrators call."""

    @delete(
        f"/{kind}s/{{record_id:int}}",
        opt=ADMIN_WRITE,
        operation_id=f"delete_{kind}",
        responses=problem_responses(422, 404, 409, 412),
        summary=summary,
        description=(
            f"With If-Match, only at that version (412 otherwise). A {kind} "
            "that deals are still in is not deleted (409, with the count in "
            "``dependents``)."
        ),
        tags=["pipelines"],
    )
    async def delete_row(
        request: ApiRequest, record_id: RecordId, if_match: IfMatch = None
    ) -> None:
        await delete_by_request(request, kind, record_id, if_match)

    return delete_row


delete_pipeline = delete_route(
    "pipeline", "Delete a pipeline and its stages (administrators)"
)
delete_stage = delete_route("stage", "Delete a stage (administrators)")


def present_user(request: ApiRequest, row: dict[str, Any]) -> dict[str, Any]:
    shown = {name: row[name] for name in ("id", "name", "team", "active")}
    if request.user.access.sees_personal_details(row["id"]):
        shown["email"] = row["email"]
    return shown


@get(
    "/users",
    opt=ANY_KEY,
    operation_id="list_users",
    responses=problem_responses(scoped=False),
    summary="List users",
    description="``email`` is present for administrators' keys and one's own row.",
    tags=["users"],
)
async def list_users(
    request: ApiRequest,
    team: TeamQuery = None,
    active: ActiveQuery = None,
    sort: UserSort = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    team_id = fields.reference("team", team)
    is_active = parse_flag("active", active)
    conditions = []
    args: list[object] = []
    if team_id is not None:
        conditions.append(
            '(u.team = {} OR u.id IN (SELECT "user" FROM team_member WHERE team = {}))'
        )
        args.extend([team_id, team_id])
    if is_active is not None:
        conditions.append("u.active = {}")
        args.append(is_active)
    query = {
        "team": team,
        "active": active,
        "sort": sort,
        "cursor": cursor,
        "limit": limit,
    }
    response = await listing_page(request, USERS, conditions, args, query)
    body = response.content
    body["data"] = [present_user(request, row) for row in body["data"]]
    return response


@get(
    "/users/{record_id:int}",
    opt=ANY_KEY,
    operation_id="get_user",
    responses=problem_responses(404, scoped=False),
    summary="Read a user",
    tags=["users"],
)
async def get_user(
    request: ApiRequest, record_id: RecordId
) -> Response[dict[str, Any]]:
    row = (
        await User.select(
            User.id, User.name, User.email, User.team, User.active, User.version
        )
        .where(User.id == record_id)
        .first()
    )
    if row is None:
        raise NotFound("user", record_id)
    return item_response(present_user(request, row), row["version"])


@get(
    "/teams",
    opt=ANY_KEY,
    operation_id="list_teams",
    responses=problem_responses(scoped=False),
    summary="List teams",
    tags=["teams"],
)
async def list_teams(
    request: ApiRequest,
    region: RegionQuery = None,
    sort: TeamSort = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    conditions = []
    args: list[object] = []
    if region is not None:
        conditions.append("t.region = {}")
        args.append(fields.text("region", region, max_length=120))
    query = {"region": region, "sort": sort, "cursor": cursor, "limit": limit}
    return await listing_page(request, TEAMS, conditions, args, query)


@get(
    "/teams/{record_id:int}",
    opt=ANY_KEY,
    operation_id="get_team",
    responses=problem_responses(404, scoped=False),
    summary="Read a team",
    tags=["teams"],
)
async def get_team(record_id: RecordId) -> Response[dict[str, Any]]:
    row = (
        await Team.select(Team.id, Team.name, Team.region, Team.version)
        .where(Team.id == record_id)
        .first()
    )
    if row is None:
        raise NotFound("team", record_id)
    version = row.pop("version")
    return item_response(row, version)


DIRECTORY_ROUTES = [
    list_pipelines,
    get_pipeline,
    create_pipeline,
    update_pipeline,
    delete_pipeline,
    list_pipeline_stages,
    create_stage,
    list_stages,
    get_stage,
    update_stage,
    delete_stage,
    list_users,
    get_user,
    list_teams,
    get_team,
]
