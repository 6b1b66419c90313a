"""Deleting deals, tickets, accounts and contacts from their pages, against a
real web process: the Delete step per role, forged and stale posts, records
that others refer to, the audit row, and what open boards and pages receive.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from app.accounts.service import create_account
from app.accounts.tables import Account
from app.audit.tables import AuditLog
from app.comments.service import add_comment
from app.comments.tables import Comment
from app.contacts.service import create_contact
from app.contacts.tables import Contact
from app.deals.tables import Deal
from app.tickets.tables import Ticket
from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_team, make_ticket, make_user
from tests.live_frames import next_event

pytestmark = pytest.mark.asyncio(loop_scope="session")

HTML = {"accept": "text/html"}
TABLES = {"deal": Deal, "ticket": Ticket, "account": Account, "contact": Contact}


async def signed_in(server, user) -> Session:
    session = Session(server.url)
    await session.sign_in(user.email)
    return session


async def stored_version(record_type: str, record_id: int) -> int | None:
    table = TABLES[record_type]
    row = await table.select(table.version).where(table.id == record_id).first()
    return None if row is None else int(row["version"])


async def post_form(session: Session, path: str, data: dict[str, Any]) -> Any:
    """Post as a browser's plain form does: the token in the body, no htmx."""
    return await session.http.post(
        path, data={**data, "_csrf_token": session.csrf_token}, headers=HTML
    )


def delete_form_version(html: str, action: str) -> str:
    """Return the version in the page's delete form posting to ``action``."""
    form = re.search(
        rf'<form method="post" action="{re.escape(action)}">(.*?)</form>', html, re.S
    )
    assert form is not None, f"no delete form for {action}"
    version = re.search(r'name="version" value="(\d+)"', form.group(1))
    assert version is not None
    return version.group(1)


async def audit_actions(record_type: str, record_id: int) -> list[dict[str, Any]]:
    return await AuditLog.select(
        AuditLog.action, AuditLog.actor_id, AuditLog.changes
    ).where((AuditLog.record_type == record_type) & (AuditLog.record_id == record_id))


async def test_manager_deletes_team_deal_from_page(server) -> None:
    team = await make_team()
    manager = await make_user("sales_manager", team=team)
    rep = await make_user("sales_rep", team=team)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=rep.id, team=team, name="Old crane")
    comment_id = await add_comment("deal", deal_id, "Chase in May", rep.id)
    session = await signed_in(server, manager)

    page = await session.get(f"/deals/{deal_id}", headers=HTML)
    action = f"/deals/{deal_id}/delete"
    version = delete_form_version(page.text, action)
    response = await post_form(session, action, {"version": version})

    assert response.status_code == 303
    assert response.headers["location"] == f"/pipelines/{pipeline['id']}"
    assert await Deal.exists().where(Deal.id == deal_id) is False
    assert await Comment.exists().where(Comment.id == comment_id) is False
    rows = await audit_actions("deal", deal_id)
    deleted = [row for row in rows if row["action"] == "delete"]
    assert len(deleted) == 1
    assert deleted[0]["actor_id"] == manager.id
    assert json.loads(deleted[0]["changes"])["name"] == ["Old crane", None]
    comment_rows = await audit_actions("comment", comment_id)
    assert [row["action"] for row in comment_rows] == ["create", "delete"]
    gone = await session.get(f"/deals/{deal_id}", headers=HTML)
    assert gone.status_code == 404
    await session.close()


async def test_no_delete_right_no_step_and_403(server) -> None:
    """A rep may edit their own deal but not delete it, even with a forged post."""
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=rep.id, team=team)
    session = await signed_in(server, rep)

    page = await session.get(f"/deals/{deal_id}", headers=HTML)
    forged = await post_form(session, f"/deals/{deal_id}/delete", {"version": "1"})

    assert page.status_code == 200
    assert f"/deals/{deal_id}/delete" not in page.text
    assert "Delete this deal" not in page.text
    assert forged.status_code == 403
    assert await Deal.exists().where(Deal.id == deal_id)
    actions = [row["action"] for row in await audit_actions("deal", deal_id)]
    assert "delete" not in actions
    await session.close()


async def test_other_team_deal_refused(server) -> None:
    """A manager reads every deal but deletes only their team's."""
    manager = await make_user("sales_manager", team=await make_team())
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, team=await make_team())
    session = await signed_in(server, manager)

    page = await session.get(f"/deals/{deal_id}", headers=HTML)
    refused = await post_form(session, f"/deals/{deal_id}/delete", {"version": "1"})

    assert page.status_code == 200
    assert "Delete this deal" not in page.text
    assert refused.status_code == 403
    assert "delete" in refused.text
    assert await Deal.exists().where(Deal.id == deal_id)
    await session.close()


async def test_delete_without_csrf_token_rejected(server) -> None:
    admin = await make_user()
    ticket_id = await make_ticket()
    session = await signed_in(server, admin)

    response = await session.http.post(
        f"/tickets/{ticket_id}/delete", data={"version": "1"}, headers=HTML
    )

    assert response.status_code == 403
    assert await Ticket.exists().where(Ticket.id == ticket_id)
    await session.close()


async def test_support_lead_deletes_team_ticket(server) -> None:
    team = await make_team()
    lead = await make_user("support_lead", team=team)
    agent = await make_user("support_agent", team=team)
    ticket_id = await make_ticket(assignee=agent.id, team=team)
    other_team = await make_ticket(team=await make_team())
    lead_session = await signed_in(server, lead)
    agent_session = await signed_in(server, agent)

    agent_page = await agent_session.get(f"/tickets/{ticket_id}", headers=HTML)
    by_agent = await post_form(
        agent_session, f"/tickets/{ticket_id}/delete", {"version": "1"}
    )
    other = await post_form(
        lead_session, f"/tickets/{other_team}/delete", {"version": "1"}
    )
    page = await lead_session.get(f"/tickets/{ticket_id}", headers=HTML)
    version = delete_form_version(page.text, f"/tickets/{ticket_id}/delete")
    by_lead = await post_form(
        lead_session, f"/tickets/{ticket_id}/delete", {"version": version}
    )

    assert "Delete this ticket" not in agent_page.text
    assert by_agent.status_code == 403
    assert other.status_code == 403
    assert by_lead.status_code == 303
    assert by_lead.headers["location"] == "/tickets"
    assert await Ticket.exists().where(Ticket.id == ticket_id) is False
    assert await Ticket.exists().where(Ticket.id == other_team)
    await lead_session.close()
    await agent_session.close()


async def test_stale_version_not_deleted(server) -> None:
    admin = await make_user()
    ticket_id = await make_ticket(subject="Printer jam")
    session = await signed_in(server, admin)
    page = await session.get(f"/tickets/{ticket_id}", headers=HTML)
    seen = delete_form_version(page.text, f"/tickets/{ticket_id}/delete")
    await Ticket.update({Ticket.subject: "Printer fire", Ticket.version: 2}).where(
        Ticket.id == ticket_id
    )

    stale = await post_form(session, f"/tickets/{ticket_id}/delete", {"version": seen})

    assert stale.status_code == 409
    assert "changed this ticket after you opened its page" in stale.text
    assert delete_form_version(stale.text, f"/tickets/{ticket_id}/delete") == "2"
    assert "Printer fire" in stale.text
    assert await stored_version("ticket", ticket_id) == 2
    again = await post_form(session, f"/tickets/{ticket_id}/delete", {"version": "2"})
    assert again.status_code == 303
    assert await Ticket.exists().where(Ticket.id == ticket_id) is False
    await session.close()


@pytest.mark.parametrize("raw", ["", "abc", "-1", "0"])
async def test_invalid_version_rejected(server, raw: str) -> None:
    admin = await make_user()
    ticket_id = await make_ticket()
    session = await signed_in(server, admin)

    response = await post_form(
        session, f"/tickets/{ticket_id}/delete", {"version": raw}
    )

    assert response.status_code == 422
    assert "Version" in response.text
    assert await Ticket.exists().where(Ticket.id == ticket_id)
    await session.close()


async def test_account_with_contacts_stays(server) -> None:
    """As in the API, an account that contacts refer to is not deleted until
    they are gone."""
    admin = await make_user()
    account_id = await create_account({"name": "Parent Works"}, admin.id)
    contact_id = await create_contact(
        {"first_name": "Ada", "last_name": "Held", "account": str(account_id)},
        admin.id,
    )
    session = await signed_in(server, admin)

    page = await session.get(f"/accounts/{account_id}", headers=HTML)
    posted = await post_form(
        session, f"/accounts/{account_id}/delete", {"version": "1"}
    )

    expected = (
        f"Account {account_id} is still referred to by 1 contacts. Delete them "
        "or move them to another account first."
    )
    assert expected in page.text
    assert f'action="/accounts/{account_id}/delete"' not in page.text
    assert posted.status_code == 409
    assert expected in posted.text
    assert await Account.exists().where(Account.id == account_id)
    actions = [row["action"] for row in await audit_actions("account", account_id)]
    assert "delete" not in actions

    contact_page = await session.get(f"/contacts/{contact_id}", headers=HTML)
    contact_version = delete_form_version(
        contact_page.text, f"/contacts/{contact_id}/delete"
    )
    contact = await post_form(
        session, f"/contacts/{contact_id}/delete", {"version": contact_version}
    )
    account = await post_form(
        session, f"/accounts/{account_id}/delete", {"version": "1"}
    )

    assert contact.status_code == 303
    assert contact.headers["location"] == "/contacts"
    assert account.status_code == 303
    assert account.headers["location"] == "/accounts"
    assert await Account.exists().where(Account.id == account_id) is False
    actions = [row["action"] for row in await audit_actions("account", account_id)]
    assert actions.count("delete") == 1
    await session.close()


async def test_only_admins_delete_accounts(server) -> None:
    """Among the built-in roles only administrators delete accounts and contacts."""
    manager = await make_user("sales_manager")
    account_id = await create_account({"name": "Kept Co"}, manager.id)
    session = await signed_in(server, manager)

    page = await session.get(f"/accounts/{account_id}", headers=HTML)
    forged = await post_form(
        session, f"/accounts/{account_id}/delete", {"version": "1"}
    )

    assert "Delete this account" not in page.text
    assert forged.status_code == 403
    assert await Account.exists().where(Account.id == account_id)
    await session.close()


async def test_deleted_deal_leaves_board_and_page(server) -> None:
    deleter = await make_user(name="Dora Deleter")
    watcher_user = await make_user("support_agent")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, name="Short lived")
    watcher = await signed_in(server, watcher_user)
    board = await watcher.live(f"topic=pipeline:{pipeline['id']}")
    page = await watcher.live(f"topic=deal:{deal_id}")
    session = await signed_in(server, deleter)

    response = await post_form(session, f"/deals/{deal_id}/delete", {"version": "1"})

    assert response.status_code == 303
    board_frame = await next_event(board)
    page_frame = await next_event(page)
    assert board_frame.startswith(f"#seq pipeline:{pipeline['id']} ")
    assert f'id="deal-{deal_id}" hx-swap-oob="delete"' in board_frame
    assert page_frame.startswith(f"#seq deal:{deal_id} ")
    assert f'id="deal-{deal_id}-summary" hx-swap-oob="true"' in page_frame
    assert "This deal was deleted by Dora Deleter." in page_frame
    assert f'href="/pipelines/{pipeline["id"]}"' in page_frame
    for socket in (board, page):
        await socket.close()
    await watcher.close()
    await session.close()


async def test_deleted_ticket_leaves_board_and_page(server) -> None:
    deleter = await make_user(name="Tess Deleter")
    watcher_user = await make_user("support_lead")
    ticket_id = await make_ticket()
    watcher = await signed_in(server, watcher_user)
    board = await watcher.live("topic=tickets")
    page = await watcher.live(f"topic=ticket:{ticket_id}")
    session = await signed_in(server, deleter)

    response = await post_form(
        session, f"/tickets/{ticket_id}/delete", {"version": "1"}
    )

    assert response.status_code == 303
    board_frame = await next_event(board)
    page_frame = await next_event(page)
    assert f'id="ticket-{ticket_id}" hx-swap-oob="delete"' in board_frame
    assert "This ticket was deleted by Tess Deleter." in page_frame
    assert 'href="/tickets"' in page_frame
    for socket in (board, page):
        await socket.close()
    await watcher.close()
    await session.close()


async def test_deleted_contact_leaves_account_page(server) -> None:
    admin = await make_user(name="Carl Cleaner")
    watcher_user = await make_user("read_only")
    account_id = await create_account({"name": "Row Holders"}, admin.id)
    kept = await create_contact(
        {"first_name": "Kim", "last_name": "Kept", "account": str(account_id)},
        admin.id,
    )
    contact_id = await create_contact(
        {"first_name": "Gil", "last_name": "Gone", "account": str(account_id)},
        admin.id,
    )
    watcher = await signed_in(server, watcher_user)
    account_page = await watcher.live(f"topic=account:{account_id}")
    contact_page = await watcher.live(f"topic=contact:{contact_id}")
    session = await signed_in(server, admin)

    response = await post_form(
        session, f"/contacts/{contact_id}/delete", {"version": "1"}
    )

    assert response.status_code == 303
    account_frame = await next_event(account_page)
    contact_frame = await next_event(contact_page)
    row = f'id="account-{account_id}-contact-{contact_id}" hx-swap-oob="delete"'
    assert row in account_frame
    assert f"account-{account_id}-contact-{kept}" not in account_frame
    assert "Contacts (1)" in account_frame
    assert "This contact was deleted by Carl Cleaner." in contact_frame
    assert 'href="/contacts"' in contact_frame
    for socket in (account_page, contact_page):
        await socket.close()
    await watcher.close()
    await session.close()


async def test_deleted_account_page_gets_notice(server) -> None:
    admin = await make_user(name="Anna Admin")
    watcher_user = await make_user("support_agent")
    account_id = await create_account({"name": "Closing Down"}, admin.id)
    watcher = await signed_in(server, watcher_user)
    page = await watcher.live(f"topic=account:{account_id}")
    session = await signed_in(server, admin)

    response = await post_form(
        session, f"/accounts/{account_id}/delete", {"version": "1"}
    )

    assert response.status_code == 303
    frame = await next_event(page)
    assert f'id="account-{account_id}-summary" hx-swap-oob="true"' in frame
    assert "This account was deleted by Anna Admin." in frame
    assert 'href="/accounts"' in frame
    await page.close()
    await watcher.close()
    await session.close()
