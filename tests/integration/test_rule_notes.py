"""A note that a workflow rule writes names the rule as its author: on the
record's page, in the fragment pushed to open pages and in the API.
Administrators get the name as a link to the rule's page."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from websockets import ClientConnection

from app.comments.tables import Comment
from app.deals.service import update_deal
from app.merge import Edit
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import WorkflowRule
from tests.browserless import Session
from tests.factories import contains, make_deal, make_pipeline, make_user
from tests.integration.test_api import bearer, new_key
from tests.live_frames import next_event, publishing_from_test_process

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]


async def note_rule(rules: list[int], marker: str) -> tuple[int, str]:
    """Save and enable a rule that adds a note to updated deals named with
    ``marker``; return its id and name."""
    name = f"Check amounts {marker}"
    definition = {
        "trigger": {"kind": "updated"},
        "conditions": contains("name", marker),
        "actions": [{"kind": "add_note", "body": "Amount changed on {record.name}"}],
    }
    rule_id = await save_rule(None, "deal", name, definition, None)
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)
    return rule_id, name


async def noted_deal(marker: str) -> int:
    pipeline = await make_pipeline()
    return await make_deal(pipeline, name=f"Deal {marker}")


async def change_amount(deal_id: int) -> None:
    await update_deal(deal_id, {"amount": Edit(Decimal("1000"), "2000")}, None)


async def note_of(deal_id: int) -> int:
    notes = await Comment.select(Comment.id).where(Comment.deal == deal_id)
    assert len(notes) == 1
    return int(notes[0]["id"])


async def written_note(rules: list[int]) -> tuple[int, str, int, int]:
    """Have a new rule write its note on a new deal; return the rule's id and
    name, the deal's id and the note's id."""
    marker = uuid.uuid4().hex[:10]
    rule_id, name = await note_rule(rules, marker)
    deal_id = await noted_deal(marker)
    await change_amount(deal_id)
    return rule_id, name, deal_id, await note_of(deal_id)


async def signed_in(server, role: str) -> Session:
    user = await make_user(role)
    session = Session(server.url)
    await session.sign_in(user.email)
    return session


async def test_page_names_rule_of_note(server, rules: list[int]) -> None:
    rule_id, name, deal_id, note_id = await written_note(rules)
    admin = await signed_in(server, "admin")
    manager = await signed_in(server, "sales_manager")
    link = f'<a href="/admin/workflows/{rule_id}">Rule: {name}</a>'

    try:
        admin_page = await admin.get(f"/deals/{deal_id}")
        manager_page = await manager.get(f"/deals/{deal_id}")
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
        after_delete = await admin.get(f"/deals/{deal_id}")
    finally:
        await admin.close()
        await manager.close()

    assert admin_page.status_code == 200
    assert f'id="comment-{note_id}"' in admin_page.text
    assert link in admin_page.text
    assert "Someone" not in admin_page.text
    assert manager_page.status_code == 200
    assert f'id="comment-{note_id}"' in manager_page.text
    assert f"Rule: {name}" in manager_page.text
    assert f"/admin/workflows/{rule_id}" not in manager_page.text
    assert "Someone" not in manager_page.text
    # A deleted rule's notes keep its name, with no link to a missing page.
    assert f"Rule: {name}" in after_delete.text
    assert f"/admin/workflows/{rule_id}" not in after_delete.text


async def test_live_note_names_rule(server, rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id, name = await note_rule(rules, marker)
    deal_id = await noted_deal(marker)
    admin = await signed_in(server, "admin")
    manager = await signed_in(server, "sales_manager")
    admin_socket = await admin.live(f"topic=deal:{deal_id}")
    manager_socket = await manager.live(f"topic=deal:{deal_id}")

    async def comment_frame(socket: ClientConnection) -> str:
        # The change's deal.updated event comes first, then the note's.
        while True:
            frame = await next_event(socket)
            if 'id="comment-' in frame:
                return frame

    try:
        async with publishing_from_test_process():
            await change_amount(deal_id)
            admin_frame = await comment_frame(admin_socket)
            manager_frame = await comment_frame(manager_socket)
    finally:
        await admin_socket.close()
        await manager_socket.close()
        await admin.close()
        await manager.close()

    note_id = await note_of(deal_id)
    assert f'id="comment-{note_id}"' in admin_frame
    assert f'<a href="/admin/workflows/{rule_id}">Rule: {name}</a>' in admin_frame
    assert f'id="comment-{note_id}"' in manager_frame
    assert f"Rule: {name}" in manager_frame
    assert f"/admin/workflows/{rule_id}" not in manager_frame


async def test_api_comment_names_rule(server, rules: list[int]) -> None:
    rule_id, name, deal_id, note_id = await written_note(rules)
    user = await make_user("sales_manager")
    token = await new_key(user.id, {"deal": "read", "comment": "read"})

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as api:
        listed = await api.get(
            f"/api/v1/deals/{deal_id}/comments", headers=bearer(token)
        )
        read = await api.get(f"/api/v1/comments/{note_id}", headers=bearer(token))
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
        after_delete = await api.get(
            f"/api/v1/comments/{note_id}", headers=bearer(token)
        )

    assert listed.status_code == 200, listed.text
    notes = listed.json()["data"]
    assert [note["id"] for note in notes] == [note_id]
    assert notes[0]["author"] is None
    assert notes[0]["internal"] is True
    assert notes[0]["rule"] == {"id": rule_id, "name": name}
    assert read.status_code == 200
    assert read.json() == notes[0]
    assert after_delete.status_code == 200
    assert after_delete.json()["rule"] == {"id": None, "name": name}


async def test_api_user_comment_has_no_rule(server) -> None:
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    user = await make_user("admin")
    token = await new_key(user.id)

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as api:
        created = await api.post(
            f"/api/v1/deals/{deal_id}/comments",
            json={"body": "Called them"},
            headers=bearer(token),
        )

    assert created.status_code == 201, created.text
    assert created.json()["author"] == user.id
    assert created.json()["rule"] is None
