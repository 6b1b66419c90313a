"""Workflow rules in the API: list, read, create, change, delete, and the
log of a rule's runs.

Only administrators manage rules, as on the admin pages, with a key that
has the ``workflow_rule`` scope: ``read`` for the GET routes and ``write``
for the others. Writes go through ``app.workflows.service``, so they
validate, save versions, set timers and write audit rows as the pages do.

A rule's ETag is its version, which every save of the name or definition
and every switch of ``enabled`` raises, here and on the pages. PATCH needs
``If-Match: <version>`` (428 without it, 412 when the rule moved on) or
``If-Match: *``, and DELETE checks If-Match when sent.
NOTE: reordering on the pages keeps the version, so a rule's ``position``
can change under an ETag; the API does not change positions.

A create or change that would set timers for existing records, many of
them due at once, needs ``confirm_timers=true``, as the pages ask for a
confirmation. Without it the response is 409 with the counts in ``timers``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from litestar import Response, delete, get, patch, post
from litestar.enums import RequestEncodingType
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Body
from piccolo.table import Table

from app.access.guards import ADMIN
from app.api.common import (
    KEY_SCOPE,
    ApiRequest,
    CursorQuery,
    IfMatch,
    LimitQuery,
    flag_parameter,
    if_match_target,
    item_response,
    page_response,
    parse_flag,
    parse_limit,
    parse_optional_version,
    parse_version,
    problem_responses,
    text_parameter,
)
from app.api.problems import caller, problem
from app.api.records import Sort, keyset_page, next_link
from app.errors import FieldError, NotFound, VersionMismatch
from app.web.forms import RecordId
from app.workflows import service
from app.workflows.planning import CONFIRM_DUE_AT_ONCE, TimerCounts
from app.workflows.records import RECORD_TYPES
from app.workflows.schema import readable_path
from app.workflows.tables import RuleRun, WorkflowRule

logger = logging.getLogger(__name__)

# The NotFound and VersionMismatch record type of a rule.
RULE = "workflow rule"
TAGS = ["workflow rules"]
READ_RULES = {"permission": ADMIN, KEY_SCOPE: "workflow_rule:read"}
WRITE_RULES = {"permission": ADMIN, KEY_SCOPE: "workflow_rule:write"}
COLLECTION = "/workflow-rules"
ITEM = f"{COLLECTION}/{{record_id:int}}"
SUMMARY_COLUMNS = (
    "r.id, r.object_type, r.name, r.enabled, r.position, "
    "r.current_version AS version, r.trigger_kind, r.created_by, "
    "r.created_at, r.updated_at"
)
RUN_COLUMNS = (
    "x.id, x.version, x.record_type, x.record_id, x.trigger, x.outcome, "
    "x.error, x.actions::text AS actions, x.depth, x.duration_ms, x.created_at"
)
# The rules' order: the order they run in within one object type.
RULE_ORDER = Sort("position")
RULE_SORTS = {"position": "integer"}
# Runs come newest first. NOTE: cursors carry ids up to 2**31 - 1 (MAX_ID),
# while run ids are bigint, so paging breaks past that many runs.
RUN_ORDER = Sort("id", descending=True)
RUN_SORTS = {"id": "integer"}
FAILED_OUTCOMES = ("failed", "loop_limit", "rate_limited")
CREATE_FIELDS = ("object_type", "name", "definition", "enabled")
UPDATE_FIELDS = ("name", "definition", "enabled")

ObjectTypeQuery = Annotated[
    str | None,
    text_parameter(
        "Only rules of this object type.",
        type=OpenAPIType.STRING,
        enum=list(RECORD_TYPES),
    ),
]
ConfirmQuery = Annotated[
    str | None,
    flag_parameter(
        "true to set timers even when at least "
        f"{CONFIRM_DUE_AT_ONCE} of them would be due at once (409 otherwise)."
    ),
]
FailuresQuery = Annotated[
    str | None,
    flag_parameter(
        "true for only the runs that failed or that the loop or rate limit stopped."
    ),
]


def body_annotation(creating: bool) -> Any:
    schema: dict[str, Any] = {
        "type": OpenAPIType.OBJECT,
        "properties": {
            "name": Schema(type=OpenAPIType.STRING, max_length=service.MAX_NAME),
            "definition": Schema(
                type=OpenAPIType.OBJECT,
                description=(
                    "The rule's trigger, conditions and actions, as "
                    "docs/workflows.md describes them."
                ),
            ),
            "enabled": Schema(
                type=OpenAPIType.BOOLEAN,
                description="Whether the rule runs. A new rule is disabled without it.",
            ),
        },
        "additional_properties": False,
    }
    if creating:
        schema["properties"]["object_type"] = Schema(
            type=OpenAPIType.STRING, enum=list(RECORD_TYPES)
        )
        schema["required"] = ["object_type", "name", "definition"]
    return Annotated[
        dict[str, Any],
        Body(media_type=RequestEncodingType.JSON, schema_extra=schema),
    ]


def rule_input(data: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """Check a request body's names and types; the service checks the values."""
    for name, value in data.items():
        if name not in allowed:
            raise FieldError(
                name,
                value,
                f"is not a workflow rule field, so set only {', '.join(allowed)}",
            )
        if name in ("object_type", "name") and not isinstance(value, str):
            raise FieldError(name, value, "must be a string")
        if name == "definition" and not isinstance(value, dict):
            raise FieldError(name, value, "must be an object")
        if name == "enabled" and not isinstance(value, bool):
            raise FieldError(name, value, "must be true or false")
    return dict(data)


@contextmanager
def definition_fields() -> Iterator[None]:
    """Name a definition's invalid value by its path in the request body.

    The service names it within the definition (``actions.0.field``), and
    the API as the body has it (``definition.actions.0.field``).
    """
    try:
        yield
    except FieldError as error:
        if error.field in ("object_type", "name") or error.field.startswith(
            "definition"
        ):
            raise
        error.label = error.label or readable_path(error.field)
        error.field = f"definition.{error.field}"
        raise


def present(row: dict[str, Any]) -> dict[str, Any]:
    body = dict(row)
    if "definition" in body:
        # Raw queries return JSONB columns as JSON text.
        body["definition"] = json.loads(body["definition"])
    return body


async def rule_response(
    rule_id: int, status: int = 200, location: str = ""
) -> Response[dict[str, Any]]:
    rows = await WorkflowRule.raw(
        f"SELECT {SUMMARY_COLUMNS}, v.definition::text AS definition "
        "FROM workflow_rule r JOIN workflow_rule_version v "
        "ON v.rule = r.id AND v.version = r.current_version WHERE r.id = {}",
        rule_id,
    )
    if not rows:
        raise NotFound(RULE, rule_id)
    body = present(rows[0])
    return item_response(body, body["version"], status, location)


def needs_confirmation(
    request: ApiRequest, rule_id: int | None, counts: TimerCounts
) -> Response[dict[str, Any]]:
    """Build the 409 that asks to resend with ``confirm_timers=true``."""
    user_id, key_id = caller(request)
    logger.info(
        "api workflow rule change waits for confirmation rule_id=%s user_id=%s "
        "key_id=%s matching=%d due_now=%d",
        rule_id,
        user_id,
        key_id,
        counts.matching,
        counts.due_now,
    )
    response = problem(
        request,
        409,
        f"This sets timers for {counts.matching} existing records, and "
        f"{counts.due_now} of them are due at once, so the rule would run its "
        "actions for those records at the next worker tick. Nothing was saved. "
        "Resend the request with confirm_timers=true to go ahead.",
        field="confirm_timers",
        value=None,
    )
    response.content["timers"] = counts.as_dict()
    return response


async def ordered_page(
    request: ApiRequest,
    source: tuple[type[Table], str, str],
    where: tuple[list[str], list[object]],
    order: tuple[dict[str, str], Sort],
    query: dict[str, str | None],
) -> Response[dict[str, Any]]:
    """Return one page of rows in a fixed order, linking to the next page.

    ``source`` is the table, its SELECT ... FROM and its alias, ``where`` the
    conditions with their values, ``order`` the sortable columns with the
    order, and ``query`` the request's parameters, with ``cursor`` and
    ``limit``, which the next page's link keeps.
    """
    table, select_sql, alias = source
    conditions, args = where
    sorts, sort = order
    limit = parse_limit(query["limit"])
    page = await keyset_page(
        table,
        select_sql,
        alias,
        conditions,
        args,
        sorts,
        sort,
        query["cursor"],
        limit,
    )
    following = next_link(
        request.url.path, {**query, "limit": limit, "cursor": None}, page.next_cursor
    )
    return page_response(page.rows, following)


@get(
    COLLECTION,
    opt=READ_RULES,
    operation_id="list_workflow_rules",
    responses=problem_responses(),
    summary="List workflow rules (administrators)",
    description=(
        "In the order the rules of one object type run: by ``position``, then id."
    ),
    tags=TAGS,
)
async def list_rules(
    request: ApiRequest,
    object_type: ObjectTypeQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    conditions = []
    args: list[object] = []
    if object_type is not None:
        conditions.append("r.object_type = {}")
        args.append(service.check_object_type(object_type))
    return await ordered_page(
        request,
        (WorkflowRule, f"SELECT {SUMMARY_COLUMNS} FROM workflow_rule r", "r"),
        (conditions, args),
        (RULE_SORTS, RULE_ORDER),
        {"object_type": object_type, "cursor": cursor, "limit": limit},
    )


@get(
    ITEM,
    opt=READ_RULES,
    operation_id="get_workflow_rule",
    responses=problem_responses(404),
    summary="Read a workflow rule with its current definition (administrators)",
    tags=TAGS,
)
async def get_rule(record_id: RecordId) -> Response[dict[str, Any]]:
    return await rule_response(record_id)


async def create_rule(
    request: ApiRequest, data: Any, confirm_timers: ConfirmQuery = None
) -> Response[dict[str, Any]]:
    values = rule_input(data, CREATE_FIELDS)
    for name in ("object_type", "name", "definition"):
        if name not in values:
            raise FieldError(name, None, "is required")
    object_type = values["object_type"]
    enabled = values.get("enabled", False)
    with definition_fields():
        service.check_object_type(object_type)
        if not parse_flag("confirm_timers", confirm_timers):
            counts = await service.timers_to_confirm(
                object_type, None, values["definition"], enabled
            )
            if counts.needs_confirmation:
                return needs_confirmation(request, None, counts)
        rule_id = await service.create_rule(
            object_type, values["name"], values["definition"], enabled, request.user.id
        )
    return await rule_response(rule_id, 201, f"/api/v1{COLLECTION}/{rule_id}")


create_rule.__annotations__["data"] = body_annotation(creating=True)
create_route = post(
    COLLECTION,
    opt=WRITE_RULES,
    operation_id="create_workflow_rule",
    responses=problem_responses(409, 422),
    summary="Create a workflow rule (administrators)",
    description=(
        "``object_type``, ``name`` and ``definition`` are required; the rule "
        "is disabled unless ``enabled`` is true. It goes last in its object "
        "type's order."
    ),
    tags=TAGS,
)(create_rule)


async def update_rule(
    request: ApiRequest,
    record_id: RecordId,
    data: Any,
    if_match: IfMatch = None,
    confirm_timers: ConfirmQuery = None,
) -> Response[dict[str, Any]]:
    version = parse_version(if_match)
    values = rule_input(data, UPDATE_FIELDS)
    confirmed = parse_flag("confirm_timers", confirm_timers)
    with if_match_target(if_match, RULE, record_id), definition_fields():
        rule = await service.get_rule(record_id)
        current = rule["current_version"]
        expected = current if version is None else version
        # The service checks the version again under the row lock. This
        # check only spares a stale request the counting of timers.
        if expected != current:
            raise VersionMismatch(RULE, record_id, expected, current)
        if not confirmed:
            counts = await service.timers_to_confirm(
                rule["object_type"],
                rule,
                values.get("definition"),
                values.get("enabled", rule["enabled"]),
            )
            if counts.needs_confirmation:
                return needs_confirmation(request, record_id, counts)
        await service.update_rule(record_id, values, request.user.id, expected)
    return await rule_response(record_id)


update_rule.__annotations__["data"] = body_annotation(creating=False)
update_route = patch(
    ITEM,
    opt=WRITE_RULES,
    operation_id="update_workflow_rule",
    responses=problem_responses(409, 422, 404, 412, 428),
    summary="Change a workflow rule (administrators)",
    description=(
        "Change the given fields at the version in If-Match (412 at another "
        "version). A new ``name``, ``definition`` or ``enabled`` is saved as "
        "one new version, so the ETag goes up by one, and a client that read "
        "the rule before an enabling or disabling gets 412 too."
    ),
    tags=TAGS,
)(update_rule)


@delete(
    ITEM,
    opt=WRITE_RULES,
    operation_id="delete_workflow_rule",
    responses=problem_responses(422, 404, 412),
    summary="Delete a workflow rule (administrators)",
    description=(
        "With If-Match, only at that version (412 otherwise). Its versions, "
        "pending timers, planning run and run log are deleted with it; the "
        "tasks it created stay, without their rule."
    ),
    tags=TAGS,
)
async def delete_rule(
    request: ApiRequest, record_id: RecordId, if_match: IfMatch = None
) -> None:
    with if_match_target(if_match, RULE, record_id):
        await service.delete_rule(
            record_id, request.user.id, parse_optional_version(if_match)
        )


@get(
    f"{ITEM}/runs",
    opt=READ_RULES,
    operation_id="list_workflow_rule_runs",
    responses=problem_responses(404),
    summary="List a workflow rule's runs, newest first (administrators)",
    tags=TAGS,
)
async def list_runs(
    request: ApiRequest,
    record_id: RecordId,
    failures: FailuresQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    await service.get_rule(record_id)
    conditions = ["x.rule = {}"]
    args: list[object] = [record_id]
    if parse_flag("failures", failures):
        conditions.append("x.outcome = ANY({})")
        args.append(list(FAILED_OUTCOMES))
    response = await ordered_page(
        request,
        (RuleRun, f"SELECT {RUN_COLUMNS} FROM rule_run x", "x"),
        (conditions, args),
        (RUN_SORTS, RUN_ORDER),
        {"failures": failures, "cursor": cursor, "limit": limit},
    )
    for row in response.content["data"]:
        row["actions"] = json.loads(row["actions"])
    return response


RULE_ROUTES = [
    list_rules,
    get_rule,
    create_route,
    update_route,
    delete_rule,
    list_runs,
]
