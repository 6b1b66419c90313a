"""The API's event socket against a real web process: resuming without loss
or repeats, filtering by the key owner's scopes and field rules, deletes,
and handshakes without a valid key."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets

from app.api.keys import revoke_key
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
from tests.integration.test_api import WRITE_ALL, bearer, new_key
from tests.servers import web_server

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def server():
    # Checks the keys of open sockets every second rather than every 30.
    with web_server({"CRM_SESSION_CHECK_INTERVAL": "1"}) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def connect(server, token: str, after: int | None = None) -> Any:
    query = "" if after is None else f"?after={after}"
    return await websockets.connect(
        f"{server.ws_url}/api/v1/events{query}",
        additional_headers={"Authorization": f"Bearer {token}"},
    )


async def receive(socket: Any, seconds: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        return json.loads(await socket.recv())


async def until_ready(socket: Any) -> tuple[list[dict[str, Any]], int]:
    """Return the events before the ``ready`` message, and its sequence number."""
    events = []
    while True:
        message = await receive(socket)
        if message["type"] == "ready":
            return events, message["seq"]
        events.append(message)


async def events_about(
    socket: Any, record_ids: set[int], count: int
) -> list[dict[str, Any]]:
    """Return the next ``count`` events about ``record_ids``, skipping others."""
    found = []
    while len(found) < count:
        message = await receive(socket)
        assert message["type"] == "event", message
        if message["record_id"] in record_ids:
            found.append(message)
    return found


async def rename(api, token: str, deal_id: int, name: str, version: int) -> None:
    response = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"name": name},
        headers=bearer(token, **{"if-match": str(version)}),
    )
    assert response.status_code == 200, response.text


async def test_resume_without_loss_or_repeats(server, api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id)
    socket = await connect(server, token)
    replayed, start = await until_ready(socket)
    assert replayed == []

    for version in (1, 2, 3):
        await rename(api, token, deal_id, f"Live {version}", version)
    live = await events_about(socket, {deal_id}, 3)
    await socket.close()
    last_seen = live[-1]["seq"]
    for version in (4, 5, 6):
        await rename(api, token, deal_id, f"Missed {version}", version)

    socket = await connect(server, token, after=last_seen)
    missed, ready_seq = await until_ready(socket)
    await rename(api, token, deal_id, "After resume", 7)
    following = await events_about(socket, {deal_id}, 1)
    await socket.close()

    assert all(message["seq"] > start for message in live)
    ours = [message for message in missed if message["record_id"] == deal_id]
    names = [message["changes"]["name"][1] for message in live + ours + following]
    assert names == [f"Live {n}" for n in (1, 2, 3)] + [
        f"Missed {n}" for n in (4, 5, 6)
    ] + ["After resume"]
    sequence = [message["seq"] for message in live + missed + following]
    assert sequence == sorted(set(sequence))
    assert ready_seq >= ours[-1]["seq"]
    assert following[0]["seq"] > ready_seq
    assert following[0]["record"]["name"] == "After resume"
    assert following[0]["kind"] == "deal.updated"
    assert following[0]["actor"] == user.id


async def test_rep_key_sees_only_team_deals(server, api) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    admin = await make_user()
    admin_key = await new_key(admin.id)
    pipeline = await make_pipeline()
    other_teams = await make_deal(pipeline, team=await make_team())
    teams_deal = await make_deal(pipeline, owner=rep.id, team=team)
    socket = await connect(server, await new_key(rep.id))
    await until_ready(socket)

    await rename(api, admin_key, other_teams, "Other team's secret", 1)
    await rename(api, admin_key, teams_deal, "Team deal", 1)
    # Events arrive in commit order, so the other team's change would come first.
    message = await receive(socket)
    await socket.close()

    assert message["record_id"] == teams_deal
    assert "Other team's secret" not in json.dumps(message)


async def test_hidden_amount_left_out(server, api) -> None:
    team = await make_team()
    agent = await make_user("support_agent", team=team)
    admin_key = await new_key((await make_user()).id)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="1000")
    socket = await connect(server, await new_key(agent.id))
    await until_ready(socket)

    response = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"amount": HIDDEN_AMOUNT, "name": "Renamed"},
        headers=bearer(admin_key, **{"if-match": "1"}),
    )
    assert response.status_code == 200
    message = (await events_about(socket, {deal_id}, 1))[0]
    await socket.close()

    assert "amount" not in message["changes"]
    assert "amount" not in message["record"]
    assert message["changes"]["name"][1] == "Renamed"
    assert not shows_hidden_amount(json.dumps(message))


async def test_key_scope_filters_types(server, api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    ticket_key = await new_key(user.id, {"ticket": "read"})
    socket = await connect(server, ticket_key)
    await until_ready(socket)

    await rename(api, await new_key(user.id), deal_id, "Not for a ticket key", 1)
    ticket = await api.post(
        "/api/v1/tickets",
        json={"subject": "Printer on fire"},
        headers=bearer(await new_key(user.id)),
    )
    message = await receive(socket)
    await socket.close()

    assert message["record_type"] == "ticket"
    assert message["record_id"] == ticket.json()["id"]
    assert message["kind"] == "ticket.created"


async def test_socket_streams_leads_not_campaigns(server, api) -> None:
    admin = await make_user()
    reader = await new_key(
        admin.id, {"lead": "read", "deal": "read", "campaign": "read"}
    )
    writer = await new_key(admin.id, {**WRITE_ALL, "campaign": "write"})
    socket = await connect(server, reader)
    await until_ready(socket)

    pipeline = await api.post(
        "/api/v1/pipelines", json={"name": unique("Pipe")}, headers=bearer(writer)
    )
    campaign = await api.post(
        "/api/v1/campaigns",
        json={"name": unique("Campaign"), "subject": "Hello", "body": "Hi"},
        headers=bearer(writer),
    )
    lead = await api.post(
        "/api/v1/leads", json={"name": "Streamed lead"}, headers=bearer(writer)
    )
    message = await receive(socket)
    await socket.close()

    assert pipeline.status_code == 201
    assert campaign.status_code == 201
    assert lead.status_code == 201
    # Pipelines and campaigns are not streamed, so the lead's event is first.
    assert message["kind"] == "lead.created"
    assert message["record_id"] == lead.json()["id"]
    assert message["record"]["name"] == "Streamed lead"


async def test_delete_reaches_socket(server, api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id, name="To delete")
    token = await new_key(user.id)
    socket = await connect(server, token)
    await until_ready(socket)

    response = await api.delete(f"/api/v1/deals/{deal_id}", headers=bearer(token))
    assert response.status_code == 204
    message = (await events_about(socket, {deal_id}, 1))[0]
    await socket.close()

    assert message["kind"] == "deal.deleted"
    assert message["record"] is None
    assert message["changes"]["name"] == ["To delete", None]


async def test_deal_leaving_scope_says_so(server, api) -> None:
    team = await make_team()
    other_team = await make_team()
    rep = await make_user("sales_rep", team=team)
    admin_key = await new_key((await make_user()).id)
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, team=team)
    socket = await connect(server, await new_key(rep.id))
    await until_ready(socket)

    response = await api.patch(
        f"/api/v1/deals/{deal_id}",
        json={"team": other_team},
        headers=bearer(admin_key, **{"if-match": "1"}),
    )
    assert response.status_code == 200
    message = (await events_about(socket, {deal_id}, 1))[0]
    await socket.close()

    assert message["left_scope"] is True
    assert message["changes"] == {}
    assert message["record"] is None


async def test_replay_request_resends_events(server, api) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, owner=user.id)
    token = await new_key(user.id)
    socket = await connect(server, token)
    await until_ready(socket)
    await rename(api, token, deal_id, "Once", 1)
    first = (await events_about(socket, {deal_id}, 1))[0]

    await socket.send(json.dumps({"type": "replay", "after": first["seq"] - 1}))
    again, _ = await until_ready(socket)
    await socket.send(json.dumps({"type": "replay", "after": "soon"}))
    error = await receive(socket)
    await socket.close()

    assert again[0]["seq"] == first["seq"]
    assert again[0]["changes"] == first["changes"]
    assert error["type"] == "error"


async def test_handshake_needs_bearer_key(server) -> None:
    user = await make_user()
    token = await new_key(user.id)
    url = f"{server.ws_url}/api/v1/events"

    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{url}?token={token}")
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(
            url, additional_headers={"Authorization": "Bearer sb_1_" + "0" * 64}
        )
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(
            f"{url}?after=-1", additional_headers={"Authorization": f"Bearer {token}"}
        )


async def test_revoked_key_closes_socket(server) -> None:
    user = await make_user()
    token = await new_key(user.id)
    key_id = int(token.split("_")[1])
    socket = await connect(server, token)
    await until_ready(socket)

    await revoke_key(key_id, user.id, user.id)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(5):
            while True:
                await socket.recv()

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_deactivation_closes_socket_at_once() -> None:
    """The socket closes when the user is deactivated, without waiting for
    the periodic key check (30 s by default, as this server keeps it)."""
    admin = await make_user(role="admin")
    user = await make_user()
    token = await new_key(user.id)
    with web_server() as server:
        socket = await connect(server, token)
        await until_ready(socket)
        session = Session(server.url)
        await session.sign_in(admin.email)

        started = time.monotonic()
        response = await session.post(f"/admin/users/{user.id}/deactivate", {})
        assert response.status_code == 200, response.text
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:
                    await socket.recv()
        elapsed = time.monotonic() - started
        await session.close()

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
    assert elapsed < 5
