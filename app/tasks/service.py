"""Creating, completing and listing follow-up tasks, and reminding of due ones.

A task belongs to one deal or ticket, whose page lists it and updates
live, because every change records a ``task.*`` event on the record's
stream. A task that is due and not done reminds its assignee once, with
the same notification that a rule's notify action sends: the worker's
timer cron calls ``send_due_reminders``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from app import fields
from app.auth.tables import User
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.pagination import Page, PageRequest
from app.tasks.tables import Task

logger = logging.getLogger(__name__)

PARENTS = ("deal", "ticket")
MAX_TITLE = 500
# Tasks listed on a record's page: the open ones by due time, then the done.
TASKS_ON_RECORD = 50
# Reminders sent per call of send_due_reminders, in one transaction.
REMINDER_BATCH = 100

TASK_COLUMNS = """
    t.id, t.title, t.deal, t.ticket, t.assignee, t.due_at, t.done, t.done_at,
    t.rule, t.version, u.name AS assignee_name
"""


def task_topics(parent: str, parent_id: int) -> list[str]:
    return [f"{parent}:{parent_id}"]


def parent_of(task: dict[str, Any]) -> tuple[str, int]:
    """Return the record type and id of the deal or ticket a task belongs to."""
    if task["ticket"] is not None:
        return "ticket", int(task["ticket"])
    return "deal", int(task["deal"])


def check_parent(parent: str) -> str:
    if parent not in PARENTS:
        raise FieldError("record_type", parent, "must be deal or ticket")
    return parent


async def create_task(
    parent: str,
    parent_id: int,
    title_raw: str | None,
    assignee_id: int | None,
    due_at: dt.datetime,
    actor_id: int | None,
    rule_id: int | None = None,
) -> int:
    """Create a task on a deal or ticket, in the open change set if there is one.

    Raises FieldError for an empty or long title, an unknown assignee or a
    due time without a time zone, and NotFound when the record is missing.
    """
    check_parent(parent)
    title = fields.text("title", title_raw, required=True, max_length=MAX_TITLE)
    if due_at.tzinfo is None:
        raise FieldError("due_at", due_at.isoformat(), "must include a time zone")
    if assignee_id is not None and not await User.exists().where(
        User.id == assignee_id
    ):
        raise FieldError("assignee", assignee_id, "is not a user")
    async with change_set(actor_id) as changes:
        found = await Task.raw(f"SELECT id FROM {parent} WHERE id = {{}}", parent_id)
        if not found:
            raise NotFound(parent, parent_id)
        rows = await Task.raw(
            f"INSERT INTO task (title, {parent}, assignee, due_at, rule) "
            "VALUES ({}, {}, {}, {}, {}) RETURNING id",
            title,
            parent_id,
            assignee_id,
            due_at,
            rule_id,
        )
        task_id = int(rows[0]["id"])
        changes.add(
            "task.created",
            "task",
            task_id,
            task_topics(parent, parent_id),
            {
                parent: parent_id,
                "title": [None, title],
                "assignee": [None, assignee_id],
                "due_at": [None, due_at.isoformat()],
            },
        )
    logger.info(
        "task created task_id=%s %s_id=%s assignee_id=%s rule_id=%s user_id=%s",
        task_id,
        parent,
        parent_id,
        assignee_id,
        rule_id,
        actor_id,
    )
    return task_id


async def get_task(task_id: int) -> dict[str, Any]:
    rows = await Task.raw(
        f"SELECT {TASK_COLUMNS} FROM task t "
        "LEFT JOIN app_user u ON u.id = t.assignee WHERE t.id = {}",
        task_id,
    )
    if not rows:
        raise NotFound("task", task_id)
    return dict(rows[0])


async def set_done(
    task_id: int, parent: str, parent_id: int, done: bool, actor_id: int | None
) -> dict[str, Any]:
    """Mark a task of the given record done or open again; return it.

    Raises NotFound when the task does not exist or belongs to another
    record. Marking it as it already is changes nothing and records nothing.
    """
    check_parent(parent)
    async with change_set(actor_id) as changes:
        rows = await Task.raw(
            f"SELECT done FROM task WHERE id = {{}} AND {parent} = {{}} FOR UPDATE",
            task_id,
            parent_id,
        )
        if not rows:
            raise NotFound("task", task_id)
        before = bool(rows[0]["done"])
        if before != done:
            await Task.raw(
                "UPDATE task SET done = {}, done_at = CASE WHEN {} THEN now() END, "
                "done_by = CASE WHEN {} THEN {}::integer END, "
                "version = version + 1, updated_at = now() WHERE id = {}",
                done,
                done,
                done,
                actor_id,
                task_id,
            )
            changes.add(
                "task.updated",
                "task",
                task_id,
                task_topics(parent, parent_id),
                {parent: parent_id, "done": [before, done]},
            )
    if before != done:
        logger.info(
            "task %s task_id=%s %s_id=%s user_id=%s",
            "done" if done else "reopened",
            task_id,
            parent,
            parent_id,
            actor_id,
        )
    return await get_task(task_id)


async def record_tasks(parent: str, parent_id: int) -> list[dict[str, Any]]:
    """Return up to TASKS_ON_RECORD tasks of a record, open ones first by due time."""
    check_parent(parent)
    return await Task.raw(
        f"SELECT {TASK_COLUMNS} FROM task t "
        "LEFT JOIN app_user u ON u.id = t.assignee "
        f"WHERE t.{parent} = {{}} ORDER BY t.done, t.due_at, t.id LIMIT {{}}",
        parent_id,
        TASKS_ON_RECORD,
    )


async def my_tasks(
    user_id: int, paging: PageRequest, include_done: bool = False
) -> Page[dict[str, Any]]:
    """Return a page of the tasks assigned to a user, the earliest due first,
    each with the scope columns and label of its deal or ticket."""
    done_filter = "" if include_done else "AND NOT t.done "
    rows = await Task.raw(
        f"SELECT {TASK_COLUMNS}, "
        "d.name AS deal_name, d.owner AS deal_owner, d.team AS deal_team, "
        "k.subject AS ticket_subject, k.assignee AS ticket_assignee, "
        "k.team AS ticket_team, count(*) OVER () AS total "
        "FROM task t LEFT JOIN app_user u ON u.id = t.assignee "
        "LEFT JOIN deal d ON d.id = t.deal LEFT JOIN ticket k ON k.id = t.ticket "
        f"WHERE t.assignee = {{}} {done_filter}"
        "ORDER BY t.done, t.due_at, t.id LIMIT {} OFFSET {}",
        user_id,
        paging.size,
        paging.offset,
    )
    if rows:
        total = int(rows[0]["total"])
    else:
        counted = await Task.raw(
            f"SELECT count(*) AS total FROM task t WHERE t.assignee = {{}} "
            f"{done_filter}",
            user_id,
        )
        total = int(counted[0]["total"])
    return Page(rows=rows, total=total, paging=paging)


async def send_due_reminders(now: dt.datetime, limit: int = REMINDER_BATCH) -> int:
    """Remind the assignees of tasks that are due and open; return how many.

    Tasks are claimed with SKIP LOCKED and marked in the transaction that
    writes the notification to the outbox, so each reminds once, even with
    several workers. A task without an assignee is marked and reminds no one.
    """
    from app.workflows.actions import SideEffect

    async with change_set(None) as changes:
        rows = await Task.raw(
            "SELECT id, title, deal, ticket, assignee, rule FROM task "
            "WHERE NOT done AND reminded_at IS NULL AND due_at <= {} "
            "ORDER BY due_at, id LIMIT {} FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        if not rows:
            return 0
        await Task.raw(
            "UPDATE task SET reminded_at = {} WHERE id = ANY({})",
            now,
            [row["id"] for row in rows],
        )
        for row in rows:
            if row["assignee"] is None:
                continue
            parent, parent_id = parent_of(row)
            changes.side_effects.append(
                SideEffect(
                    "workflow_notify",
                    (
                        [row["assignee"]],
                        f"Task due: {row['title']}",
                        f"/{parent}s/{parent_id}",
                    ),
                    row["rule"],
                    parent,
                    parent_id,
                )
            )
    logger.info(
        "task reminders sent count=%d task_ids=%s",
        len(rows),
        [row["id"] for row in rows],
    )
    return len(rows)
