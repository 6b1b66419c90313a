"""Follow-up tasks: made by a rule, listed and marked done on pages, reminded
by a real arq worker when due."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from app.api.keys import create_key
from app.errors import FieldError, NotFound
from app.events.tables import Event
from app.pagination import PageRequest
from app.tasks.service import create_task, my_tasks, send_due_reminders, set_done
from app.tasks.tables import Task
from app.tickets.service import create_ticket
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun
from tests.browserless import Session
from tests.factories import make_team, make_ticket, make_user
from tests.servers import WebServer, web_server, worker_process

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server() as running:
        yield running


def later(minutes: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)


async def task_rows(ticket_id: int) -> list[dict[str, object]]:
    return await Task.select().where(Task.ticket == ticket_id).order_by(Task.id)


async def test_rule_creates_task_for_assignee(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    team = await make_team()
    agent = await make_user("support_agent", team=team)
    rule_id = await save_rule(
        None,
        "ticket",
        f"Follow up {marker}",
        {
            "trigger": {"kind": "created"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "subject",
                        "op": "contains",
                        "value": marker,
                    }
                ],
            },
            "actions": [
                {
                    "kind": "create_task",
                    "body": "Call {record.subject} back",
                    "due_in_minutes": 90,
                }
            ],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)

    before = dt.datetime.now(dt.UTC)
    ticket_id = await create_ticket(
        {"subject": f"Fax {marker}", "assignee": str(agent.id)}, None
    )

    [task] = await task_rows(ticket_id)
    assert task["title"] == f"Call Fax {marker} back"
    assert task["assignee"] == agent.id
    assert task["rule"] == rule_id
    assert task["done"] is False
    due = task["due_at"]
    assert isinstance(due, dt.datetime)
    assert before + dt.timedelta(minutes=89) < due < later(91)
    events = await Event.select(Event.kind, Event.topics).where(
        (Event.record_type == "task") & (Event.record_id == task["id"])
    )
    assert events == [{"kind": "task.created", "topics": [f"ticket:{ticket_id}"]}]


async def test_rule_task_needs_assignee_edit_right(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    team = await make_team()
    other_team = await make_team()
    outsider = await make_user("support_agent", team=other_team)
    rule_id = await save_rule(
        None,
        "ticket",
        f"Outsider task {marker}",
        {
            "trigger": {"kind": "created"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "subject",
                        "op": "contains",
                        "value": marker,
                    }
                ],
            },
            "actions": [
                {
                    "kind": "create_task",
                    "body": "Call {record.subject} back",
                    "user_id": outsider.id,
                    "due_in_minutes": 60,
                }
            ],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)

    ticket_id = await create_ticket(
        {"subject": f"Private {marker}", "team": str(team)}, None
    )

    assert await task_rows(ticket_id) == []
    runs = await RuleRun.select(RuleRun.outcome, RuleRun.error).where(
        RuleRun.rule == rule_id
    )
    assert [run["outcome"] for run in runs] == ["failed"]
    assert f"user {outsider.id} may not edit ticket {ticket_id}" in runs[0]["error"]


async def test_task_checks_its_input() -> None:
    ticket_id = await make_ticket()

    with pytest.raises(FieldError) as empty:
        await create_task("ticket", ticket_id, "  ", None, later(5), None)
    with pytest.raises(FieldError) as naive:
        await create_task(
            "ticket", ticket_id, "Call", None, dt.datetime(2030, 1, 1), None
        )
    with pytest.raises(FieldError) as parent:
        await create_task("account", ticket_id, "Call", None, later(5), None)
    with pytest.raises(NotFound):
        await create_task("ticket", 2_000_000_000, "Call", None, later(5), None)

    assert empty.value.field == "title"
    assert naive.value.field == "due_at"
    assert parent.value.field == "record_type"


async def test_set_done_records_change_once() -> None:
    ticket_id = await make_ticket()
    other_ticket = await make_ticket()
    task_id = await create_task("ticket", ticket_id, "Call", None, later(5), None)

    done = await set_done(task_id, "ticket", ticket_id, True, None)
    again = await set_done(task_id, "ticket", ticket_id, True, None)
    with pytest.raises(NotFound):
        await set_done(task_id, "ticket", other_ticket, False, None)

    assert done["done"] is True
    assert again["done"] is True
    events = await Event.select(Event.kind, Event.changes).where(
        (Event.record_type == "task") & (Event.record_id == task_id)
    )
    kinds = [event["kind"] for event in events]
    assert kinds == ["task.created", "task.updated"]
    assert json.loads(events[1]["changes"])["done"] == [False, True]


async def test_my_tasks_pages_open_tasks_by_due_time() -> None:
    user = await make_user("support_agent")
    ticket_id = await make_ticket()
    ids = [
        await create_task(
            "ticket", ticket_id, f"Task {n}", user.id, later(60 - n), None
        )
        for n in range(5)
    ]
    await set_done(ids[0], "ticket", ticket_id, True, None)

    first = await my_tasks(user.id, PageRequest(number=1, size=2))
    second = await my_tasks(user.id, PageRequest(number=2, size=2))
    with_done = await my_tasks(user.id, PageRequest(number=1, size=10), True)

    assert first.total == 4
    assert [row["id"] for row in first.rows] == [ids[4], ids[3]]
    assert [row["id"] for row in second.rows] == [ids[2], ids[1]]
    assert with_done.total == 5
    assert with_done.rows[-1]["id"] == ids[0]


async def test_reminder_sent_once() -> None:
    user = await make_user("support_agent")
    ticket_id = await make_ticket()
    task_id = await create_task(
        "ticket", ticket_id, "Due now", user.id, later(-1), None
    )
    future_id = await create_task(
        "ticket", ticket_id, "Later", user.id, later(60), None
    )

    sent = await send_due_reminders(dt.datetime.now(dt.UTC))
    repeated = await send_due_reminders(dt.datetime.now(dt.UTC))

    rows = {row["id"]: row for row in await task_rows(ticket_id)}
    assert sent >= 1
    assert repeated == 0
    assert rows[task_id]["reminded_at"] is not None
    assert rows[future_id]["reminded_at"] is None


async def test_worker_reminds_assignee_when_due() -> None:
    user = await make_user("support_agent")
    ticket_id = await make_ticket()
    title = f"Ring back {uuid.uuid4().hex[:8]}"
    task_id = await create_task("ticket", ticket_id, title, user.id, later(0), None)
    notified = Event.exists().where(
        (Event.kind == "workflow.notified") & Event.topics.any(f"user:{user.id}")
    )

    with worker_process():
        async with asyncio.timeout(60):
            # Polling is the point: the worker signals nothing to wait on.
            while not await notified:  # noqa: ASYNC110
                await asyncio.sleep(0.5)

    [event] = await Event.select(Event.changes).where(
        (Event.kind == "workflow.notified") & Event.topics.any(f"user:{user.id}")
    )
    changes = json.loads(event["changes"])
    assert changes["message"] == f"Task due: {title}"
    assert changes["link"] == f"/tickets/{ticket_id}"
    [task] = await Task.select(Task.reminded_at).where(Task.id == task_id)
    assert task["reminded_at"] is not None


async def test_record_page_lists_and_marks_done(server: WebServer) -> None:
    team = await make_team()
    agent = await make_user("support_agent", team=team)
    reader = await make_user("read_only", team=team)
    ticket_id = await make_ticket("open", assignee=agent.id, team=team)
    task_id = await create_task(
        "ticket", ticket_id, "Send the manual", agent.id, later(30), None
    )
    session = Session(server.url)
    readonly = Session(server.url)
    try:
        await session.sign_in(agent.email)
        await readonly.sign_in(reader.email)
        page = await session.get(f"/tickets/{ticket_id}")
        mine = await session.get("/tasks")
        marked = await session.post(
            f"/tickets/{ticket_id}/tasks/{task_id}/done", {"done": "on"}
        )
        refused = await readonly.post(f"/tickets/{ticket_id}/tasks/{task_id}/done", {})
        mine_after = await session.get("/tasks")
        mine_all = await session.get("/tasks?show=all")
    finally:
        await session.close()
        await readonly.close()

    assert page.status_code == 200
    assert f'id="task-{task_id}"' in page.text
    assert "Send the manual" in page.text
    assert f'id="my-task-{task_id}"' in mine.text
    assert marked.status_code < 300
    assert f'id="tasks-ticket-{ticket_id}"' in marked.text
    assert "checked" in marked.text
    assert refused.status_code == 403
    assert f'id="my-task-{task_id}"' not in mine_after.text
    assert f'id="my-task-{task_id}"' in mine_all.text
    [task] = await Task.select(Task.done, Task.done_by).where(Task.id == task_id)
    assert task == {"done": True, "done_by": agent.id}


async def test_api_lists_and_marks_tasks(server: WebServer) -> None:
    team = await make_team()
    other_team = await make_team()
    agent = await make_user("support_agent", team=team)
    outsider = await make_user("support_agent", team=other_team)
    ticket_id = await make_ticket("open", assignee=agent.id, team=team)
    task_ids = [
        await create_task("ticket", ticket_id, f"Step {n}", agent.id, later(n), None)
        for n in range(3)
    ]
    writer = await create_key(agent.id, "Tasks", {"ticket": "write"}, None)
    stranger = await create_key(outsider.id, "Other", {"ticket": "write"}, None)
    base = f"/api/v1/tickets/{ticket_id}/tasks"

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as api:
        auth = {"authorization": f"Bearer {writer.token}"}
        first = await api.get(f"{base}?limit=2", headers=auth)
        rest = await api.get(first.json()["next"], headers=auth)
        marked = await api.patch(
            f"{base}/{task_ids[1]}", json={"done": True}, headers=auth
        )
        stale = await api.patch(
            f"{base}/{task_ids[1]}",
            json={"done": False},
            headers={**auth, "if-match": '"1"'},
        )
        invalid = await api.patch(
            f"{base}/{task_ids[1]}", json={"title": "x"}, headers=auth
        )
        hidden = await api.get(
            base, headers={"authorization": f"Bearer {stranger.token}"}
        )

    assert first.status_code == 200
    assert [row["id"] for row in first.json()["data"]] == task_ids[:2]
    assert [row["id"] for row in rest.json()["data"]] == task_ids[2:]
    assert marked.status_code == 200
    assert marked.json()["done"] is True
    assert marked.headers["etag"] == '"2"'
    assert stale.status_code == 412
    assert invalid.status_code in (400, 422)
    assert "title" in invalid.text
    assert hidden.status_code == 404
