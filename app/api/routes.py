"""The JSON API under /api/v1: deals, tickets, accounts and contacts.

The other resources (comments, tasks, pipelines, users, teams, campaigns,
workflow rules) and the search have modules of their own, which the router
below joins.

Every record type gets the same five routes from ``record_routes``: list,
get, create, partial update and delete. An update needs
``If-Match: <version>`` (428 without it, 412 when the record moved on), or
``If-Match: *`` for whatever version the record is at (412 when it does not
exist). A delete takes If-Match optionally and checks it when sent. Every response
with a record carries the record's version as its ETag.

The list route's query parameters differ per type. Each type declares its
filters as ``ListFilter`` entries, and ``list_handler`` gives the generic
handler a signature with one query parameter per filter, so that Litestar
validates and documents them as if they were written out.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Response, Router, delete, get, patch, post
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import Body

from app.access.guards import permission
from app.api.auth import ApiKeyMiddleware
from app.api.campaigns import CAMPAIGN_ROUTES
from app.api.comments import COMMENT_ROUTES
from app.api.common import (
    BYPASS_PAGE_MIDDLEWARE,
    SECURITY_SCHEME,
    ApiRequest,
    CombineIfMatchLines,
    CursorQuery,
    IfMatch,
    JsonBody,
    LimitQuery,
    delete_by_request,
    id_query,
    if_match_target,
    item_response,
    page_response,
    parse_limit,
    parse_since,
    parse_version,
    problem_responses,
    query_parameter,
    sort_query,
)
from app.api.directory import DIRECTORY_ROUTES
from app.api.events import api_events
from app.api.problems import EXCEPTION_HANDLERS
from app.api.records import (
    Filters,
    Sort,
    create_record,
    list_records,
    next_link,
    read_record,
    update_record,
)
from app.api.resources import ACCOUNTS, CONTACTS, DEALS, LEADS, TICKETS, Resource
from app.api.rules import RULE_ROUTES
from app.api.search import SEARCH_ROUTES
from app.api.tasks import TASK_ROUTES
from app.deletion import DELETABLE
from app.fields import choice, reference, text
from app.leads.tables import STATUSES as LEAD_STATUSES
from app.tickets.tables import STATUSES
from app.web.forms import RecordId


@dataclass(frozen=True)
class ListFilter:
    """A list's query parameter ``name``, read by ``parse`` into ``Filters.target``.

    ``annotation`` documents it in the OpenAPI document.
    """

    name: str
    target: str
    parse: Callable[[str, str], Any]
    annotation: Any


def status_choice(name: str, raw: str) -> str:
    return choice(name, raw, STATUSES)


def lead_status_choice(name: str, raw: str) -> str:
    return choice(name, raw, LEAD_STATUSES)


def optional_text(name: str, raw: str) -> str | None:
    return text(name, raw) or None


OWNER = id_query("Only records owned by this user.")
TEAM = id_query("Only records of this team.")
FILTERS: dict[str, tuple[ListFilter, ...]] = {
    "deal": (
        ListFilter("owner", "person", reference, OWNER),
        ListFilter("team", "team", reference, TEAM),
        ListFilter(
            "pipeline", "pipeline", reference, id_query("Only deals of this pipeline.")
        ),
        ListFilter("stage", "status", reference, id_query("Only deals in this stage.")),
    ),
    "ticket": (
        ListFilter(
            "assignee", "person", reference, id_query("Only tickets of this assignee.")
        ),
        ListFilter("team", "team", reference, TEAM),
        ListFilter(
            "status",
            "status",
            status_choice,
            query_parameter(
                "Only tickets in this status.",
                type=OpenAPIType.STRING,
                enum=list(STATUSES),
            ),
        ),
    ),
    # An account's or contact's team is its owner's.
    "account": (
        ListFilter("owner", "person", reference, OWNER),
        ListFilter(
            "team", "team", reference, id_query("Only records of owners in this team.")
        ),
    ),
    "lead": (
        ListFilter("owner", "person", reference, OWNER),
        ListFilter(
            "team", "team", reference, id_query("Only records of owners in this team.")
        ),
        ListFilter(
            "status",
            "status",
            lead_status_choice,
            query_parameter(
                "Only leads in this status.",
                type=OpenAPIType.STRING,
                enum=list(LEAD_STATUSES),
            ),
        ),
    ),
    "contact": (
        ListFilter("owner", "person", reference, OWNER),
        ListFilter(
            "team", "team", reference, id_query("Only records of owners in this team.")
        ),
        ListFilter(
            "lifecycle_stage",
            "status",
            optional_text,
            query_parameter(
                "Only contacts at this lifecycle stage.",
                type=OpenAPIType.STRING,
                maxLength=300,
            ),
        ),
    ),
}
UPDATED_SINCE = query_parameter(
    "Only records changed at or after this time, with a time zone.",
    type=OpenAPIType.STRING,
    format=OpenAPIFormat.DATE_TIME,
)


def read_filters(resource: Resource, query: dict[str, str | None]) -> Filters:
    values: dict[str, Any] = {"updated_since": parse_since(query["updated_since"])}
    for item in FILTERS[resource.object_type]:
        raw = query[item.name]
        if raw:
            values[item.target] = item.parse(item.name, raw)
    return Filters(**values)


async def list_response(
    resource: Resource, request: ApiRequest, query: dict[str, str | None]
) -> Response[dict[str, Any]]:
    """List one page of ``resource`` and link to the next one."""
    filters = read_filters(resource, query)
    sort = Sort.parse(resource.sorts, query["sort"])
    limit = parse_limit(query["limit"])
    page = await list_records(
        resource, request.user, filters, sort, query["cursor"], limit
    )
    following = next_link(
        request.url.path, {**query, "limit": limit, "cursor": None}, page.next_cursor
    )
    access = request.user.access
    return page_response(
        [resource.present(access, row) for row in page.rows], following
    )


def list_handler(resource: Resource) -> HTTPRouteHandler:
    """Build the list route of ``resource``, with a query parameter per filter."""
    filters = FILTERS[resource.object_type]
    annotations = {item.name: item.annotation for item in filters}
    annotations.update(
        updated_since=UPDATED_SINCE,
        sort=sort_query(resource.sorts),
        cursor=CursorQuery,
        limit=LimitQuery,
    )

    async def list_many(request: ApiRequest, **query: str | None) -> Any:
        return await list_response(resource, request, query)

    parameters = [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY),
        *(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=annotation,
            )
            for name, annotation in annotations.items()
        ),
    ]
    list_many.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=Response[dict[str, Any]]
    )
    list_many.__annotations__ = {
        "request": ApiRequest,
        **annotations,
        "return": Response[dict[str, Any]],
    }
    list_many.__doc__ = (
        f"List the {resource.plural} the key's user may read, in the order "
        "``sort`` names, one page at a time."
    )
    return get(
        f"/{resource.plural}",
        opt=permission(resource.object_type, "read"),
        operation_id=f"list_{resource.plural}",
        responses=problem_responses(),
        tags=[resource.plural],
    )(list_many)


# Every field takes text, a number or null, and the field's own rules then
# apply (an id, a decimal number, a date), as on the pages' forms.
FIELD_TYPES = [OpenAPIType.STRING, OpenAPIType.NUMBER, OpenAPIType.NULL]
ID_FIELDS = frozenset(
    {"owner", "team", "stage", "pipeline", "account", "contact", "product"}
    | {"assignee"}
    | {"requester", "parent"}
)
FIELD_HELP = {
    "amount": "A decimal number such as 1200.50.",
    "annual_revenue": "A decimal number such as 1200.50.",
    "employees": "A whole number.",
    "close_date": "A date such as 2026-12-31.",
    "engage_date": "A date such as 2026-12-31.",
    "forecast_category": (
        "pipeline, best_case, commit or omitted; null or empty for the "
        "category the deal's stage implies."
    ),
}
# The fields a create must send, where one field alone is required.
REQUIRED_ON_CREATE = {
    "deal": ["name", "pipeline", "stage"],
    "ticket": ["subject"],
    "account": ["name"],
}


def field_schema(name: str) -> Schema:
    if name in ID_FIELDS:
        return Schema(type=FIELD_TYPES, description=f"The id of the {name}.")
    return Schema(type=FIELD_TYPES, description=FIELD_HELP.get(name))


def body_annotation(resource: Resource, creating: bool) -> Any:
    """Type a create or update body, documenting the fields it may set."""
    names = (*resource.editable, *(resource.create_only if creating else ()))
    schema: dict[str, Any] = {
        "type": OpenAPIType.OBJECT,
        "properties": {name: field_schema(name) for name in names},
        "additional_properties": False,
    }
    required = REQUIRED_ON_CREATE.get(resource.object_type)
    if creating and required:
        schema["required"] = required
    return Annotated[
        dict[str, Any],
        Body(media_type=RequestEncodingType.JSON, schema_extra=schema),
    ]


def record_routes(resource: Resource) -> list[HTTPRouteHandler]:
    """Build the list, get, create, update and delete routes of ``resource``."""
    kind = resource.object_type
    collection = f"/{resource.plural}"
    item = f"{collection}/{{record_id:int}}"
    tags = [resource.plural]

    @get(
        item,
        opt=permission(kind, "read"),
        operation_id=f"get_{kind}",
        responses=problem_responses(404),
        summary=f"Read a {kind}",
        tags=tags,
    )
    async def get_one(
        request: ApiRequest, record_id: RecordId
    ) -> Response[dict[str, Any]]:
        row = await read_record(resource, request.user, record_id)
        return item_response(resource.present(request.user.access, row), row["version"])

    async def create_one(
        request: ApiRequest, data: JsonBody
    ) -> Response[dict[str, Any]]:
        row = await create_record(resource, request.user, data)
        body = resource.present(request.user.access, row)
        location = f"{request.url.path.rstrip('/')}/{row['id']}"
        return item_response(body, row["version"], 201, location)

    create_one.__annotations__["data"] = body_annotation(resource, creating=True)
    create_route = post(
        collection,
        opt=permission(kind, "create"),
        operation_id=f"create_{kind}",
        responses=problem_responses(422),
        summary=f"Create a {kind}",
        description=resource.create_help,
        tags=tags,
    )(create_one)

    async def update_one(
        request: ApiRequest,
        record_id: RecordId,
        data: JsonBody,
        if_match: IfMatch = None,
    ) -> Response[dict[str, Any]]:
        version = parse_version(if_match)
        with if_match_target(if_match, kind, record_id):
            row = await update_record(resource, request.user, record_id, version, data)
        return item_response(resource.present(request.user.access, row), row["version"])

    update_one.__annotations__["data"] = body_annotation(resource, creating=False)
    update_route = patch(
        item,
        opt=permission(kind, "edit"),
        operation_id=f"update_{kind}",
        responses=problem_responses(422, 404, 412, 428),
        summary=f"Change fields of a {kind}",
        description=f"Change the given fields of a {kind} at the version in If-Match.",
        tags=tags,
    )(update_one)

    @delete(
        item,
        opt=permission(kind, "delete"),
        operation_id=f"delete_{kind}",
        # 409 only where other records may still refer to the record.
        responses=problem_responses(
            422, 404, 412, *((409,) if DELETABLE[kind].dependents else ())
        ),
        summary=f"Delete a {kind}",
        description=(
            f"Delete a {kind}. With If-Match, only at that version (412 "
            "otherwise). " + resource.delete_help
        ),
        tags=tags,
    )
    async def delete_one(
        request: ApiRequest, record_id: RecordId, if_match: IfMatch = None
    ) -> None:
        await delete_by_request(request, kind, record_id, if_match)

    return [list_handler(resource), get_one, create_route, update_route, delete_one]


RECORD_ROUTES = [
    handler
    for resource in (DEALS, TICKETS, ACCOUNTS, CONTACTS, LEADS)
    for handler in record_routes(resource)
]

API_ROUTER = Router(
    "/api/v1",
    route_handlers=[
        *RECORD_ROUTES,
        *COMMENT_ROUTES,
        *TASK_ROUTES,
        *DIRECTORY_ROUTES,
        *CAMPAIGN_ROUTES,
        *RULE_ROUTES,
        *SEARCH_ROUTES,
        api_events,
    ],
    middleware=[CombineIfMatchLines, ApiKeyMiddleware],
    exception_handlers=EXCEPTION_HANDLERS,
    opt=BYPASS_PAGE_MIDDLEWARE,
    include_in_schema=True,
    security=[{SECURITY_SCHEME: []}],
)
