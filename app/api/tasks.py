"""Tasks in the API: the list of a deal's or ticket's tasks, and marking one done.

A task's rights follow its record: reading the record lets a key list its
tasks, and editing it lets a key mark them done. The key needs the scope
of the record's type, checked by the middleware.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from litestar import Response, get, patch
from litestar.handlers import HTTPRouteHandler

from app.access.guards import permission
from app.api.common import (
    ApiRequest,
    CursorQuery,
    IfMatch,
    JsonBody,
    LimitQuery,
    Listing,
    flag_parameter,
    id_parameter,
    if_match_target,
    item_response,
    parent_listing_page,
    parse_optional_version,
    problem_responses,
    sort_parameter,
)
from app.api.records import read_record
from app.api.resources import RESOURCES
from app.errors import FieldError, NotFound, VersionMismatch
from app.tasks.service import get_task, set_done
from app.tasks.tables import Task
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

TAGS = ["tasks"]
TASK_FIELDS = ("id", "version", "title", "deal", "ticket", "assignee", "due_at")
TASKS = Listing(
    Task,
    "SELECT t.id, t.version, t.title, t.deal, t.ticket, t.assignee, t.due_at, "
    "t.done, t.done_at FROM task t",
    "t",
    {"id": "integer", "due_at": "timestamptz"},
)
TaskSort = Annotated[str | None, sort_parameter(TASKS.sorts)]
AssigneeQuery = Annotated[str | None, id_parameter("Only tasks of this assignee.")]
DoneQuery = Annotated[
    str | None, flag_parameter("Only done tasks (true) or open ones (false).")
]


def present(row: dict[str, Any]) -> dict[str, Any]:
    shown = {name: row[name] for name in TASK_FIELDS}
    shown["done"] = row["done"]
    shown["done_at"] = row["done_at"]
    return shown


async def load_parent(
    request: ApiRequest, parent_type: str, parent_id: int, action: str
) -> dict[str, Any]:
    """Load the deal or ticket of tasks; NotFound when the user may not read
    it, 403 when they may read it but not ``action`` it."""
    return await read_record(RESOURCES[parent_type], request.user, parent_id, action)


def task_routes(parent_type: str) -> list[HTTPRouteHandler]:
    """Build the list and done routes of the tasks of ``parent_type``."""
    path = f"/{RESOURCES[parent_type].plural}/{{record_id:int}}/tasks"

    @get(
        path,
        opt=permission(parent_type, "read"),
        operation_id=f"list_{parent_type}_tasks",
        responses=problem_responses(404),
        summary=f"List the tasks of a {parent_type}, oldest first by default",
        tags=TAGS,
    )
    async def list_tasks(
        request: ApiRequest,
        record_id: RecordId,
        assignee: AssigneeQuery = None,
        done: DoneQuery = None,
        sort: TaskSort = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = None,
    ) -> Response[dict[str, Any]]:
        await load_parent(request, parent_type, record_id, "read")
        return await parent_listing_page(
            request,
            TASKS,
            parent_type,
            record_id,
            ("assignee", assignee),
            ("done", done),
            {"sort": sort, "cursor": cursor, "limit": limit},
            present,
        )

    @patch(
        f"{path}/{{task_id:int}}",
        opt=permission(parent_type, "edit"),
        operation_id=f"update_{parent_type}_task",
        responses=problem_responses(422, 404, 412),
        summary=f"Mark a task of a {parent_type} done or open",
        description="Only ``done`` (true or false) may be set. With If-Match, "
        "only at that version (412 otherwise).",
        tags=TAGS,
    )
    async def update_task(
        request: ApiRequest,
        record_id: RecordId,
        task_id: RecordId,
        data: JsonBody,
        if_match: IfMatch = None,
    ) -> Response[dict[str, Any]]:
        expected = parse_optional_version(if_match)
        await load_parent(request, parent_type, record_id, "edit")
        unknown = sorted(set(data) - {"done"})
        if unknown:
            name = unknown[0]
            raise FieldError(name, data[name], "cannot be changed, so set only done")
        done = data.get("done")
        if not isinstance(done, bool):
            raise FieldError("done", done, "must be true or false")
        with if_match_target(if_match, "task", task_id):
            if expected is not None:
                current = await get_task(task_id)
                if current[parent_type] != record_id:
                    raise NotFound("task", task_id)
                if current["version"] != expected:
                    raise VersionMismatch("task", task_id, expected, current["version"])
            row = await set_done(task_id, parent_type, record_id, done, request.user.id)
        return item_response(present(row), row["version"])

    return [list_tasks, update_task]


TASK_ROUTES = [*task_routes("deal"), *task_routes("ticket")]
