"""The task list of a deal or ticket page, pushed when one of its tasks changes."""

from __future__ import annotations

from typing import Any

from app.access.scopes import permits_record
from app.access.views import split_variant, view_key
from app.errors import NotFound
from app.tasks.service import record_tasks
from app.web.templating import render


async def load_parent(parent: str, parent_id: int) -> dict[str, Any] | None:
    try:
        if parent == "ticket":
            from app.tickets.queries import get_ticket

            return await get_ticket(parent_id)
        from app.deals.queries import get_deal

        return await get_deal(parent_id)
    except NotFound:
        return None


async def render_task_list(
    parent: str, parent_id: int, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    """Return the record's task list for each variant whose viewers may read
    the record, and an empty fragment for the others."""
    key = f"tasks:{parent}:{parent_id}"
    if key not in cache:
        cache[key] = (
            await load_parent(parent, parent_id),
            await record_tasks(parent, parent_id),
        )
    record, tasks = cache[key]
    rendered: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if record is None or not permits_record(access, parent, "read", record):
            fragments[variant] = ""
            continue
        can_edit = permits_record(access, parent, "edit", record)
        view = f"{view_key(variant)}:{can_edit}"
        if view not in rendered:
            rendered[view] = task_list_html(parent, parent_id, tasks, can_edit)
        fragments[variant] = rendered[view]
    return fragments


def task_list_html(
    parent: str, parent_id: int, tasks: list[dict[str, Any]], can_edit: bool
) -> str:
    return render(
        "tasks/_list.html",
        tasks=tasks,
        task_parent=parent,
        task_record_id=parent_id,
        can_edit_tasks=can_edit,
        oob=True,
    )
