"""DELETE through the API against a real web process: scopes, If-Match,
dependents, comments going with their record, the audit log and live boards."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.accounts.service import create_account
from app.audit.tables import AuditLog
from app.comments.service import add_comment
from app.comments.tables import Comment
from app.contacts.service import create_contact
from app.deals.tables import Deal
from app.events.tables import Event
from app.tickets.tables import Ticket
from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_team, make_ticket, make_user
from tests.integration.test_api import WRITE_ALL, bearer, new_key
from tests.live_frames import next_event

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def audit_rows(record_type: str, record_id: int) -> list[dict[str, Any]]:
    return await AuditLog.select(
        AuditLog.action, AuditLog.actor_id, AuditLog.changes
    ).where((AuditLog.record_type == record_type) & (AuditLog.record_id == record_id))


async def test_delete_deal_audits_before_values(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id, amount="4321", name="Gone")
    token = await new_key(user.id)

    response = await api.delete(f"/api/v1/deals/{deal_id}", headers=bearer(token))

    assert response.status_code == 204
    assert await Deal.exists().where(Deal.id == deal_id) is False
    rows = await audit_rows("deal", deal_id)
    assert [row["action"] for row in rows] == ["delete"]
    assert rows[0]["actor_id"] == user.id
    changes = json.loads(rows[0]["changes"])
    assert changes["name"] == ["Gone", None]
    assert changes["amount"][0] in ("4321.00", 4321, "4321")
    again = await api.get(f"/api/v1/deals/{deal_id}", headers=bearer(token))
    assert again.status_code == 404


async def test_delete_stale_if_match_gets_412(api) -> None:
    user = await make_user()
    ticket_id = await make_ticket(assignee=user.id)
    token = await new_key(user.id)
    await api.patch(
        f"/api/v1/tickets/{ticket_id}",
        json={"subject": "Moved on"},
        headers=bearer(token, **{"if-match": "1"}),
    )

    stale = await api.delete(
        f"/api/v1/tickets/{ticket_id}", headers=bearer(token, **{"if-match": '"1"'})
    )

    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    assert await Ticket.exists().where(Ticket.id == ticket_id)
    actions = [row["action"] for row in await audit_rows("ticket", ticket_id)]
    assert "delete" not in actions
    current = await api.delete(
        f"/api/v1/tickets/{ticket_id}", headers=bearer(token, **{"if-match": '"2"'})
    )
    assert current.status_code == 204


async def test_manager_deletes_only_team_deals(api) -> None:
    team = await make_team()
    manager = await make_user("sales_manager", team=team)
    rep = await make_user("sales_rep", team=team)
    pipeline = await make_pipeline()
    teams_deal = await make_deal(pipeline, owner=rep.id, team=team)
    other_teams = await make_deal(pipeline, team=await make_team())
    manager_key = await new_key(manager.id)
    rep_key = await new_key(rep.id)

    by_rep = await api.delete(f"/api/v1/deals/{teams_deal}", headers=bearer(rep_key))
    outside = await api.delete(
        f"/api/v1/deals/{other_teams}", headers=bearer(manager_key)
    )
    inside = await api.delete(
        f"/api/v1/deals/{teams_deal}", headers=bearer(manager_key)
    )

    # Reps may not delete deals, and managers read every deal but delete
    # only their team's.
    assert by_rep.status_code == 403
    assert outside.status_code == 403
    assert "delete" in outside.json()["detail"]
    assert inside.status_code == 204
    assert await Deal.exists().where(Deal.id == other_teams)
    assert await Deal.exists().where(Deal.id == teams_deal) is False


async def test_read_scope_key_cannot_delete(api) -> None:
    user = await make_user()
    ticket_id = await make_ticket()
    token = await new_key(user.id, {"ticket": "read"})

    response = await api.delete(f"/api/v1/tickets/{ticket_id}", headers=bearer(token))

    assert response.status_code == 403
    assert await Ticket.exists().where(Ticket.id == ticket_id)


async def test_account_with_contacts_gets_409(api) -> None:
    user = await make_user()
    account_id = await create_account({"name": "Parent Co"}, user.id)
    contact_id = await create_contact(
        {"first_name": "Ada", "last_name": "Dependent", "account": str(account_id)},
        user.id,
    )
    token = await new_key(user.id, WRITE_ALL)

    refused = await api.delete(f"/api/v1/accounts/{account_id}", headers=bearer(token))

    assert refused.status_code == 409
    body = refused.json()
    assert body["dependents"] == {"contacts": 1}
    assert body["field"] == "id"
    assert "contacts" in body["detail"]
    assert await audit_rows("account", account_id) != []
    assert all(
        row["action"] != "delete" for row in await audit_rows("account", account_id)
    )

    contact = await api.delete(f"/api/v1/contacts/{contact_id}", headers=bearer(token))
    account = await api.delete(f"/api/v1/accounts/{account_id}", headers=bearer(token))
    assert contact.status_code == 204
    assert account.status_code == 204


async def test_deal_comments_deleted_and_audited(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    comment_id = await add_comment("deal", deal_id, "Call back on Monday", user.id)
    token = await new_key(user.id)

    response = await api.delete(f"/api/v1/deals/{deal_id}", headers=bearer(token))

    assert response.status_code == 204
    assert await Comment.exists().where(Comment.id == comment_id) is False
    rows = await audit_rows("comment", comment_id)
    assert [row["action"] for row in rows] == ["create", "delete"]


async def test_delete_removes_card_from_board(server, api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id)
    watcher = Session(server.url)
    await watcher.sign_in(user.email)
    socket = await watcher.live(f"topic=pipeline:{pipeline['id']}")

    response = await api.delete(f"/api/v1/deals/{deal_id}", headers=bearer(token))

    assert response.status_code == 204
    frame = await next_event(socket)
    assert frame.startswith(f"#seq pipeline:{pipeline['id']} ")
    assert f'id="deal-{deal_id}" hx-swap-oob="delete"' in frame
    events = await Event.select(Event.kind, Event.topics).where(
        (Event.record_type == "deal") & (Event.record_id == deal_id)
    )
    assert events == [
        {
            "kind": "deal.deleted",
            "topics": [f"deal:{deal_id}", f"pipeline:{pipeline['id']}"],
        }
    ]
    await socket.close()
    await watcher.close()


async def test_comment_delete_needs_delete_right(api) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    admin = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=rep.id, team=team)
    comment_id = await add_comment("deal", deal_id, "Rep's note", rep.id)

    # Among the built-in roles only administrators delete comments.
    by_rep = await api.delete(
        f"/api/v1/comments/{comment_id}", headers=bearer(await new_key(rep.id))
    )
    by_admin = await api.delete(
        f"/api/v1/comments/{comment_id}", headers=bearer(await new_key(admin.id))
    )
    missing = await api.delete(
        f"/api/v1/comments/{comment_id}", headers=bearer(await new_key(admin.id))
    )

    assert by_rep.status_code == 403
    assert by_admin.status_code == 204
    assert missing.status_code == 404
    rows = await audit_rows("comment", comment_id)
    assert [row["action"] for row in rows] == ["create", "delete"]
    assert rows[1]["actor_id"] == admin.id
