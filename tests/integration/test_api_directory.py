"""Pipelines, stages, comments, users and teams through the API, against a
real web process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from app.access.service import RoleInput, save_role
from app.accounts.service import create_account
from app.audit.tables import AuditLog
from app.auth.tables import Team, User
from app.comments.service import add_comment
from app.deals.tables import Stage
from app.events.tables import Event
from tests.factories import (
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
    unique,
)
from tests.integration.test_api import bearer, new_key

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def test_pipeline_and_stages_readable(api) -> None:
    pipeline = await make_pipeline()
    rep = await make_user("sales_rep", team=await make_team())
    token = await new_key(rep.id, {"deal": "read"})

    one = await api.get(f"/api/v1/pipelines/{pipeline['id']}", headers=bearer(token))
    stages = await api.get(
        f"/api/v1/pipelines/{pipeline['id']}/stages?limit=3", headers=bearer(token)
    )
    rest = await api.get(stages.json()["next"], headers=bearer(token))
    listed = await api.get("/api/v1/pipelines?limit=200", headers=bearer(token))

    assert one.status_code == 200
    assert one.headers["etag"] == '"1"'
    assert [row["id"] for row in stages.json()["data"]] == pipeline["stages"][:3]
    assert [row["id"] for row in rest.json()["data"]] == pipeline["stages"][3:]
    assert rest.json()["next"] is None
    assert stages.json()["data"][2]["kind"] == "won"
    assert pipeline["id"] in [row["id"] for row in listed.json()["data"]]


async def test_pipeline_writes_admin_only(api) -> None:
    manager = await make_user("sales_manager", team=await make_team())
    token = await new_key(manager.id)

    response = await api.post(
        "/api/v1/pipelines", json={"name": unique("Pipe")}, headers=bearer(token)
    )

    assert response.status_code == 403
    assert "administrators" in response.json()["detail"]


async def test_admin_builds_pipeline(api) -> None:
    admin = await make_user()
    token = await new_key(admin.id)
    name = unique("Renewals")

    created = await api.post(
        "/api/v1/pipelines", json={"name": name}, headers=bearer(token)
    )
    pipeline_id = created.json()["id"]
    stage = await api.post(
        f"/api/v1/pipelines/{pipeline_id}/stages",
        json={"name": "Qualify", "probability": 20, "position": 0},
        headers=bearer(token),
    )
    stage_id = stage.json()["id"]
    changed = await api.patch(
        f"/api/v1/stages/{stage_id}",
        json={"probability": 35},
        headers=bearer(token, **{"if-match": '"1"'}),
    )
    stale = await api.patch(
        f"/api/v1/stages/{stage_id}",
        json={"probability": 50},
        headers=bearer(token, **{"if-match": '"1"'}),
    )
    duplicate = await api.post(
        "/api/v1/pipelines", json={"name": name}, headers=bearer(token)
    )
    bad_kind = await api.post(
        f"/api/v1/pipelines/{pipeline_id}/stages",
        json={"name": "Odd", "kind": "maybe"},
        headers=bearer(token),
    )

    assert created.status_code == 201
    assert created.headers["location"] == f"/api/v1/pipelines/{pipeline_id}"
    assert stage.status_code == 201
    assert stage.json()["pipeline"] == pipeline_id
    assert changed.status_code == 200
    assert changed.json()["probability"] == 35
    assert changed.headers["etag"] == '"2"'
    assert stale.status_code == 412
    assert duplicate.status_code == 422
    assert duplicate.json()["field"] == "name"
    assert bad_kind.status_code == 422
    assert bad_kind.json()["field"] == "kind"
    assert bad_kind.json()["value"] == "maybe"
    reloads = await Event.select(Event.kind).where(
        (Event.kind == "board.reload") & (Event.record_id == pipeline_id)
    )
    assert len(reloads) == 3
    audited = (
        await AuditLog.select(AuditLog.record_type, AuditLog.action, AuditLog.changes)
        .where(
            ((AuditLog.record_type == "pipeline") & (AuditLog.record_id == pipeline_id))
            | ((AuditLog.record_type == "stage") & (AuditLog.record_id == stage_id))
        )
        .order_by(AuditLog.id)
    )
    assert [(row["record_type"], row["action"]) for row in audited] == [
        ("pipeline", "create"),
        ("stage", "create"),
        ("stage", "update"),
    ]
    assert json.loads(audited[2]["changes"])["probability"] == [20, 35]


async def test_users_show_email_to_admins(api) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    colleague = await make_user("sales_rep", team=team)
    admin = await make_user()
    rep_key = await new_key(rep.id, {"deal": "read"})

    other = await api.get(f"/api/v1/users/{colleague.id}", headers=bearer(rep_key))
    own = await api.get(f"/api/v1/users/{rep.id}", headers=bearer(rep_key))
    as_admin = await api.get(
        f"/api/v1/users/{colleague.id}", headers=bearer(await new_key(admin.id))
    )
    team_page = await api.get(
        f"/api/v1/users?team={team}&limit=1", headers=bearer(rep_key)
    )
    next_page = await api.get(team_page.json()["next"], headers=bearer(rep_key))

    assert other.status_code == 200
    assert other.json() == {
        "id": colleague.id,
        "name": colleague.name,
        "team": team,
        "active": True,
    }
    assert own.json()["email"] == rep.email
    assert as_admin.json()["email"] == colleague.email
    assert [row["id"] for row in team_page.json()["data"]] == [rep.id]
    assert [row["id"] for row in next_page.json()["data"]] == [colleague.id]
    assert next_page.json()["next"] is None
    assert "email" not in next_page.text


async def test_teams_list_and_get(api) -> None:
    team = await make_team("Northern " + unique("Team"))
    token = await new_key((await make_user("read_only")).id, {"ticket": "read"})

    one = await api.get(f"/api/v1/teams/{team}", headers=bearer(token))
    missing = await api.get("/api/v1/teams/999999", headers=bearer(token))

    assert one.status_code == 200
    assert one.json()["name"].startswith("Northern ")
    assert missing.status_code == 404


async def test_account_shows_tier(api) -> None:
    user = await make_user()
    token = await new_key(user.id)
    account_id = await create_account({"name": "Tiered", "tier": "gold"}, user.id)

    response = await api.get(f"/api/v1/accounts/{account_id}", headers=bearer(token))
    changed = await api.patch(
        f"/api/v1/accounts/{account_id}",
        json={"tier": "silver"},
        headers=bearer(token, **{"if-match": "1"}),
    )

    assert response.json()["tier"] == "gold"
    assert changed.status_code == 200
    assert changed.json()["tier"] == "silver"


async def test_comment_list_create_and_page(api) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=rep.id, team=team)
    first = await add_comment("deal", deal_id, "First", rep.id)
    second = await add_comment("deal", deal_id, "Second", rep.id)
    token = await new_key(rep.id)

    created = await api.post(
        f"/api/v1/deals/{deal_id}/comments",
        json={"body": "<b>Third</b><script>x()</script>"},
        headers=bearer(token),
    )
    page = await api.get(
        f"/api/v1/deals/{deal_id}/comments?limit=2", headers=bearer(token)
    )
    rest = await api.get(page.json()["next"], headers=bearer(token))
    empty = await api.post(
        f"/api/v1/deals/{deal_id}/comments", json={"body": " "}, headers=bearer(token)
    )

    assert created.status_code == 201
    third = created.json()
    assert "<b>Third</b>" in third["body"]
    assert "script" not in third["body"]
    assert third["author"] == rep.id
    assert created.headers["location"] == f"/api/v1/comments/{third['id']}"
    assert [row["id"] for row in page.json()["data"]] == [first, second]
    assert [row["id"] for row in rest.json()["data"]] == [third["id"]]
    assert empty.status_code == 422
    assert empty.json()["field"] == "body"


async def test_comment_edit_own_only(api) -> None:
    # Among the built-in roles only administrators edit comments, and even
    # they edit only their own.
    author = await make_user()
    other_admin = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=author.id)
    comment_id = await add_comment("deal", deal_id, "Mine", author.id)
    url = f"/api/v1/comments/{comment_id}"
    author_key = await new_key(author.id)
    rep = await make_user("sales_rep", team=await make_team())

    no_version = await api.patch(
        url, json={"body": "Edited"}, headers=bearer(author_key)
    )
    by_other = await api.patch(
        url,
        json={"body": "Hijacked"},
        headers=bearer(await new_key(other_admin.id), **{"if-match": "1"}),
    )
    by_rep = await api.patch(
        url,
        json={"body": "Hijacked"},
        headers=bearer(await new_key(rep.id), **{"if-match": "1"}),
    )
    by_author = await api.patch(
        url, json={"body": "Edited"}, headers=bearer(author_key, **{"if-match": "1"})
    )
    stale = await api.patch(
        url, json={"body": "Again"}, headers=bearer(author_key, **{"if-match": "1"})
    )

    assert no_version.status_code == 428
    assert by_other.status_code == 403
    assert "author" in by_other.json()["detail"]
    assert by_rep.status_code == 403
    assert by_author.status_code == 200
    assert "Edited" in by_author.json()["body"]
    assert by_author.headers["etag"] == '"2"'
    assert stale.status_code == 412
    stored = await api.get(url, headers=bearer(author_key))
    assert "Edited" in stored.json()["body"]
    assert "Hijacked" not in stored.text


async def test_comments_follow_parent_scope(api) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    pipeline = await make_pipeline()
    other_deal = await make_deal(pipeline, team=await make_team())
    comment_id = await add_comment("deal", other_deal, "Not yours", None)
    token = await new_key(rep.id)
    comment_only = await new_key(rep.id, {"comment": "write"})

    listed = await api.get(
        f"/api/v1/deals/{other_deal}/comments", headers=bearer(token)
    )
    one = await api.get(f"/api/v1/comments/{comment_id}", headers=bearer(token))
    added = await api.post(
        f"/api/v1/deals/{other_deal}/comments",
        json={"body": "Sneaky"},
        headers=bearer(token),
    )
    without_deal_scope = await api.get(
        f"/api/v1/deals/{other_deal}/comments", headers=bearer(comment_only)
    )

    assert listed.status_code == 404
    assert one.status_code == 404
    assert added.status_code == 404
    assert without_deal_scope.status_code == 403


async def test_readable_deal_without_comment_right_403(api) -> None:
    """Support agents read every deal but only their team's comments."""
    agent = await make_user("support_agent", team=await make_team())
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, team=await make_team())
    comment_id = await add_comment("deal", deal_id, "Team only", None)
    token = await new_key(agent.id)

    deal = await api.get(f"/api/v1/deals/{deal_id}", headers=bearer(token))
    listed = await api.get(f"/api/v1/deals/{deal_id}/comments", headers=bearer(token))
    one = await api.get(f"/api/v1/comments/{comment_id}", headers=bearer(token))
    added = await api.post(
        f"/api/v1/deals/{deal_id}/comments",
        json={"body": "Let me in"},
        headers=bearer(token),
    )

    assert deal.status_code == 200
    assert listed.status_code == 403
    assert listed.headers["content-type"].startswith("application/problem+json")
    detail = "Your role does not allow you to read comments on this deal."
    assert listed.json()["detail"] == detail
    assert one.status_code == 403
    assert added.status_code == 403
    assert added.json()["detail"] == detail


async def test_readable_ticket_without_comment_right_403(api) -> None:
    """A role that reads every ticket but only comments on its own tickets."""
    admin = await make_user()
    role = "ticket_reader_" + unique("r").replace(" ", "_")
    await save_role(
        None,
        RoleInput(
            name=role,
            label="Ticket reader",
            permissions={"ticket": {"read": "all"}, "comment": {"read": "own"}},
            field_rules={},
        ),
        admin.id,
    )
    reader = await make_user(role)
    ticket_id = await make_ticket()
    own_ticket = await make_ticket(assignee=reader.id)
    token = await new_key(reader.id)

    ticket = await api.get(f"/api/v1/tickets/{ticket_id}", headers=bearer(token))
    listed = await api.get(
        f"/api/v1/tickets/{ticket_id}/comments", headers=bearer(token)
    )
    own = await api.get(f"/api/v1/tickets/{own_ticket}/comments", headers=bearer(token))

    assert ticket.status_code == 200
    assert listed.status_code == 403
    assert listed.json()["detail"] == (
        "Your role does not allow you to read comments on this ticket."
    )
    assert own.status_code == 200


async def test_query_parameters_checked(api) -> None:
    token = await new_key((await make_user()).id)

    repeated = await api.get("/api/v1/pipelines?limit=1&limit=2", headers=bearer(token))
    empty = await api.get("/api/v1/deals?owner=", headers=bearer(token))
    misspelt = await api.get("/api/v1/deals?onwer=3", headers=bearer(token))

    assert repeated.status_code == 400
    assert repeated.json()["field"] == "limit"
    assert empty.status_code == 400
    assert empty.json()["field"] == "owner"
    assert misspelt.status_code == 400
    assert misspelt.json()["field"] == "onwer"
    assert "owner" in misspelt.json()["detail"]


async def test_pipeline_delete_blocked_by_deals(api) -> None:
    admin = await make_user()
    token = await new_key(admin.id)
    manager = await make_user("sales_manager", team=await make_team())
    manager_token = await new_key(manager.id)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, stage_index=1)
    busy_stage = pipeline["stages"][1]
    empty_stage = pipeline["stages"][0]

    stage_blocked = await api.delete(
        f"/api/v1/stages/{busy_stage}", headers=bearer(token)
    )
    pipeline_blocked = await api.delete(
        f"/api/v1/pipelines/{pipeline['id']}", headers=bearer(token)
    )
    not_admin = await api.delete(
        f"/api/v1/stages/{empty_stage}", headers=bearer(manager_token)
    )
    stale = await api.delete(
        f"/api/v1/stages/{empty_stage}", headers=bearer(token, **{"if-match": '"9"'})
    )
    deleted = await api.delete(
        f"/api/v1/stages/{empty_stage}", headers=bearer(token, **{"if-match": '"1"'})
    )
    gone = await api.get(f"/api/v1/stages/{empty_stage}", headers=bearer(token))

    assert stage_blocked.status_code == 409
    assert stage_blocked.json()["dependents"] == {"deals": 1}
    assert "1 deals" in stage_blocked.json()["detail"]
    assert pipeline_blocked.status_code == 409
    assert pipeline_blocked.json()["dependents"] == {"deals": 1}
    assert not_admin.status_code == 403
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 1
    assert deleted.status_code == 204
    assert gone.status_code == 404
    audited = await AuditLog.select(AuditLog.action).where(
        (AuditLog.record_type == "stage") & (AuditLog.record_id == empty_stage)
    )
    assert [row["action"] for row in audited] == ["delete"]
    reloads = await Event.select(Event.changes).where(
        (Event.kind == "board.reload") & (Event.record_id == pipeline["id"])
    )
    assert [json.loads(row["changes"]) for row in reloads] == [
        {"stage_id": empty_stage}
    ]
    assert deal_id


async def test_pipeline_delete_takes_stages(api) -> None:
    admin = await make_user()
    token = await new_key(admin.id)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    url = f"/api/v1/pipelines/{pipeline['id']}"

    deal_deleted = await api.delete(f"/api/v1/deals/{deal_id}", headers=bearer(token))
    deleted = await api.delete(url, headers=bearer(token, **{"if-match": "1"}))
    gone = await api.get(url, headers=bearer(token))
    stages = await api.get(
        f"/api/v1/stages?pipeline={pipeline['id']}", headers=bearer(token)
    )

    assert deal_deleted.status_code == 204
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert stages.json()["data"] == []
    audited = await AuditLog.select(AuditLog.record_type, AuditLog.record_id).where(
        (AuditLog.action == "delete")
        & (
            (
                (AuditLog.record_type == "pipeline")
                & (AuditLog.record_id == pipeline["id"])
            )
            | (
                (AuditLog.record_type == "stage")
                & AuditLog.record_id.is_in(pipeline["stages"])
            )
        )
    )
    assert sorted((row["record_type"], row["record_id"]) for row in audited) == [
        ("pipeline", pipeline["id"]),
        *(("stage", stage) for stage in sorted(pipeline["stages"])),
    ]
    deleted_events = await Event.select(Event.kind).where(
        (Event.record_type == "pipeline")
        & (Event.record_id == pipeline["id"])
        & (Event.kind == "pipeline.deleted")
    )
    assert len(deleted_events) == 1


async def test_directory_lists_sort_and_filter(api) -> None:
    team = await make_team()
    region_team = await make_team()
    region = unique("Region")
    await Team.update({Team.region: region}).where(Team.id == region_team)
    admin = await make_user()
    token = await new_key(
        admin.id, {"deal": "read", "comment": "read", "campaign": "read"}
    )
    members = [await make_user("sales_rep", name=name, team=team) for name in "CAB"]
    await User.update({User.active: False}).where(User.id == members[0].id)
    pipeline = await make_pipeline()
    await Stage.update({Stage.probability: Stage.position * 10}).where(
        Stage.pipeline == pipeline["id"]
    )
    deal_id = await make_deal(pipeline, owner=members[1].id, team=team)
    mine = await add_comment("deal", deal_id, "Mine", admin.id)
    await add_comment("deal", deal_id, "Theirs", members[1].id)

    by_probability = await api.get(
        f"/api/v1/pipelines/{pipeline['id']}/stages?sort=-probability&limit=3",
        headers=bearer(token),
    )
    rest = await api.get(by_probability.json()["next"], headers=bearer(token))
    won = await api.get(
        f"/api/v1/stages?pipeline={pipeline['id']}&kind=won", headers=bearer(token)
    )
    active = await api.get(
        f"/api/v1/users?team={team}&active=true&sort=-name", headers=bearer(token)
    )
    regional = await api.get(f"/api/v1/teams?region={region}", headers=bearer(token))
    authored = await api.get(
        f"/api/v1/deals/{deal_id}/comments?author={admin.id}", headers=bearer(token)
    )
    drafts = await api.get(
        "/api/v1/campaigns?state=sent&sort=-created_at", headers=bearer(token)
    )
    pipelines = await api.get(
        "/api/v1/pipelines?sort=-id&limit=1", headers=bearer(token)
    )

    stages = pipeline["stages"]
    assert [row["id"] for row in by_probability.json()["data"]] == stages[:0:-1]
    assert [row["id"] for row in rest.json()["data"]] == [stages[0]]
    assert "sort=-probability" in by_probability.json()["next"]
    assert [row["id"] for row in won.json()["data"]] == [stages[2]]
    assert [row["name"] for row in active.json()["data"]] == ["B", "A"]
    assert [row["id"] for row in regional.json()["data"]] == [region_team]
    assert [row["id"] for row in authored.json()["data"]] == [mine]
    assert drafts.status_code == 200
    assert all(row["state"] == "sent" for row in drafts.json()["data"])
    assert pipelines.json()["data"][0]["id"] >= pipeline["id"]


async def test_unknown_sort_rejected_everywhere(api) -> None:
    scopes = {"deal": "read", "comment": "read", "campaign": "read"}
    token = await new_key((await make_user()).id, scopes)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    lists = (
        "/api/v1/pipelines",
        f"/api/v1/pipelines/{pipeline['id']}/stages",
        "/api/v1/stages",
        "/api/v1/users",
        "/api/v1/teams",
        f"/api/v1/deals/{deal_id}/comments",
        "/api/v1/campaigns",
        "/api/v1/deals",
    )

    for url in lists:
        response = await api.get(f"{url}?sort=email", headers=bearer(token))
        assert response.status_code == 400, url
        assert response.json()["field"] == "sort", url
        assert response.json()["value"] == "email", url
        assert "must be one of id" in response.json()["detail"], url


async def test_if_match_star_on_stage_and_comment(api) -> None:
    admin = await make_user()
    token = await new_key(admin.id)
    any_version = bearer(token, **{"if-match": "*"})
    pipeline = await make_pipeline()
    stage_id = pipeline["stages"][0]
    deal_id = await make_deal(pipeline, owner=admin.id)
    comment_id = await add_comment("deal", deal_id, "First draft", admin.id)
    stage_url = f"/api/v1/stages/{stage_id}"
    comment_url = f"/api/v1/comments/{comment_id}"

    stage = await api.patch(stage_url, json={"probability": 15}, headers=any_version)
    comment = await api.patch(
        comment_url, json={"body": "Second draft"}, headers=any_version
    )
    removed = await api.delete(comment_url, headers=any_version)
    gone = await api.patch(comment_url, json={"body": "Third"}, headers=any_version)
    no_stage = await api.delete("/api/v1/stages/2147483647", headers=any_version)

    assert stage.status_code == 200
    assert stage.json()["probability"] == 15
    assert stage.headers["etag"] == '"2"'
    assert comment.status_code == 200
    assert comment.headers["etag"] == '"2"'
    assert removed.status_code == 204
    assert gone.status_code == 412
    assert gone.json()["field"] == "If-Match"
    assert no_stage.status_code == 412
