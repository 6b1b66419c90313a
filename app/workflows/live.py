"""Notifications pushed to a user's own stream ("user:<id>") as toasts, and
the timer planning progress pushed to a rule's admin page ("workflow-rule:<id>")."""

from __future__ import annotations

from typing import Any

from app.web.templating import render
from app.workflows.jobs import NOTIFICATION
from app.workflows.planning import PLAN_EVENT, get_plan
from realtime.messages import Event


async def render_notification(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind != NOTIFICATION:
        return dict.fromkeys(variants, "")
    html = render(
        "workflows/_notification.html",
        message=str(event.changes.get("message", "")),
        link=str(event.changes.get("link", "")),
    )
    return dict.fromkeys(variants, html)


async def plan_fragment(rule_id: int) -> str:
    plan = await get_plan(rule_id)
    return render("workflows/_timer_plan.html", rule_id=rule_id, plan=plan, oob=True)


async def render_timer_plan(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind != PLAN_EVENT:
        return dict.fromkeys(variants, "")
    return dict.fromkeys(variants, await plan_fragment(event.record_id))


async def snapshot_timer_plan(topic: str, variant: str) -> str:
    return await plan_fragment(int(topic.partition(":")[2]))
