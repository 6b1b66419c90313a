"""Admin pages for users, teams and roles, and field rules on edit forms."""

from __future__ import annotations

import json
import uuid

import pytest

from app.access.tables import Role, UserRole
from app.auth.tables import Team, TeamMember, User
from app.deals.tables import Deal
from app.events.tables import Event
from tests.browserless import Session
from tests.factories import (
    HIDDEN_AMOUNT,
    PASSWORD,
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
    shows_hidden_amount,
    unique,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def admin_session(url: str) -> Session:
    admin = await make_user("admin")
    session = Session(url)
    await session.sign_in(admin.email)
    return session


async def role_id(name: str) -> int:
    row = await Role.select(Role.id).where(Role.name == name).first()
    return row["id"]


async def test_admin_creates_user_with_roles_and_teams(server) -> None:
    session = await admin_session(server.url)
    team = await make_team()
    email = f"{uuid.uuid4().hex[:8]}@test.example"

    response = await session.post(
        "/admin/users",
        {
            "name": "Nora New",
            "email": email,
            "password": PASSWORD,
            "roles": [str(await role_id("sales_rep")), str(await role_id("read_only"))],
            "teams": [str(team)],
            "primary_team": str(team),
        },
        htmx=False,
    )

    assert response.status_code == 302
    user = await User.select().where(User.email == email).first()
    assert user["team"] == team
    roles = await UserRole.select(UserRole.role_id).where(
        UserRole.user_id == user["id"]
    )
    assert {row["role_id"] for row in roles} == {
        await role_id("sales_rep"),
        await role_id("read_only"),
    }
    assert await TeamMember.exists().where(
        (TeamMember.user == user["id"]) & (TeamMember.team == team)
    )
    event = (
        await Event.select()
        .where((Event.record_type == "user") & (Event.record_id == user["id"]))
        .first()
    )
    assert event["kind"] == "user.created"
    new_session = Session(server.url)
    await new_session.sign_in(email)
    assert (await new_session.get("/pipelines")).status_code in (200, 302)
    await new_session.close()
    await session.close()


async def test_user_without_role_is_rejected(server) -> None:
    session = await admin_session(server.url)

    response = await session.post(
        "/admin/users",
        {"name": "No Role", "email": "norole@test.example", "password": PASSWORD},
        htmx=False,
    )

    assert response.status_code == 422
    assert "Roles must include at least one role." in response.text
    assert not await User.exists().where(User.email == "norole@test.example")
    await session.close()


async def test_user_list_searches_and_paginates(server) -> None:
    session = await admin_session(server.url)
    tag = uuid.uuid4().hex[:8]
    for number in range(3):
        await make_user("read_only", name=f"Searchable {tag} {number}")

    first = await session.get(f"/admin/users?q={tag}&size=2")
    second = await session.get(f"/admin/users?q={tag}&size=2&page=2")

    assert first.status_code == 200
    assert "3 users matching" in first.text
    assert f"Searchable {tag} 0" in first.text
    assert f"Searchable {tag} 2" not in first.text
    assert 'rel="next"' in first.text
    assert f"Searchable {tag} 2" in second.text
    await session.close()


async def test_admin_edits_roles_and_teams(server) -> None:
    session = await admin_session(server.url)
    team_a, team_b = await make_team(), await make_team()
    user = await make_user("support_agent", team=team_a)

    response = await session.post(
        f"/admin/users/{user.id}",
        {
            "name": user.name,
            "roles": [str(await role_id("support_lead"))],
            "teams": [str(team_b)],
            "primary_team": str(team_b),
        },
        htmx=False,
    )

    assert response.status_code == 200
    assert "Saved." in response.text
    roles = await UserRole.select(UserRole.role_id).where(UserRole.user_id == user.id)
    assert [row["role_id"] for row in roles] == [await role_id("support_lead")]
    members = await TeamMember.select(TeamMember.team).where(TeamMember.user == user.id)
    assert [row["team"] for row in members] == [team_b]
    event = (
        await Event.select()
        .where((Event.kind == "user.updated") & (Event.record_id == user.id))
        .first()
    )
    assert json.loads(event["changes"])["roles"][1] == [await role_id("support_lead")]
    await session.close()


async def test_last_admin_keeps_admin_role(server) -> None:
    session = await admin_session(server.url)
    admins = await UserRole.raw(
        "SELECT ur.user_id FROM user_role ur JOIN role r ON r.id = ur.role_id "
        "WHERE r.name = 'admin'"
    )
    assert admins

    # Deactivating oneself is refused whatever the number of admins.
    me = await User.select(User.id).order_by(User.id, ascending=False).first()
    response = await session.post(f"/admin/users/{me['id']}/deactivate", {}, htmx=False)

    assert response.status_code == 422
    assert "Active cannot be turned off for your own account." in response.text
    await session.close()


async def test_deactivate_page_ends_sessions(server) -> None:
    session = await admin_session(server.url)
    user = await make_user("read_only")
    victim = Session(server.url)
    await victim.sign_in(user.email)

    response = await session.post(f"/admin/users/{user.id}/deactivate", {}, htmx=False)
    page = await victim.get("/accounts", headers={"accept": "text/html"})
    reactivated = await session.post(
        f"/admin/users/{user.id}/reactivate", {}, htmx=False
    )

    assert response.status_code == 200
    assert "Deactivated" in response.text
    assert page.status_code == 302
    assert reactivated.status_code == 200
    stored = await User.select(User.active).where(User.id == user.id).first()
    assert stored["active"] is True
    await victim.close()
    await session.close()


async def test_teams_page_creates_and_renames(server) -> None:
    session = await admin_session(server.url)
    name = unique("Team")

    created = await session.post("/admin/teams", {"name": name}, htmx=False)
    team = await Team.select(Team.id).where(Team.name == name).first()
    renamed = await session.post(
        f"/admin/teams/{team['id']}", {"name": name + " two"}, htmx=False
    )
    duplicate = await session.post("/admin/teams", {"name": name + " two"}, htmx=False)

    assert created.status_code == 302
    assert renamed.status_code == 302
    assert duplicate.status_code == 422
    assert "belongs to another team already" in duplicate.text
    await session.close()


def role_form(name: str, **grid: str) -> dict[str, str]:
    form = {"name": name, "label": f"Label {name}"}
    for key, value in grid.items():
        form[key.replace("__", ".")] = value
    return form


async def test_role_grid_saves_and_validates(server) -> None:
    session = await admin_session(server.url)
    name = f"auditor_{uuid.uuid4().hex[:6]}"

    created = await session.post(
        "/admin/roles",
        {
            **role_form(name, perm__deal__read="team", perm__ticket__read="all"),
            "rule.deal.amount": "hidden",
            "require_two_factor": "on",
        },
        htmx=False,
    )
    invalid_scope = await session.post(
        "/admin/roles", role_form(name + "x", perm__deal__read="everyone"), htmx=False
    )
    invalid_rule = await session.post(
        "/admin/roles",
        {**role_form(name + "y"), "rule.deal.amount": "secret"},
        htmx=False,
    )

    assert created.status_code == 302
    role = await Role.select().where(Role.name == name).first()
    permissions = json.loads(role["permissions"])
    assert permissions["deal"]["read"] == "team"
    assert permissions["ticket"]["read"] == "all"
    assert json.loads(role["field_rules"]) == {"deal": {"amount": "hidden"}}
    assert role["require_two_factor"] is True
    assert invalid_scope.status_code == 422
    assert "Permissions.deal.read &#39;everyone&#39; is not a scope" in (
        invalid_scope.text
    )
    assert invalid_rule.status_code == 422
    assert "Field rules.deal.amount &#39;secret&#39; is not a field rule" in (
        invalid_rule.text
    )
    assert not await Role.exists().where(Role.name.is_in([name + "x", name + "y"]))
    await session.close()


async def test_admin_role_grants_cannot_change(server) -> None:
    session = await admin_session(server.url)
    admin_id = await role_id("admin")

    response = await session.post(
        f"/admin/roles/{admin_id}",
        role_form("admin", perm__deal__read="none"),
        htmx=False,
    )

    assert response.status_code == 422
    assert "of the admin role cannot change" in response.text
    await session.close()


async def test_role_change_applies_on_next_request(server) -> None:
    session = await admin_session(server.url)
    name = f"viewer_{uuid.uuid4().hex[:6]}"
    await session.post("/admin/roles", role_form(name), htmx=False)
    custom = await Role.select(Role.id).where(Role.name == name).first()
    user = await make_user("read_only")
    await UserRole.delete().where(UserRole.user_id == user.id)
    await UserRole.insert(UserRole(user_id=user.id, role_id=custom["id"]))
    viewer = Session(server.url)
    await viewer.sign_in(user.email)

    before = await viewer.get("/tickets")
    await session.post(
        f"/admin/roles/{custom['id']}",
        role_form(name, perm__ticket__read="all"),
        htmx=False,
    )
    after = await viewer.get("/tickets")

    assert before.status_code == 403
    assert after.status_code == 200
    await viewer.close()
    await session.close()


async def test_read_only_field_in_edit_is_rejected(server) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=rep.id, team=team)
    other_team = await make_team()
    session = Session(server.url)
    await session.sign_in(rep.email)

    form = await session.get(f"/deals/{deal_id}/form")
    response = await session.post(
        f"/deals/{deal_id}", {"team": str(other_team), "base_team": str(team)}
    )

    assert 'name="team"' not in form.text
    assert 'name="base_team"' not in form.text
    assert response.status_code == 422
    assert "Team is read-only for your role." in response.text
    stored = await Deal.select(Deal.team).where(Deal.id == deal_id).first()
    assert stored["team"] == team
    await session.close()


async def test_hidden_field_never_in_forms(server) -> None:
    team = await make_team()
    agent = await make_user("support_agent", team=team)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount=HIDDEN_AMOUNT)
    ticket_id = await make_ticket("new", team=team)
    session = Session(server.url)
    await session.sign_in(agent.email)

    deal_page = await session.get(f"/deals/{deal_id}")
    amount_edit = await session.post(f"/deals/{deal_id}", {"amount": "1"})
    ticket_page = await session.get(f"/tickets/{ticket_id}")

    assert deal_page.status_code == 200
    assert not shows_hidden_amount(deal_page.text)
    assert ">Amount<" not in deal_page.text
    # Support agents may not edit deals at all.
    assert amount_edit.status_code == 403
    assert ticket_page.status_code == 200
    assert 'name="subject"' in ticket_page.text
    assert 'name="team"' not in ticket_page.text
    await session.close()


async def test_create_scope_own_rejects_other_owner(server) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    colleague = await make_user("sales_rep", team=team)
    pipeline = await make_pipeline()
    session = Session(server.url)
    await session.sign_in(rep.email)
    values = {
        "pipeline": str(pipeline["id"]),
        "stage": str(pipeline["stages"][0]),
        "name": unique("Rep deal"),
    }

    other = await session.post("/deals/", {**values, "owner": str(colleague.id)})
    own = await session.post("/deals/", values, htmx=False)

    assert other.status_code == 422
    assert "must be you" in other.text
    assert own.status_code == 302
    created = (
        await Deal.select(Deal.owner, Deal.team)
        .where(Deal.name == values["name"])
        .first()
    )
    assert created == {"owner": rep.id, "team": team}
    await session.close()
