"""The JSON API against a real web process: bearer keys, scopes, field rules,
If-Match, problem details, cursors, live pages, the audit log and rate limits."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.access.service import set_active
from app.api.keys import create_key
from app.api.tables import ApiKey
from app.audit.tables import AuditLog
from app.deals.tables import Deal
from app.events.tables import Event
from app.webhooks.service import EndpointInput, create_endpoint
from app.webhooks.tables import OutboxMessage, WebhookEndpoint
from tests.browserless import Session
from tests.factories import (
    HIDDEN_AMOUNT,
    make_deal,
    make_pipeline,
    make_team,
    make_user,
    shows_hidden_amount,
    unique,
)
from tests.live_frames import next_event
from tests.servers import web_server

pytestmark = pytest.mark.asyncio(loop_scope="session")

WRITE_ALL = {
    "account": "write",
    "contact": "write",
    "deal": "write",
    "ticket": "write",
    "lead": "write",
    "comment": "write",
}
PROBLEM_JSON = "application/problem+json"


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def new_key(
    user_id: int,
    scopes: dict[str, Any] | None = None,
    expires_at: dt.datetime | None = None,
) -> str:
    issued = await create_key(user_id, unique("Key"), scopes or WRITE_ALL, expires_at)
    return issued.token


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **headers}


async def test_key_page_shows_secret_once_stores_hash(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    created = await session.post(
        "/security/api-keys",
        {"name": "Reporting", "scope.deal": "read", "scope.ticket": "write"},
        htmx=False,
    )
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    match = re.search(r"sb_(\d+)_([0-9a-f]{64})", created.text)
    assert match is not None
    key_id, secret = int(match[1]), match[2]

    row = await ApiKey.select().where(ApiKey.id == key_id).first()
    assert row["user"] == user.id
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(row)

    listed = await session.get("/security/api-keys")
    assert listed.status_code == 200
    assert "Reporting" in listed.text
    assert secret not in listed.text
    await session.close()


async def test_key_page_rejects_unknown_scope(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.post(
        "/security/api-keys", {"name": "Bad", "scope.deal": "admin"}, htmx=False
    )

    assert response.status_code == 422
    assert 'data-field="scopes.deal"' in response.text
    assert await ApiKey.count().where(ApiKey.user == user.id) == 0
    await session.close()


async def test_bearer_key_reads_and_marks_used(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id)

    response = await api.get(f"/api/v1/deals/{deal_id}", headers=bearer(token))

    assert response.status_code == 200
    assert response.json()["id"] == deal_id
    assert response.headers["etag"] == '"1"'
    assert "set-cookie" not in response.headers
    key_id = int(token.split("_")[1])
    row = await ApiKey.select(ApiKey.last_used_at).where(ApiKey.id == key_id).first()
    assert row["last_used_at"] is not None


async def test_bad_keys_get_401(api) -> None:
    user = await make_user()
    revoked = await new_key(user.id)
    await ApiKey.update({ApiKey.revoked_at: dt.datetime.now(dt.UTC)}).where(
        ApiKey.id == int(revoked.split("_")[1])
    )
    expired = await new_key(
        user.id, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )
    valid = await new_key(user.id)
    wrong = valid[:-4] + ("0000" if not valid.endswith("0000") else "1111")
    cases = {
        "missing": {},
        "malformed": bearer("not-a-key"),
        "wrong secret": bearer(wrong),
        "revoked": bearer(revoked),
        "expired": bearer(expired),
    }

    for case, headers in cases.items():
        response = await api.get("/api/v1/deals", headers=headers)
        assert response.status_code == 401, case
        assert response.headers["content-type"].startswith(PROBLEM_JSON), case
        assert response.headers["www-authenticate"].startswith("Bearer"), case
        assert response.json()["field"] == "Authorization", case


async def test_session_cookie_does_not_authenticate(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.get("/api/v1/deals")

    assert response.status_code == 401
    await session.close()


async def test_deactivated_user_key_gets_401(api) -> None:
    admin = await make_user()
    user = await make_user()
    token = await new_key(user.id)
    assert (await api.get("/api/v1/deals", headers=bearer(token))).status_code == 200

    await set_active(user.id, False, admin.id)
    response = await api.get("/api/v1/deals", headers=bearer(token))

    assert response.status_code == 401
    assert "deactivated" in response.json()["detail"]


async def test_read_key_cannot_write(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id, {"deal": "read"})

    patched = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"name": "Renamed"},
        headers=bearer(token, **{"if-match": "1"}),
    )
    created = await api.post(
        "/api/v1/deals",
        json={
            "name": "New",
            "pipeline": pipeline["id"],
            "stage": pipeline["stages"][0],
        },
        headers=bearer(token),
    )
    other_type = await api.get("/api/v1/tickets", headers=bearer(token))

    assert patched.status_code == 403
    assert patched.headers["content-type"].startswith(PROBLEM_JSON)
    assert "only read" in patched.json()["detail"]
    assert created.status_code == 403
    assert other_type.status_code == 403
    stored = await Deal.select(Deal.name).where(Deal.id == deal_id).first()
    assert stored["name"] != "Renamed"


async def test_rep_key_cannot_read_other_team_deal(api) -> None:
    pipeline = await make_pipeline()
    own_team, other_team = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=own_team)
    outsider = await make_user("sales_rep", team=other_team)
    team_deal = await make_deal(pipeline, owner=rep.id, team=own_team)
    other_deal = await make_deal(pipeline, owner=outsider.id, team=other_team)
    token = await new_key(rep.id)

    seen = await api.get(f"/api/v1/deals/{team_deal}", headers=bearer(token))
    hidden = await api.get(f"/api/v1/deals/{other_deal}", headers=bearer(token))
    listed = await api.get(
        f"/api/v1/deals?pipeline={pipeline['id']}", headers=bearer(token)
    )

    assert seen.status_code == 200
    assert hidden.status_code == 404
    assert hidden.headers["content-type"].startswith(PROBLEM_JSON)
    ids = [row["id"] for row in listed.json()["data"]]
    assert team_deal in ids
    assert other_deal not in ids


async def test_rep_key_cannot_change_team(api) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=rep.id, team=team)
    token = await new_key(rep.id)

    response = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"team": await make_team()},
        headers=bearer(token, **{"if-match": "1"}),
    )

    assert response.status_code == 422
    assert response.json()["field"] == "team"
    assert "read-only" in response.json()["detail"]


async def test_hidden_amount_absent_from_json(api) -> None:
    agent = await make_user("support_agent")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount=HIDDEN_AMOUNT)
    token = await new_key(agent.id, {"deal": "read"})

    one = await api.get(f"/api/v1/deals/{deal_id}", headers=bearer(token))
    listed = await api.get(
        f"/api/v1/deals?pipeline={pipeline['id']}", headers=bearer(token)
    )

    assert one.status_code == 200
    assert "amount" not in one.json()
    assert "name" in one.json()
    assert not shows_hidden_amount(one.text)
    assert all("amount" not in row for row in listed.json()["data"])
    assert not shows_hidden_amount(listed.text)


async def written_rows(deal_id: int) -> dict[str, int]:
    """Count the audit, event and webhook outbox rows about a deal."""
    audit = await AuditLog.count().where(
        (AuditLog.record_type == "deal") & (AuditLog.record_id == deal_id)
    )
    events = await Event.count().where(
        (Event.record_type == "deal") & (Event.record_id == deal_id)
    )
    outbox = await OutboxMessage.count().where(
        OutboxMessage.ordering_key.like(f"%:deal:{deal_id}")
    )
    return {"audit": audit, "events": events, "outbox": outbox}


async def test_update_needs_matching_if_match(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id, name="Original")
    token = await new_key(user.id)
    url = f"/api/v1/deals/{deal_id}"
    # Nothing listens on the discard port; the outbox row is what counts.
    endpoint = await create_endpoint(
        EndpointInput(
            url="http://127.0.0.1:9/hook",
            event_types=("deal.updated",),
            filters={"pipeline": pipeline["id"]},
        ),
        None,
        allow_private=True,
    )
    before = await written_rows(deal_id)

    missing = await api.patch(url, json={"name": "A"}, headers=bearer(token))
    stale = await api.patch(
        url, json={"name": "B"}, headers=bearer(token, **{"if-match": '"7"'})
    )
    refused = await written_rows(deal_id)
    applied = await api.patch(
        url, json={"name": "C"}, headers=bearer(token, **{"if-match": '"1"'})
    )
    replayed = await api.patch(
        url, json={"name": "D"}, headers=bearer(token, **{"if-match": "1"})
    )

    assert missing.status_code == 428
    assert missing.headers["content-type"].startswith(PROBLEM_JSON)
    assert stale.status_code == 412
    assert stale.json()["field"] == "If-Match"
    assert stale.json()["current_version"] == 1
    assert applied.status_code == 200
    assert applied.json()["name"] == "C"
    assert applied.headers["etag"] == '"2"'
    assert replayed.status_code == 412
    stored = (
        await Deal.select(Deal.name, Deal.version).where(Deal.id == deal_id).first()
    )
    assert stored == {"name": "C", "version": 2}
    assert refused["audit"] == before["audit"]
    assert refused["events"] == before["events"]
    assert refused["outbox"] == before["outbox"]
    # The applied change wrote one of each, so the counts above can move.
    after = await written_rows(deal_id)
    assert after["audit"] == before["audit"] + 1
    assert after["events"] == before["events"] + 1
    assert after["outbox"] == before["outbox"] + 1
    await WebhookEndpoint.delete().where(WebhookEndpoint.id == endpoint.id)


async def test_if_match_star_updates_any_version(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id, name="Original")
    token = await new_key(user.id)
    url = f"/api/v1/deals/{deal_id}"

    first = await api.patch(
        url, json={"name": "First"}, headers=bearer(token, **{"if-match": "*"})
    )
    second = await api.patch(
        url, json={"name": "Second"}, headers=bearer(token, **{"if-match": "*"})
    )

    assert first.status_code == 200
    assert first.headers["etag"] == '"2"'
    assert second.status_code == 200
    assert second.json()["name"] == "Second"
    assert second.headers["etag"] == '"3"'
    stored = (
        await Deal.select(Deal.name, Deal.version).where(Deal.id == deal_id).first()
    )
    assert stored == {"name": "Second", "version": 3}


async def test_if_match_star_on_missing_deal_is_412(api) -> None:
    admin = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=admin.id)
    token = await new_key(admin.id)
    any_version = bearer(token, **{"if-match": "*"})
    url = f"/api/v1/deals/{deal_id}"

    deleted = await api.delete(url, headers=any_version)
    patched = await api.patch(url, json={"name": "Back"}, headers=any_version)
    deleted_again = await api.delete(url, headers=any_version)
    numbered = await api.patch(
        url, json={"name": "Back"}, headers=bearer(token, **{"if-match": "1"})
    )

    assert deleted.status_code == 204
    assert patched.status_code == 412
    assert patched.headers["content-type"].startswith(PROBLEM_JSON)
    assert patched.json()["field"] == "If-Match"
    assert patched.json()["value"] == "*"
    assert f"Deal {deal_id} was not found" in patched.json()["detail"]
    assert deleted_again.status_code == 412
    # A numbered version of a missing record stays a 404.
    assert numbered.status_code == 404


async def test_if_match_star_hides_other_team_deal(api) -> None:
    team, other_team = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team)
    outsider = await make_user("sales_rep", team=other_team)
    pipeline = await make_pipeline()
    hidden_id = await make_deal(pipeline, owner=outsider.id, team=other_team)
    token = await new_key(rep.id)

    response = await api.patch(
        f"/api/v1/deals/{hidden_id}",
        json={"name": "Mine"},
        headers=bearer(token, **{"if-match": "*"}),
    )

    # The same answer as for a deal that does not exist.
    assert response.status_code == 412
    assert f"Deal {hidden_id} was not found" in response.json()["detail"]
    stored = await Deal.select(Deal.name).where(Deal.id == hidden_id).first()
    assert stored["name"] != "Mine"


async def test_if_match_rejects_other_values(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id)

    response = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"name": "X"},
        headers=bearer(token, **{"if-match": "**"}),
    )

    assert response.status_code == 422
    assert response.json()["field"] == "If-Match"
    assert response.json()["value"] == "**"


async def test_if_match_repeated_lines_are_a_list(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id, name="Original")
    token = await new_key(user.id)
    url = f"/api/v1/deals/{deal_id}"
    any_then_stale = [
        *bearer(token).items(),
        ("if-match", "*"),
        ("if-match", '"99"'),
    ]

    patched = await api.patch(url, json={"name": "Changed"}, headers=any_then_stale)
    deleted = await api.delete(url, headers=any_then_stale)

    assert patched.status_code == 422
    assert patched.json()["field"] == "If-Match"
    assert patched.json()["value"] == '*, "99"'
    assert patched.json()["detail"].startswith("If-Match ")
    assert deleted.status_code == 422
    assert deleted.json()["value"] == '*, "99"'
    stored = (
        await Deal.select(Deal.name, Deal.version).where(Deal.id == deal_id).first()
    )
    assert stored == {"name": "Original", "version": 1}


@pytest.mark.parametrize(
    "value",
    ['"1', '1"', '"""1"""', "01", '"01"', "W/1", 'w/"1"', '"abc"', "1, 1", "+1"],
)
async def test_if_match_rejects_malformed_versions(api, value: str) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id, name="Original")
    token = await new_key(user.id)
    url = f"/api/v1/deals/{deal_id}"

    patched = await api.patch(
        url, json={"name": "Changed"}, headers=bearer(token, **{"if-match": value})
    )
    deleted = await api.delete(url, headers=bearer(token, **{"if-match": value}))

    assert patched.status_code == 422
    assert patched.json()["field"] == "If-Match"
    assert patched.json()["value"] == value
    assert patched.json()["detail"].startswith(f"If-Match {value!r} ")
    assert deleted.status_code == 422
    stored = (
        await Deal.select(Deal.name, Deal.version).where(Deal.id == deal_id).first()
    )
    assert stored == {"name": "Original", "version": 1}


async def test_if_match_weak_tag_never_matches(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id, name="Original")
    token = await new_key(user.id)
    url = f"/api/v1/deals/{deal_id}"
    weak = bearer(token, **{"if-match": 'W/"1"'})

    patched = await api.patch(url, json={"name": "Changed"}, headers=weak)
    deleted = await api.delete(url, headers=weak)
    etag = (await api.get(url, headers=bearer(token))).headers["etag"]
    echoed = await api.patch(
        url, json={"name": "Echoed"}, headers=bearer(token, **{"if-match": etag})
    )

    assert patched.status_code == 412
    assert patched.headers["content-type"].startswith(PROBLEM_JSON)
    assert patched.json()["field"] == "If-Match"
    assert patched.json()["value"] == 'W/"1"'
    assert "weak entity tag" in patched.json()["detail"]
    assert deleted.status_code == 412
    # The API's own ETag is strong, so a client that echoes it matches.
    assert etag == '"1"'
    assert echoed.status_code == 200
    assert echoed.json()["name"] == "Echoed"


async def test_if_match_non_ascii_value_is_shown_decoded(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id)
    url = f"/api/v1/deals/{deal_id}"
    arabic_three = [*bearer(token).items(), ("if-match", '"\u0663"'.encode())]
    not_utf8 = [*bearer(token).items(), ("if-match", b'"\xff"')]

    arabic = await api.patch(url, json={"name": "X"}, headers=arabic_three)
    invalid = await api.patch(url, json={"name": "X"}, headers=not_utf8)

    assert arabic.status_code == 422
    assert arabic.json()["value"] == '"\u0663"'
    assert invalid.status_code == 422
    assert invalid.json()["value"] == '"\\xff"'


async def test_problem_names_field_and_value(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id)

    bad_amount = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"amount": "twelve"},
        headers=bearer(token, **{"if-match": "1"}),
    )
    unknown = await api.post(
        "/api/v1/accounts", json={"nmae": "Acme"}, headers=bearer(token)
    )
    bad_sort = await api.get("/api/v1/tickets?sort=colour", headers=bearer(token))

    assert bad_amount.status_code == 422
    assert bad_amount.headers["content-type"].startswith(PROBLEM_JSON)
    body = bad_amount.json()
    assert body["field"] == "amount"
    assert body["value"] == "twelve"
    assert body["status"] == 422
    assert body["instance"] == f"/api/v1/deals/{deal_id}"
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "nmae"
    assert bad_sort.status_code == 400
    assert bad_sort.json()["field"] == "sort"
    assert bad_sort.json()["value"] == "colour"
    stored = await Deal.select(Deal.version).where(Deal.id == deal_id).first()
    assert stored["version"] == 1


async def test_deeply_nested_body_is_a_400_problem(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id)
    body = '{"name": ' + "[" * 1000 + "]" * 1000 + "}"
    headers = bearer(token, **{"content-type": "application/json"})

    answers = [
        await api.post("/api/v1/deals", content=body, headers=headers),
        await api.post(
            f"/api/v1/deals/{deal_id}/comments", content=body, headers=headers
        ),
    ]

    for answer in answers:
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith(PROBLEM_JSON)
        assert answer.json()["field"] == "body"
        assert "nested too deeply" in answer.json()["detail"]


async def test_cursor_walks_list_without_gaps(api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    # Every third deal has no close date, and the others share five dates.
    close_dates = [
        None if n % 3 == 0 else dt.date(2027, 1, 1 + n % 5) for n in range(23)
    ]
    created_ids = {
        await make_deal(pipeline, name=unique("Walk"), close_date=close_date)
        for close_date in close_dates
    }
    token = await new_key(user.id)

    sorts = ("id", "-id", "name", "-updated_at", "close_date", "-close_date")
    for sort in sorts:
        seen: list[int] = []
        url: str | None = f"/api/v1/deals?pipeline={pipeline['id']}&limit=5&sort={sort}"
        pages = 0
        while url is not None:
            response = await api.get(url, headers=bearer(token))
            assert response.status_code == 200, (sort, response.text)
            body = response.json()
            seen.extend(row["id"] for row in body["data"])
            url = body["next"]
            if url is not None:
                assert response.headers["link"] == f'<{url}>; rel="next"'
            pages += 1
            assert pages <= 10, sort

        assert len(seen) == len(set(seen)), sort
        assert set(seen) == created_ids, sort
        assert pages == 5, sort


async def test_create_through_service_is_audited(api) -> None:
    user = await make_user()
    token = await new_key(user.id)

    response = await api.post(
        "/api/v1/tickets",
        json={"subject": "Printer on fire", "priority": "urgent"},
        headers=bearer(token),
    )

    assert response.status_code == 201
    ticket = response.json()
    assert ticket["priority"] == "urgent"
    assert ticket["status"] == "new"
    assert response.headers["location"] == f"/api/v1/tickets/{ticket['id']}"
    rows = await AuditLog.select(AuditLog.action, AuditLog.actor_id).where(
        (AuditLog.record_type == "ticket") & (AuditLog.record_id == ticket["id"])
    )
    assert [row["actor_id"] for row in rows] == [user.id]


async def test_api_change_reaches_page_socket(server, api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id, amount="2500")
    token = await new_key(user.id)
    watcher = Session(server.url)
    await watcher.sign_in(user.email)
    socket = await watcher.live(f"topic=pipeline:{pipeline['id']}")
    to_stage = pipeline["stages"][1]

    response = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"stage": to_stage},
        headers=bearer(token, **{"if-match": "1"}),
    )
    assert response.status_code == 200

    message = await next_event(socket)
    assert f'id="deal-{deal_id}" hx-swap-oob="delete"' in message
    assert f"afterbegin:#stage-{to_stage}-cards" in message
    audited = await AuditLog.select(AuditLog.action, AuditLog.changes).where(
        (AuditLog.record_type == "deal")
        & (AuditLog.record_id == deal_id)
        & (AuditLog.actor_id == user.id)
    )
    assert len(audited) == 1
    assert "stage" in str(audited[0]["changes"])
    await socket.close()
    await watcher.close()


async def test_openapi_lists_api_routes_only(api) -> None:
    response = await api.get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    paths = set(document["paths"])
    for plural in ("deals", "tickets", "accounts", "contacts"):
        assert f"/api/v1/{plural}" in paths
    assert all(path.startswith("/api/v1/") for path in paths)
    patch_deal = document["paths"]["/api/v1/deals/{record_id}"]["patch"]
    assert patch_deal["security"] == [{"apiKey": []}]


async def test_docs_page_has_no_inline_script(api) -> None:
    response = await api.get("/api/v1/docs")

    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert re.search(r"<script>", response.text) is None
    assert "/static/api-docs.js" in response.text


async def test_admin_revokes_user_key(server, api) -> None:
    admin = await make_user()
    user = await make_user()
    token = await new_key(user.id)
    key_id = int(token.split("_")[1])
    session = Session(server.url)
    await session.sign_in(admin.email)

    listed = await session.get(f"/admin/users/{user.id}/api-keys")
    revoked = await session.post(
        f"/admin/users/{user.id}/api-keys/{key_id}/revoke", {}, htmx=False
    )
    after = await api.get("/api/v1/deals", headers=bearer(token))

    assert listed.status_code == 200
    assert f'id="api-key-{key_id}"' in listed.text
    assert revoked.status_code == 200
    assert after.status_code == 401
    await session.close()


async def test_rate_limit_headers_and_429() -> None:
    user = await make_user()
    token = await new_key(user.id)
    with web_server({"API_RATE_LIMIT": "3", "API_RATE_WINDOW": "3600"}) as limited:
        async with httpx.AsyncClient(base_url=limited.url, timeout=10) as client:
            responses = [
                await client.get("/api/v1/accounts?limit=1", headers=bearer(token))
                for _ in range(4)
            ]

    # NOTE: a window boundary between the requests restarts the count; the
    # one-hour window makes that unlikely within this test's few requests.
    remaining = [int(response.headers["ratelimit-remaining"]) for response in responses]
    assert [response.status_code for response in responses] == [200, 200, 200, 429]
    assert all(response.headers["ratelimit-limit"] == "3" for response in responses)
    assert remaining == [2, 1, 0, 0]
    assert 0 < int(responses[0].headers["ratelimit-reset"]) <= 3600
    assert 0 < int(responses[3].headers["retry-after"]) <= 3600
    assert (
        responses[3].headers["retry-after"] == (responses[3].headers["ratelimit-reset"])
    )
    assert responses[3].headers["content-type"].startswith(PROBLEM_JSON)
