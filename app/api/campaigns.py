"""Email campaigns in the API: list, read, create, change, delete, schedule
and cancel.

A campaign carries a version as its ETag, and PATCH needs
``If-Match: <version>`` (428 without it, 412 when the campaign moved on) or
``If-Match: *``.
Schedule and cancel take no If-Match.
The campaign's state limits the rest. It can be changed or scheduled only
while it is a draft or scheduled, cancelled until it has been sent, and
deleted only as a draft. Any other request returns 409 Conflict.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.enums import RequestEncodingType
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import Body

from app import fields
from app.access.guards import permission
from app.api.common import (
    ApiRequest,
    CursorQuery,
    IfMatch,
    LimitQuery,
    Listing,
    if_match_target,
    item_response,
    listing_page,
    parse_optional_version,
    parse_version,
    problem_responses,
    sort_parameter,
    text_parameter,
)
from app.api.problems import caller, problem
from app.campaigns.service import (
    CampaignInput,
    CampaignStateError,
    campaign_stats,
    cancel_campaign,
    create_campaign,
    delete_campaign,
    get_campaign,
    schedule_campaign,
    update_campaign,
)
from app.campaigns.tables import AUDIENCES, CAMPAIGN_STATES, Campaign
from app.errors import FieldError
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "id, version, name, audience, state, send_at, rate_per_minute, "
    "influence_days, created_by, created_at, updated_at, started_at, finished_at"
)
DETAIL_FIELDS = (*SUMMARY_COLUMNS.split(", "), "segment", "subject", "body")
INPUT_FIELDS = (
    "name",
    "audience",
    "segment",
    "subject",
    "body",
    "rate_per_minute",
    "influence_days",
)
TEXT_FIELDS = ("name", "audience", "subject", "body")
NUMBER_FIELDS = ("rate_per_minute", "influence_days")
# The recipient counts a read returns, from app.campaigns.service.campaign_stats.
STAT_NAMES = ("total", "sent", "bounced", "replied", "unsubscribed")
TAGS = ["campaigns"]
CAMPAIGNS = Listing(
    Campaign,
    f"SELECT {SUMMARY_COLUMNS} FROM campaign c",
    "c",
    {
        "id": "integer",
        "name": "text",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
    },
)
CampaignSort = Annotated[str | None, sort_parameter(CAMPAIGNS.sorts)]
StateQuery = Annotated[
    str | None,
    text_parameter(
        "Only campaigns in this state.",
        # ``state`` is a reserved argument name of Litestar handlers.
        name="state",
        type=OpenAPIType.STRING,
        enum=list(CAMPAIGN_STATES),
    ),
]
AudienceQuery = Annotated[
    str | None,
    text_parameter(
        "Only campaigns to this audience.",
        type=OpenAPIType.STRING,
        enum=list(AUDIENCES),
    ),
]


def on_state_conflict(
    request: Request[Any, Any, Any], error: CampaignStateError
) -> Response[dict[str, Any]]:
    user_id, key_id = caller(request)
    logger.info(
        "api campaign change rejected path=%s user_id=%s key_id=%s state=%s",
        request.url.path,
        user_id,
        key_id,
        error.value,
    )
    return problem(request, 409, error.message, field=error.field, value=error.value)


# A route-level handler takes precedence over the router's FieldError handler,
# which would return 422.
STATE_CONFLICT: dict[int | type[Exception], Any] = {
    CampaignStateError: on_state_conflict
}


def campaign_input(data: dict[str, Any]) -> CampaignInput:
    """Check a request body's names and types; the service checks the values."""
    for name, value in data.items():
        if name not in INPUT_FIELDS:
            raise FieldError(
                name,
                value,
                f"is not a campaign field, so set only {', '.join(INPUT_FIELDS)}",
            )
        if name in TEXT_FIELDS and value is not None and not isinstance(value, str):
            raise FieldError(name, value, "must be a string")
        if name in NUMBER_FIELDS and (
            isinstance(value, bool) or not isinstance(value, int | str | None)
        ):
            raise FieldError(name, value, "must be a whole number")
    return CampaignInput(**data)


def present(row: dict[str, Any]) -> dict[str, Any]:
    body = {name: row[name] for name in DETAIL_FIELDS}
    # Raw queries return JSONB columns as JSON text.
    if isinstance(body["segment"], str):
        body["segment"] = json.loads(body["segment"])
    return body


async def campaign_response(
    campaign_id: int, status: int = 200, location: str = ""
) -> Response[dict[str, Any]]:
    row = await get_campaign(campaign_id)
    stats = await campaign_stats(campaign_id)
    body = {**present(row), "stats": {name: stats[name] for name in STAT_NAMES}}
    return item_response(body, row["version"], status, location)


def body_annotation(creating: bool) -> Any:
    text = Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL])
    number = Schema(
        type=[OpenAPIType.INTEGER, OpenAPIType.STRING, OpenAPIType.NULL],
        description="A whole number from 1.",
    )
    schema: dict[str, Any] = {
        "type": OpenAPIType.OBJECT,
        "properties": {
            "name": text,
            "audience": Schema(
                type=[OpenAPIType.STRING, OpenAPIType.NULL],
                description=f"One of {', '.join(AUDIENCES)}, or contact without it.",
            ),
            "segment": Schema(
                description=(
                    'A condition group such as {"type": "group", "match": '
                    '"all", "items": []}, which selects every contact.'
                )
            ),
            "subject": text,
            "body": text,
            "rate_per_minute": number,
            "influence_days": number,
        },
        "additional_properties": False,
    }
    if creating:
        schema["required"] = ["name", "subject", "body"]
    return Annotated[
        dict[str, Any],
        Body(media_type=RequestEncodingType.JSON, schema_extra=schema),
    ]


ScheduleBody = Annotated[
    dict[str, Any] | None,
    Body(
        media_type=RequestEncodingType.JSON,
        schema_extra={
            "type": OpenAPIType.OBJECT,
            "properties": {
                "send_at": Schema(
                    type=[OpenAPIType.STRING, OpenAPIType.NULL],
                    format=OpenAPIFormat.DATE_TIME,
                    description="When to start sending, or now without it. A "
                    "time without an offset is UTC; one more than five minutes "
                    "past is rejected.",
                )
            },
            "additional_properties": False,
        },
    ),
]


@get(
    "/campaigns",
    opt=permission("campaign", "read"),
    operation_id="list_campaigns",
    responses=problem_responses(),
    summary="List campaigns",
    tags=TAGS,
)
async def list_campaigns(
    request: ApiRequest,
    state_filter: StateQuery = None,
    audience: AudienceQuery = None,
    sort: CampaignSort = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    conditions = []
    args: list[object] = []
    if state_filter is not None:
        conditions.append("c.state = {}")
        args.append(fields.choice("state", state_filter, CAMPAIGN_STATES))
    if audience is not None:
        conditions.append("c.audience = {}")
        args.append(fields.choice("audience", audience, AUDIENCES))
    query = {
        "state": state_filter,
        "audience": audience,
        "sort": sort,
        "cursor": cursor,
        "limit": limit,
    }
    return await listing_page(request, CAMPAIGNS, conditions, args, query)


@get(
    "/campaigns/{record_id:int}",
    opt=permission("campaign", "read"),
    operation_id="get_campaign",
    responses=problem_responses(404),
    summary="Read a campaign with its recipient counts",
    tags=TAGS,
)
async def get_one(record_id: RecordId) -> Response[dict[str, Any]]:
    return await campaign_response(record_id)


async def create_one(request: ApiRequest, data: Any) -> Response[dict[str, Any]]:
    campaign_id = await create_campaign(campaign_input(data), request.user.id)
    return await campaign_response(campaign_id, 201, f"/api/v1/campaigns/{campaign_id}")


create_one.__annotations__["data"] = body_annotation(creating=True)
create_route = post(
    "/campaigns",
    opt=permission("campaign", "create"),
    operation_id="create_campaign",
    responses=problem_responses(422),
    summary="Create a draft campaign",
    description="``name``, ``subject`` and ``body`` are required.",
    tags=TAGS,
)(create_one)


async def update_one(
    request: ApiRequest, record_id: RecordId, data: Any, if_match: IfMatch = None
) -> Response[dict[str, Any]]:
    version = parse_version(if_match)
    changes = campaign_input(data)
    # Fields the body leaves out keep their values from this read. The service
    # checks the version again under the row lock, so a change made after
    # this read returns 412 rather than being overwritten. That holds for
    # If-Match: * too, which stands for the version this read finds.
    with if_match_target(if_match, "campaign", record_id):
        current = present(await get_campaign(record_id))
        merged = {
            name: getattr(changes, name) if name in data else current[name]
            for name in INPUT_FIELDS
        }
        expected = current["version"] if version is None else version
        await update_campaign(
            record_id, CampaignInput(**merged), request.user.id, expected
        )
    return await campaign_response(record_id)


update_one.__annotations__["data"] = body_annotation(creating=False)
update_route = patch(
    "/campaigns/{record_id:int}",
    opt=permission("campaign", "edit"),
    operation_id="update_campaign",
    responses=problem_responses(422, 404, 409, 412, 428),
    summary="Change fields of a draft or scheduled campaign",
    description="Change the given fields at the version in If-Match.",
    exception_handlers=STATE_CONFLICT,
    tags=TAGS,
)(update_one)


@delete(
    "/campaigns/{record_id:int}",
    opt=permission("campaign", "delete"),
    operation_id="delete_campaign",
    responses=problem_responses(422, 404, 409, 412),
    summary="Delete a draft campaign",
    description="With If-Match, only at that version (412 otherwise).",
    exception_handlers=STATE_CONFLICT,
    tags=TAGS,
)
async def delete_one(
    request: ApiRequest, record_id: RecordId, if_match: IfMatch = None
) -> None:
    with if_match_target(if_match, "campaign", record_id):
        await delete_campaign(
            record_id, request.user.id, parse_optional_version(if_match)
        )


@post(
    "/campaigns/{record_id:int}/schedule",
    opt=permission("campaign", "edit"),
    operation_id="schedule_campaign",
    responses=problem_responses(422, 404, 409),
    status_code=200,
    summary="Schedule a draft or scheduled campaign",
    description="The campaign starts sending at ``send_at``, or now without it.",
    exception_handlers=STATE_CONFLICT,
    tags=TAGS,
)
async def schedule_one(
    request: ApiRequest, record_id: RecordId, data: ScheduleBody = None
) -> Response[dict[str, Any]]:
    body = data or {}
    for name, value in body.items():
        if name != "send_at":
            raise FieldError(name, value, "is not a schedule field, so set send_at")
    send_at = body.get("send_at")
    if send_at is not None and not isinstance(send_at, str):
        raise FieldError("send_at", send_at, "must be a string")
    await schedule_campaign(record_id, send_at, request.user.id)
    return await campaign_response(record_id)


@post(
    "/campaigns/{record_id:int}/cancel",
    opt=permission("campaign", "edit"),
    operation_id="cancel_campaign",
    responses=problem_responses(422, 404, 409),
    status_code=200,
    summary="Cancel a campaign that has not been sent",
    description="A running sender stops before its next message.",
    exception_handlers=STATE_CONFLICT,
    tags=TAGS,
)
async def cancel_one(
    request: ApiRequest, record_id: RecordId
) -> Response[dict[str, Any]]:
    await cancel_campaign(record_id, request.user.id)
    return await campaign_response(record_id)


CAMPAIGN_ROUTES = [
    list_campaigns,
    get_one,
    create_route,
    update_route,
    delete_one,
    schedule_one,
    cancel_one,
]
