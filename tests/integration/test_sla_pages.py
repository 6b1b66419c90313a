"""The SLA and assignment pages, through a real web server."""

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from app.assignment.service import is_away
from app.assignment.tables import AgentCapacity, AssignmentPolicy
from app.sla.tables import BusinessCalendar, SlaPolicy
from app.tickets.service import create_ticket
from tests.browserless import Session
from tests.factories import make_team, make_user, unique

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]


OPEN_SESSIONS: list[Session] = []


@pytest.fixture(autouse=True)
async def close_sessions() -> AsyncIterator[None]:
    yield
    while OPEN_SESSIONS:
        await OPEN_SESSIONS.pop().close()


async def signed_in(url: str, role: str = "admin") -> tuple[Session, int]:
    user = await make_user(role)
    session = Session(url)
    OPEN_SESSIONS.append(session)
    await session.sign_in(user.email)
    return session, user.id


async def create_calendar(session: Session, **fields: str) -> int:
    response = await session.post(
        "/admin/sla/calendars",
        {
            "name": fields.get("name", unique("Calendar")),
            "time_zone": fields.get("time_zone", "UTC"),
            "hours": fields.get(
                "hours",
                "mon 00:00-24:00\ntue 00:00-24:00\n"
                "wed 00:00-24:00\nthu 00:00-24:00\nfri 00:00-24:00\n"
                "sat 00:00-24:00\nsun 00:00-24:00",
            ),
            "holidays": fields.get("holidays", "2026-12-25"),
        },
    )
    assert response.status_code == 302, response.text
    return int(response.headers["location"].split("/")[-1].split("?")[0])


async def test_admin_creates_calendar_and_policy(server) -> None:
    session, _ = await signed_in(server.url)
    calendar_id = await create_calendar(session)
    team = await make_team()

    response = await session.post(
        "/admin/sla/policies",
        {
            "name": unique("Policy"),
            "calendar": str(calendar_id),
            "team": str(team),
            "account_tier": "gold",
            "position": "3",
            "active": "on",
            "target.urgent.first_response": "30",
            "target.urgent.resolution": "240",
        },
    )
    assert response.status_code == 302, response.text
    policy_id = int(response.headers["location"].split("/")[-1].split("?")[0])
    stored = (
        await SlaPolicy.select()
        .where(SlaPolicy.id == policy_id)
        .output(load_json=True)
        .first()
    )
    page = await session.get(f"/admin/sla/policies/{policy_id}")
    listing = await session.get("/admin/sla/policies")
    calendar = (
        await BusinessCalendar.select()
        .where(BusinessCalendar.id == calendar_id)
        .first()
    )

    assert stored["targets"] == {"urgent": {"first_response": 30, "resolution": 240}}
    assert stored["account_tier"] == "gold"
    assert calendar["holidays"] == [dt.date(2026, 12, 25)]
    assert 'value="240"' in page.text
    assert f"/admin/sla/policies/{policy_id}" in listing.text


async def test_new_forms_render(server) -> None:
    session, _ = await signed_in(server.url)

    calendar = await session.get("/admin/sla/calendars/new")
    policy = await session.get("/admin/sla/policies/new")
    teams = await session.get("/admin/assignment/")

    assert calendar.status_code == 200
    assert "mon 09:00-17:00" in calendar.text
    assert policy.status_code == 200
    assert 'name="target.urgent.first_response"' in policy.text
    assert teams.status_code == 200


async def test_calendar_form_names_bad_field(server) -> None:
    session, _ = await signed_in(server.url)

    response = await session.post(
        "/admin/sla/calendars",
        {
            "name": unique("Calendar"),
            "time_zone": "Mars/Olympus",
            "hours": "mon 09:00-17:00",
            "holidays": "",
        },
    )

    assert response.status_code == 422
    assert 'data-field="time_zone"' in response.text
    assert "Mars/Olympus" in response.text


async def test_sla_admin_closed_to_agents(server) -> None:
    session, _ = await signed_in(server.url, "support_agent")

    calendars = await session.get("/admin/sla/calendars")
    assignment = await session.get("/admin/assignment/")

    assert calendars.status_code == 403
    assert assignment.status_code == 403


async def test_board_card_carries_due_time(server) -> None:
    session, _ = await signed_in(server.url)
    calendar_id = await create_calendar(session)
    team = await make_team()
    await session.post(
        "/admin/sla/policies",
        {
            "name": unique("Policy"),
            "calendar": str(calendar_id),
            "team": str(team),
            "position": "0",
            "active": "on",
            "target.high.first_response": "90",
        },
    )
    ticket_id = await create_ticket(
        {"subject": unique("Card"), "priority": "high", "team": str(team)}, None
    )

    board = await session.get("/tickets")
    detail = await session.get(f"/tickets/{ticket_id}")

    card = board.text.split(f'id="ticket-{ticket_id}"')[1].split("</article>")[0]
    assert "data-sla-due=" in card
    assert 'data-sla-metric="first_response"' in card
    assert "data-sla-due=" in detail.text


async def test_sla_report_page_lists_counts(server) -> None:
    session, _ = await signed_in(server.url)

    response = await session.get("/sla/report?start=2026-03-01&end=2026-03-31")
    bad = await session.get("/sla/report?start=2026-04-01&end=2026-03-31")

    assert response.status_code == 200
    assert "SLA report" in response.text
    assert bad.status_code == 400
    assert 'data-field="start"' in bad.text


async def test_agent_marks_self_away(server) -> None:
    session, user_id = await signed_in(server.url, "support_agent")

    away = await session.post("/availability", {"away": "1"})
    page = await session.get("/availability")
    assert away.status_code == 302
    assert await is_away(user_id)
    assert 'data-away="yes"' in page.text

    await session.post("/availability", {"away": "0"})
    assert not await is_away(user_id)


async def test_admin_sets_team_capacity(server) -> None:
    session, _ = await signed_in(server.url)
    team = await make_team()
    agent = await make_user("support_agent", team=team)

    response = await session.post(
        f"/admin/assignment/teams/{team}",
        {
            "strategy": "least_busy",
            "require_online": "on",
            "default_capacity": "5",
            f"capacity.{agent.id}": "2",
        },
    )
    bad = await session.post(
        f"/admin/assignment/teams/{team}",
        {"strategy": "least_busy", "default_capacity": "many"},
    )
    policy = (
        await AssignmentPolicy.select().where(AssignmentPolicy.team == team).first()
    )
    capacity = await AgentCapacity.select().where(AgentCapacity.team == team).first()
    page = await session.get(f"/admin/assignment/teams/{team}")

    assert response.status_code == 302, response.text
    assert policy["strategy"] == "least_busy"
    assert policy["require_online"] is True
    assert policy["default_capacity"] == 5
    assert capacity["user"] == agent.id
    assert capacity["capacity"] == 2
    assert bad.status_code == 422
    assert 'data-field="default_capacity"' in bad.text
    assert f'name="capacity.{agent.id}"' in page.text
