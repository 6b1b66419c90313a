"""Record pages, boards and their live updates for roles that hide fields:
a hidden field is left out, and a heading that stays reads "(hidden)"."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest
import websockets

from app.deals.tables import Stage
from app.web.live import CLOSE_POLICY_VIOLATION
from tests.browserless import Session
from tests.factories import (
    make_account,
    make_contact,
    make_deal,
    make_pipeline,
    make_role,
    make_team,
    make_ticket,
    make_user,
)
from tests.live_frames import next_event

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

READ_ALL = {
    "deal": {"read": "all"},
    "ticket": {"read": "all"},
    "account": {"read": "all"},
    "contact": {"read": "all"},
}
EDIT_DEALS = {"deal": {"read": "all", "edit": "all"}}
# The mark between a breadcrumb's pipeline and stage.
CRUMB = "\u203a"


def tag() -> str:
    return f"hf{uuid.uuid4().hex[:10]}"


async def signed_in(server: Any, email: str) -> Session:
    session = Session(server.url)
    await session.sign_in(email)
    return session


async def page_of(server: Any, role: str, path: str) -> str:
    """Fetch the page at ``path`` as a new user who has ``role``."""
    user = await make_user(role)
    session = await signed_in(server, user.email)
    try:
        response = await session.get(path)
    finally:
        await session.close()
    assert response.status_code == 200, response.text
    return response.text


def element(html: str, element_id: str) -> str:
    """Return the element with ``element_id``, up to its closing tag."""
    match = re.search(
        rf'<(?P<tag>\w+)[^>]*id="{re.escape(element_id)}"[^>]*>.*?</(?P=tag)>',
        html,
        re.S,
    )
    assert match is not None, f"no element {element_id}"
    return match.group(0)


async def commit_stage_deal(word: str, **values: Any) -> tuple[dict[str, Any], int]:
    """A deal in an open stage whose fixed probability makes it "Commit"."""
    pipeline = await make_pipeline((f"Stage {word}", f"Later {word}", "Won", "Lost"))
    await Stage.update({Stage.probability: 90}).where(Stage.id == pipeline["stages"][0])
    return pipeline, await make_deal(pipeline, **values)


async def test_deal_page_hides_stage(server) -> None:
    word = tag()
    pipeline, deal = await commit_stage_deal(word)
    role = await make_role(EDIT_DEALS, {"deal": {"stage": "hidden"}})

    html = await page_of(server, role, f"/deals/{deal}")

    crumbs = element(html, f"deal-{deal}-crumbs")
    assert f'href="/pipelines/{pipeline["id"]}"' in crumbs
    assert CRUMB not in crumbs
    assert word not in html
    assert 'data-field="stage"' not in html
    assert "Commit" not in element(html, f"deal-{deal}-summary")
    assert 'name="stage"' not in html
    assert "From the stage</option>" in html
    assert "From the stage (" not in html


async def test_deal_page_shows_visible_stage(server) -> None:
    word = tag()
    _, deal = await commit_stage_deal(word)
    role = await make_role(EDIT_DEALS)

    html = await page_of(server, role, f"/deals/{deal}")

    assert f"{CRUMB} Stage {word}</nav>" in element(html, f"deal-{deal}-crumbs")
    summary = element(html, f"deal-{deal}-summary")
    assert f'data-field="stage">Stage {word}<' in summary
    assert "Commit" in summary
    assert "From the stage (Commit)" in html


async def test_deal_page_hides_name(server) -> None:
    word = tag()
    pipeline = await make_pipeline()
    deal = await make_deal(pipeline, name=f"Deal {word}")
    role = await make_role(EDIT_DEALS, {"deal": {"name": "hidden"}})

    html = await page_of(server, role, f"/deals/{deal}")

    assert "<h1>(hidden)</h1>" in html
    assert "<title>(hidden) ·" in html
    assert "<h1>None</h1>" not in html
    assert word not in html
    assert 'name="name"' not in html


async def test_deal_page_hides_owner_and_team(server) -> None:
    word = tag()
    owner = await make_user(name=f"Owner {word}")
    team = await make_team(f"Team {word}")
    pipeline = await make_pipeline()
    deal = await make_deal(pipeline, owner=owner.id, team=team)
    role = await make_role(EDIT_DEALS, {"deal": {"owner": "hidden", "team": "hidden"}})

    html = await page_of(server, role, f"/deals/{deal}")

    summary = element(html, f"deal-{deal}-summary")
    assert "Unassigned" not in summary
    assert 'data-field="owner"' not in summary
    assert "<dt>Team</dt>" not in summary
    assert word not in html
    assert 'name="owner"' not in html
    assert 'name="team"' not in html
    assert ">Unassigned</option>" not in html


async def test_board_card_hides_fields(server) -> None:
    word = tag()
    owner = await make_user(name=f"Owner {word}")
    account = await make_account(name=f"Account {word}")
    pipeline = await make_pipeline()
    deal = await make_deal(
        pipeline, name=f"Deal {word}", owner=owner.id, account=account
    )
    role = await make_role(
        {"deal": {"read": "all"}},
        {"deal": {"name": "hidden", "owner": "hidden", "account": "hidden"}},
    )

    html = await page_of(server, role, f"/pipelines/{pipeline['id']}")

    card = element(html, f"deal-{deal}")
    assert f'<a class="card-title" href="/deals/{deal}">(hidden)</a>' in card
    assert "Unassigned" not in card
    assert "No account" not in card
    assert word not in html


async def test_board_filters_on_hidden_fields_rejected(server) -> None:
    pipeline = await make_pipeline()
    role = await make_role(
        READ_ALL,
        {"deal": {"owner": "hidden"}, "ticket": {"team": "hidden"}},
    )
    user = await make_user(role)
    session = await signed_in(server, user.email)
    board = f"/pipelines/{pipeline['id']}"

    deal_board = await session.get(board)
    by_owner = await session.get(board, params={"person": str(user.id)})
    cards = await session.get(
        f"{board}/stages/{pipeline['stages'][0]}/cards",
        params={"person": str(user.id)},
    )
    ticket_board = await session.get("/tickets")
    by_team = await session.get("/tickets", params={"team": "1"})
    exported = await session.get("/exports/tickets.csv", params={"team": "1"})
    socket = await session.live(f"topic=pipeline:{pipeline['id']}&person={user.id}")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(5):
            while True:
                await socket.recv()
    await session.close()

    assert deal_board.status_code == 200
    assert 'name="person"' not in deal_board.text
    assert 'name="team"' in deal_board.text
    assert by_owner.status_code == 400
    assert "deal owner" in by_owner.text
    assert cards.status_code == 400
    assert ticket_board.status_code == 200
    assert 'name="team"' not in ticket_board.text
    assert 'name="person"' in ticket_board.text
    assert by_team.status_code == 400
    assert "ticket team" in by_team.text
    assert exported.status_code == 400
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_POLICY_VIOLATION


async def test_live_summary_hides_stage(server) -> None:
    word = tag()
    pipeline, deal = await commit_stage_deal(word)
    first, second = pipeline["stages"][:2]
    role = await make_role({"deal": {"read": "all"}}, {"deal": {"stage": "hidden"}})
    blind = await signed_in(server, (await make_user(role)).email)
    sighted = await signed_in(server, (await make_user()).email)
    blind_socket = await blind.live(f"topic=deal:{deal}")
    sighted_socket = await sighted.live(f"topic=deal:{deal}")

    saved = await sighted.post(
        f"/deals/{deal}", {"stage": str(second), "base_stage": str(first)}
    )
    blind_frame = await next_event(blind_socket)
    sighted_frame = await next_event(sighted_socket)
    await blind_socket.close()
    await sighted_socket.close()
    await blind.close()
    await sighted.close()

    assert saved.status_code == 200
    assert f'id="deal-{deal}-crumbs"' in blind_frame
    assert word not in blind_frame
    assert 'data-field="stage"' not in blind_frame
    assert f"{CRUMB} Later {word}</nav>" in sighted_frame
    assert f'data-field="stage">Later {word}<' in sighted_frame


async def test_ticket_page_hides_fields(server) -> None:
    word = tag()
    assignee = await make_user(name=f"Agent {word}")
    ticket = await make_ticket(
        "pending", subject=f"Subject {word}", assignee=assignee.id, priority="urgent"
    )
    role = await make_role(
        READ_ALL,
        {
            "ticket": {
                "subject": "hidden",
                "status": "hidden",
                "priority": "hidden",
                "assignee": "hidden",
            }
        },
    )

    html = await page_of(server, role, f"/tickets/{ticket}")
    board = await page_of(server, role, "/tickets")

    summary = element(html, f"ticket-{ticket}-summary")
    assert "<h1>(hidden)</h1>" in summary
    assert f"<title>#T-{ticket} (hidden) ·" in html
    assert word not in html
    assert "Unassigned" not in summary
    assert "Pending" not in summary
    assert "Urgent" not in summary
    card = element(board, f"ticket-{ticket}")
    assert f'href="/tickets/{ticket}">(hidden)</a>' in card
    assert "Unassigned" not in card
    assert "Urgent" not in card
    assert word not in board


async def test_account_page_hides_fields(server) -> None:
    word = tag()
    owner = await make_user(name=f"Owner {word}")
    account = await make_account(
        name=f"Account {word}",
        domain=f"{word}.example",
        industry=f"Industry {word}",
        owner=owner.id,
    )
    contact = await make_contact(
        account=account, last_name=f"Last{word}", email=f"{word}@example.com"
    )
    pipeline = await make_pipeline((f"Stage {word}", "Won", "Lost"))
    await make_deal(pipeline, account=account, name=f"Deal {word}")
    role = await make_role(
        READ_ALL,
        {
            "account": {"name": "hidden", "industry": "hidden", "owner": "hidden"},
            "contact": {"last_name": "hidden", "email": "hidden"},
            "deal": {"name": "hidden", "stage": "hidden"},
        },
    )

    html = await page_of(server, role, f"/accounts/{account}")
    listed = await page_of(server, role, f"/accounts?q={word}.example")

    summary = element(html, f"account-{account}-summary")
    assert "<h1>(hidden)</h1>" in summary
    assert "Unassigned" not in summary
    assert "<dt>Industry</dt>" not in summary
    hidden = ["Account ", "Industry ", "Owner ", "Last", "Deal ", "Stage "]
    for text in [*(prefix + word for prefix in hidden), f"{word}@example.com"]:
        assert text not in html
    assert f'href="/contacts/{contact}">(hidden)</a>' in html
    assert "Unnamed contact" not in html
    assert f'href="/accounts/{account}">(hidden)</a>' in listed
    assert ">Industry</th>" not in listed
    assert f"Account {word}" not in listed
    assert f"Industry {word}" not in listed


async def test_contact_page_hides_fields(server) -> None:
    word = tag()
    owner = await make_user(name=f"Owner {word}")
    account = await make_account(name=f"Account {word}")
    first_name = tag()
    contact = await make_contact(
        first_name=first_name,
        last_name=f"Last{word}",
        email=f"{word}@example.com",
        title=f"Title {word}",
        account=account,
        owner=owner.id,
    )
    role = await make_role(
        READ_ALL,
        {
            "contact": {
                "last_name": "hidden",
                "email": "hidden",
                "title": "hidden",
                "account": "hidden",
                "owner": "hidden",
            }
        },
    )

    html = await page_of(server, role, f"/contacts/{contact}")
    listed = await page_of(server, role, f"/contacts?q={first_name}")

    summary = element(html, f"contact-{contact}-summary")
    assert "<h1>(hidden)</h1>" in summary
    assert "Unassigned" not in summary
    assert "Unnamed contact" not in html
    assert "<dt>Account</dt>" not in summary
    assert word not in html
    assert f'href="/contacts/{contact}">(hidden)</a>' in listed
    assert word not in listed
    assert ">Email</th>" not in listed
    assert ">Title</th>" not in listed
