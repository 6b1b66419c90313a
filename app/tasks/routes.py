"""Task pages: the tasks of a deal or ticket, marking one done, and My tasks."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Template

from app.access.guards import SIGNED_IN, permission
from app.access.permissions import Access
from app.access.scopes import permits_record
from app.auth.service import CurrentUser
from app.fields import choice
from app.pagination import PageRequest, reject_unknown_query
from app.tasks.service import my_tasks, record_tasks, set_done
from app.web.forms import FormData, RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]


async def task_context(
    parent: str, record: dict[str, Any], access: Access
) -> dict[str, Any]:
    """Return what a record page's task list needs."""
    return {
        "tasks": await record_tasks(parent, record["id"]),
        "task_parent": parent,
        "task_record_id": record["id"],
        "can_edit_tasks": permits_record(access, parent, "edit", record),
    }


async def load_parent(parent: str, record_id: int, access: Access) -> dict[str, Any]:
    """Load the deal or ticket with the viewer's edit right on it checked."""
    if parent == "ticket":
        from app.tickets.routes import load_ticket

        return await load_ticket(record_id, access, "edit")
    from app.deals.routes import load_deal

    return await load_deal(record_id, access, "edit")


async def mark_done(
    request: UserRequest, parent: str, record_id: int, task_id: int, data: FormData
) -> Template:
    """Set a task's done state from its checkbox and return the record's list."""
    record = await load_parent(parent, record_id, request.user.access)
    done = str(data.get("done", "")) in ("on", "true", "1")
    await set_done(task_id, parent, record_id, done, request.user.id)
    context = await task_context(parent, record, request.user.access)
    return Template("tasks/_list.html", context=context)


def readable_parent(access: Access, task: dict[str, Any]) -> bool:
    if task["ticket"] is not None:
        scope = {"assignee": task["ticket_assignee"], "team": task["ticket_team"]}
        return permits_record(access, "ticket", "read", scope)
    scope = {"owner": task["deal_owner"], "team": task["deal_team"]}
    return permits_record(access, "deal", "read", scope)


class TaskController(Controller):
    path = "/"

    @get("/tasks", opt={"permission": SIGNED_IN}, before_request=reject_unknown_query)
    async def my_tasks_page(
        self,
        request: UserRequest,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
        show: FromQuery[str | None] = None,
    ) -> Template:
        """List the viewer's tasks, open ones by due time; ``show=all`` adds done."""
        include_done = False
        if show:
            include_done = choice("show", show, ("all",)) == "all"
        paging = PageRequest.parse(
            page, size, path="/tasks", keep={"show": "all" if include_done else None}
        )
        tasks = await my_tasks(request.user.id, paging, include_done)
        access = request.user.access
        rows = [
            {**task, "readable": readable_parent(access, task)} for task in tasks.rows
        ]
        return Template(
            "tasks/mine.html",
            context={
                "tasks": tasks,
                "rows": rows,
                "include_done": include_done,
                "section": "tasks",
            },
        )

    @post(
        "/tickets/{ticket_id:int}/tasks/{task_id:int}/done",
        opt=permission("ticket", "edit"),
    )
    async def ticket_task_done(
        self,
        request: UserRequest,
        ticket_id: RecordId,
        task_id: RecordId,
        data: FormData,
    ) -> Template:
        return await mark_done(request, "ticket", ticket_id, task_id, data)

    @post(
        "/deals/{deal_id:int}/tasks/{task_id:int}/done",
        opt=permission("deal", "edit"),
    )
    async def deal_task_done(
        self,
        request: UserRequest,
        deal_id: RecordId,
        task_id: RecordId,
        data: FormData,
    ) -> Template:
        return await mark_done(request, "deal", deal_id, task_id, data)
