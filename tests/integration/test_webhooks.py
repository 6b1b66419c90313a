"""Outbound webhooks end to end: a real local receiver, real arq workers.

The receiver is an HTTP server in a thread on a loopback port. It responds
to each call with a 2xx, a 5xx or too late for the sender's timeout, resets
the connection, or holds the request open until the test releases it, as
the test sets. It can also close its listening socket for a while, so that
connections are refused. Workers run as subprocesses with loopback
endpoints allowed and the retry schedule scaled down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import signal
import socket
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from standardwebhooks import Webhook

from app.comments.service import add_comment
from app.contacts.service import create_contact, update_contact
from app.encryption.columns import decrypt_value
from app.errors import FieldError
from app.events.service import change_set
from app.events.tables import Event
from app.merge import Edit
from app.tickets.service import create_ticket, update_ticket
from app.tickets.tables import Ticket
from app.webhooks.delivery import deliver_next
from app.webhooks.outbox import NOTIFY, encode, insert_message
from app.webhooks.service import (
    EndpointInput,
    create_endpoint,
    get_endpoint,
    redeliver,
)
from app.webhooks.tables import OutboxMessage, WebhookAttempt, WebhookEndpoint
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import WorkflowRule
from tests.browserless import Session
from tests.factories import make_team, make_user
from tests.servers import free_port, web_server, worker_process
from workers.connection import queue_name

pytestmark = pytest.mark.timeout(240)

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
# Calls after these many are all accepted, so that the endpoint recovers.
CHAOS_CALLS = 60
# Chaos fails one message at most this often. The receiver is offline for
# about a second, which costs a message up to five refused attempts, so each
# keeps at least one of its eight attempts and is delivered in the end.
CHAOS_FAILURES_PER_MESSAGE = 2
# Failures the chaos receiver gives first, so that every kind occurs.
FORCED_FAILURES = ("503", "late", "reset")
TICKET_TYPES = ("ticket.created", "ticket.updated", "comment.created")
# Seconds a late response waits: longer than the worker's timeout below.
LATE_SECONDS = 3.0
# Loopback receivers are allowed, and every retry delay is a small fraction
# of the production one (5 s becomes 1 ms, 8 h becomes 6 s).
WORKER_ENV = {
    "CRM_WEBHOOKS_ALLOW_PRIVATE": "1",
    "CRM_WEBHOOK_RETRY_SCALE": "0.0002",
    "CRM_WEBHOOK_TIMEOUT": "2",
}


@dataclass
class Call:
    headers: dict[str, str]
    body: bytes
    # ok, 503, late (after the sender's timeout), reset (the connection is
    # dropped with a TCP reset) or held (kept open until the test releases it).
    kind: str
    arrived_at: float = field(default_factory=time.monotonic)

    @property
    def acked(self) -> bool:
        return self.kind == "ok"


@dataclass
class Receiver:
    """A loopback webhook receiver: its response mode and every call it received.

    In chaos mode, failures are chosen by a random generator seeded with
    ``seed``, which the chaos test prints so that a failing run can be
    replayed with CRM_CHAOS_SEED.
    """

    url: str
    port: int
    mode: str = "ok"  # ok, fail or chaos
    seed: int = 7
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=random.Random)
    forced: list[str] = field(default_factory=lambda: list(FORCED_FAILURES))
    # Hold the first call that arrives after this many acknowledgements.
    hold_after_acks: int | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def choose(self, message_id: str) -> str:
        """Return the kind of response for the next call, under the lock."""
        if self.mode == "fail":
            return "500"
        if self.mode != "chaos":
            return "ok"
        if (
            self.hold_after_acks is not None
            and not self.held.is_set()
            and len([call for call in self.calls if call.acked]) >= self.hold_after_acks
        ):
            self.held.set()
            return "held"
        failures = sum(
            1
            for call in self.calls
            if call.headers["webhook-id"] == message_id and not call.acked
        )
        if failures >= CHAOS_FAILURES_PER_MESSAGE:
            return "ok"
        if self.forced and len(self.calls) >= 1:
            return self.forced.pop(0)
        if len(self.calls) >= CHAOS_CALLS:
            return "ok"
        roll = self.rng.random()
        if roll < 0.2:
            return "503"
        if roll < 0.3:
            return "late"
        if roll < 0.4:
            return "reset"
        return "ok"

    def acked(self) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.acked]

    def start(self) -> None:
        """Listen on the receiver's port, again after ``stop``."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), make_handler(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.server = server

    def stop(self) -> None:
        """Close the listening socket, so new connections are refused."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def make_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                kind = receiver.choose(headers.get("webhook-id", ""))
                receiver.calls.append(Call(headers, body, kind))
            if kind == "reset":
                # SO_LINGER with a zero timeout makes close() send a TCP RST.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return
            if kind == "held":
                receiver.release.wait(timeout=120)
            if kind == "late":
                time.sleep(LATE_SECONDS)
            status = int(kind) if kind.isdigit() else 200
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        def finish(self) -> None:
            # The socket is gone after a reset or a killed sender.
            with contextlib.suppress(OSError, ValueError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


def chaos_seed() -> int:
    """Return CRM_CHAOS_SEED, or a new random seed for this run."""
    raw = os.environ.get("CRM_CHAOS_SEED", "")
    if raw:
        return int(raw)
    return random.SystemRandom().randrange(2**32)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(url=f"http://127.0.0.1:{port}/hook", port=port)
    state.seed = chaos_seed()
    state.rng.seed(state.seed)
    state.start()
    yield state
    state.release.set()
    state.stop()


@pytest_asyncio.fixture
async def endpoints() -> AsyncIterator[list[int]]:
    """Endpoints a test made; deleted afterwards with their messages."""
    made: list[int] = []
    yield made
    if made:
        await WebhookEndpoint.delete().where(WebhookEndpoint.id.is_in(made))


async def wait_for(check: Any, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        # The worker signals nothing to wait on, so the test polls.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def subscribe(
    made: list[int],
    url: str,
    team: int,
    event_types: tuple[str, ...] = TICKET_TYPES,
    allow_private: bool = True,
) -> tuple[int, str]:
    issued = await create_endpoint(
        EndpointInput(
            url=url,
            description="test receiver",
            event_types=event_types,
            filters={"team": str(team)},
        ),
        None,
        allow_private=allow_private,
    )
    made.append(issued.id)
    return issued.id, issued.secret


async def messages_of(endpoint_id: int) -> list[dict[str, Any]]:
    return list(
        await OutboxMessage.select()
        .where(OutboxMessage.endpoint == endpoint_id)
        .order_by(OutboxMessage.id)
    )


def all_delivered(endpoint_id: int, expected: int) -> Any:
    async def check() -> bool:
        rows = await messages_of(endpoint_id)
        return len(rows) >= expected and all(
            row["status"] == "delivered" for row in rows
        )

    return check


async def ticket_for(team: int, marker: str) -> int:
    return await create_ticket({"subject": f"Hook {marker}", "team": str(team)}, None)


async def rename(ticket_id: int, subject: str) -> None:
    row = await Ticket.select(Ticket.subject).where(Ticket.id == ticket_id).first()
    assert row is not None
    await update_ticket(ticket_id, {"subject": Edit(row["subject"], subject)}, None)


async def expected_event_ids(ticket_ids: list[int]) -> set[int]:
    rows = await Event.raw(
        "SELECT id FROM event WHERE (record_type = 'ticket' AND record_id = ANY({}) "
        "AND kind IN ('ticket.created', 'ticket.updated')) OR (kind = "
        "'comment.created' AND (changes->>'ticket')::int = ANY({}))",
        ticket_ids,
        ticket_ids,
    )
    return {row["id"] for row in rows}


async def test_subscription_rejects_internal_addresses(endpoints: list[int]) -> None:
    team = await make_team()
    before = await WebhookEndpoint.count()
    refused = {
        "http://127.0.0.1:9/hook": "127.0.0.1",
        "http://10.0.0.1/hook": "10.0.0.1",
        "http://169.254.169.254/latest/meta-data": "169.254.169.254",
        "http://[::1]:8080/": "::1",
        "http://[::ffff:127.0.0.1]/": "::ffff:7f00:1",
        "http://100.64.0.1/": "100.64.0.1",
        "http://0.0.0.0/": "0.0.0.0",
        "http://localhost:9/": "127.0.0.1",
    }
    for url, address in refused.items():
        with pytest.raises(FieldError) as raised:
            await subscribe(endpoints, url, team, allow_private=False)
        assert raised.value.field == "url", url
        assert address in raised.value.reason, url
        assert "CRM_WEBHOOKS_ALLOW_PRIVATE" in raised.value.reason

    assert await WebhookEndpoint.count() == before


async def test_subscription_rejects_invalid_input(endpoints: list[int]) -> None:
    team = await make_team()
    cases = [
        (EndpointInput(url="ftp://example.com/x", event_types=TICKET_TYPES), "url"),
        (EndpointInput(url="http://user:pw@1.1.1.1/", event_types=TICKET_TYPES), "url"),
        (EndpointInput(url="http://1.1.1.1/"), "event_types"),
        (
            EndpointInput(url="http://1.1.1.1/", event_types=("deal.exploded",)),
            "event_types",
        ),
        (
            EndpointInput(
                url="http://1.1.1.1/",
                event_types=TICKET_TYPES,
                filters={"team": "x"},
            ),
            "filters.team",
        ),
        (
            EndpointInput(
                url="http://1.1.1.1/",
                event_types=TICKET_TYPES,
                filters={"field": "password_hash", "value": "x"},
            ),
            "filters.field",
        ),
    ]
    before = await WebhookEndpoint.count()
    for values, name in cases:
        with pytest.raises(FieldError) as raised:
            await create_endpoint(values, None, allow_private=False)
        assert raised.value.field == name, values

    assert await WebhookEndpoint.count() == before
    assert team


async def test_messages_commit_with_the_change(endpoints: list[int]) -> None:
    team = await make_team()
    endpoint_id, _ = await subscribe(endpoints, "http://127.0.0.1:9/", team)
    other_team = await make_team()

    with pytest.raises(RuntimeError):
        async with change_set(None) as changes:
            rows = await Ticket.insert(
                Ticket(subject="Rolled back", team=team)
            ).returning(Ticket.id)
            changes.add("ticket.created", "ticket", rows[0]["id"], ["tickets"], {})
            await changes.write()
            raise RuntimeError("abort")
    assert await messages_of(endpoint_id) == []

    ticket_id = await ticket_for(team, uuid.uuid4().hex[:8])
    await ticket_for(other_team, "filtered out")

    rows = await messages_of(endpoint_id)
    assert len(rows) == 1
    body = msgspec.json.decode(rows[0]["payload"])
    assert body["type"] == "ticket.created"
    assert body["data"]["record_id"] == ticket_id
    assert body["data"]["record"]["team"] == team
    assert rows[0]["message_id"].startswith("msg_")
    assert rows[0]["ordering_key"] == f"{endpoint_id}:ticket:{ticket_id}"


async def test_chaos_delivery_survives_worker_kill(
    receiver: Receiver, endpoints: list[int]
) -> None:
    """Every event arrives at least once, signed, under a stable id, through
    503s, late responses, connection resets, refused connections and a worker
    killed while its request is open.

    Per record, the first acknowledgements come in the order the events were
    written: a message is sent only when its record has no earlier pending
    message, and the killed attempt is rolled back, so its message keeps its
    place ahead of the record's later messages.
    """
    # pytest shows this only for a failing test; CRM_CHAOS_SEED replays it.
    print(f"chaos seed {receiver.seed}: rerun with CRM_CHAOS_SEED={receiver.seed}")
    receiver.mode = "chaos"
    receiver.hold_after_acks = receiver.rng.randint(3, 6)
    team = await make_team()
    endpoint_id, secret = await subscribe(endpoints, receiver.url, team)
    tickets: list[int] = []

    with worker_process(WORKER_ENV) as first:
        for index in range(6):
            ticket_id = await ticket_for(team, f"chaos {index}")
            tickets.append(ticket_id)
            await rename(ticket_id, f"Renamed {index}")
            await add_comment("ticket", ticket_id, f"Comment {index}", None)

        # The worker waits up to CRM_WEBHOOK_TIMEOUT for the held request,
        # so it is killed during the attempt.
        assert await asyncio.to_thread(receiver.held.wait, 90), "no request held"
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
    receiver.release.set()
    (held,) = [call for call in receiver.calls if call.kind == "held"]
    held_id = held.headers["webhook-id"]
    held_row = (
        await OutboxMessage.select().where(OutboxMessage.message_id == held_id).first()
    )
    assert held_row is not None
    earlier_calls = [
        call
        for call in receiver.calls
        if call.headers["webhook-id"] == held_id and call is not held
    ]
    # The killed attempt left no trace: its count and log row rolled back.
    assert held_row["status"] == "pending"
    assert held_row["attempts"] == len(earlier_calls), "attempt ended before kill"

    # Changes made while no worker runs wait in the outbox.
    for index, ticket_id in enumerate(tickets):
        await rename(ticket_id, f"Renamed again {index}")
    expected = await expected_event_ids(tickets)

    # The receiver is down when the next worker starts: connections are refused.
    receiver.stop()
    with worker_process(WORKER_ENV):

        async def refused() -> bool:
            return await WebhookAttempt.exists().where(
                (WebhookAttempt.endpoint == endpoint_id)
                & WebhookAttempt.error.like("ConnectError%")
            )

        await wait_for(refused, seconds=60)
        await asyncio.sleep(receiver.rng.uniform(0.2, 1.0))
        # The kill can roll back the log row of a late answer still in
        # flight, so one more late answer makes sure a timeout is logged.
        receiver.forced.append("late")
        receiver.start()
        await wait_for(all_delivered(endpoint_id, len(expected)), seconds=150)

    rows = await messages_of(endpoint_id)
    bodies = {row["message_id"]: row["payload"].encode() for row in rows}
    sent_events = {
        msgspec.json.decode(body)["data"]["event_id"] for body in bodies.values()
    }
    assert sent_events == expected
    assert len(rows) == len(expected)

    verifier = Webhook(secret)
    for call in receiver.calls:
        message_id = call.headers["webhook-id"]
        # The same id and body on every attempt, each freshly signed.
        assert call.body == bodies[message_id]
        assert verifier.verify(call.body, call.headers)

    acked_ids = {call.headers["webhook-id"] for call in receiver.acked()}
    assert acked_ids == set(bodies)
    kinds = {call.kind for call in receiver.calls}
    assert {"503", "late", "reset", "held"} <= kinds, kinds

    # The restarted worker sent the held message again, under the same id.
    redelivered = [
        call
        for call in receiver.acked()
        if call.headers["webhook-id"] == held_id and call.arrived_at > killed_at
    ]
    assert redelivered, f"{held_id} was not delivered after the kill"
    assert redelivered[0].body == held.body

    # Per record, first acknowledgements come in the order the events were written.
    first_acks: dict[str, list[int]] = {}
    seen: set[str] = set()
    for call in receiver.acked():
        message_id = call.headers["webhook-id"]
        if message_id in seen:
            continue
        seen.add(message_id)
        data = msgspec.json.decode(call.body)["data"]
        # A comment is a record of its own, with its own order.
        key = f"{data['record_type']}:{data['record_id']}"
        first_acks.setdefault(key, []).append(data["event_id"])
    for key, event_ids in first_acks.items():
        assert event_ids == sorted(event_ids), key

    attempts = await WebhookAttempt.select().where(
        WebhookAttempt.endpoint == endpoint_id
    )
    errors = [row["error"] for row in attempts]
    assert {row["outcome"] for row in attempts} >= {"delivered", "failed"}
    assert all(row["duration_ms"] >= 0 for row in attempts)
    assert any("timed out" in error for error in errors)
    assert any(row["status_code"] == 503 for row in attempts)
    assert any(error.startswith("ConnectError") for error in errors)
    # A reset before any response byte surfaces as one of these in httpx.
    assert any(
        error.startswith(("RemoteProtocolError", "ReadError")) for error in errors
    ), errors
    assert all(
        row["response_excerpt"] == "ok"
        for row in attempts
        if row["outcome"] == "delivered"
    )


async def test_lost_enqueue_still_delivers(
    receiver: Receiver, endpoints: list[int], redis_prefix: str
) -> None:
    team = await make_team()
    endpoint_id, secret = await subscribe(endpoints, receiver.url, team)
    tickets = [await ticket_for(team, f"offline {index}") for index in range(3)]
    # As if the process died between commit and queueing the delivery job.
    redis = Redis.from_url(os.environ["REDIS_URL"])
    for slot in range(4):
        job_id = f"{redis_prefix}outbox:kick:{slot}"
        await redis.zrem(queue_name(redis_prefix), job_id)
        await redis.delete(f"arq:job:{job_id}")
    await redis.aclose()

    with worker_process(WORKER_ENV):
        await wait_for(all_delivered(endpoint_id, 3), seconds=60)

    record_ids = sorted(
        msgspec.json.decode(call.body)["data"]["record_id"] for call in receiver.calls
    )
    assert record_ids == tickets
    for call in receiver.calls:
        assert Webhook(secret).verify(call.body, call.headers)


async def test_manual_redelivery_keeps_id(
    receiver: Receiver, endpoints: list[int]
) -> None:
    team = await make_team()
    endpoint_id, secret = await subscribe(endpoints, receiver.url, team)

    with worker_process(WORKER_ENV):
        await ticket_for(team, "redeliver")
        await wait_for(all_delivered(endpoint_id, 1), seconds=60)
        (message,) = await messages_of(endpoint_id)
        # A later second, so the new attempt has a new timestamp.
        await asyncio.sleep(1.1)
        await redeliver(endpoint_id, message["id"], None)

        async def twice() -> bool:
            return len(receiver.acked()) >= 2

        await wait_for(twice, seconds=60)
        await wait_for(all_delivered(endpoint_id, 1), seconds=30)

    first, second = receiver.calls
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert Webhook(secret).verify(second.body, second.headers)
    attempts = (
        await WebhookAttempt.select(WebhookAttempt.attempt, WebhookAttempt.outcome)
        .where(WebhookAttempt.message == message["id"])
        .order_by(WebhookAttempt.id)
    )
    assert [row["attempt"] for row in attempts] == [1, 2]
    assert [row["outcome"] for row in attempts] == ["delivered", "delivered"]


async def test_failing_endpoint_is_disabled(
    receiver: Receiver, endpoints: list[int], tmp_path: Path
) -> None:
    receiver.mode = "fail"
    admin = await make_user("admin")
    team = await make_team()
    endpoint_id, _ = await subscribe(endpoints, receiver.url, team)
    env = {
        **WORKER_ENV,
        "CRM_WEBHOOK_RETRY_SCALE": "0.00001",
        "CRM_WEBHOOK_DISABLE_AFTER": "2",
        "CRM_DATA_DIR": str(tmp_path),
    }

    with worker_process(env):
        await ticket_for(team, "doomed 1")
        await ticket_for(team, "doomed 2")

        async def disabled() -> bool:
            return not (await get_endpoint(endpoint_id))["enabled"]

        await wait_for(disabled, seconds=90)

        async def mailed() -> bool:
            files = list((tmp_path / "outbox").glob("*.eml"))
            return any(admin.email in path.read_text() for path in files)

        await wait_for(mailed, seconds=30)

    # The notice is automatic mail: if it comes back, it opens no ticket.
    notice_mail = next(
        path.read_text()
        for path in (tmp_path / "outbox").glob("*.eml")
        if admin.email in path.read_text()
    )
    assert "Auto-Submitted: auto-generated" in notice_mail
    assert "X-Switchboard-Loop: " in notice_mail

    endpoint = await get_endpoint(endpoint_id)
    assert endpoint["consecutive_failures"] == 2
    assert "2 messages in a row" in endpoint["disabled_reason"]
    rows = await messages_of(endpoint_id)
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert all(row["attempts"] == 8 for row in rows)
    attempts = await WebhookAttempt.select().where(
        WebhookAttempt.endpoint == endpoint_id
    )
    assert len(attempts) == 16
    assert {row["status_code"] for row in attempts} == {500}
    assert len(receiver.calls) == 16

    # Every admin hears of every disabled endpoint, and this worker may also
    # disable endpoints that earlier tests left failing, so the notice is
    # found by its link.
    rows = await Event.raw(
        "SELECT changes::text AS changes FROM event WHERE kind = 'workflow.notified' "
        "AND {} = ANY(topics) ORDER BY id",
        f"user:{admin.id}",
    )
    notices = [msgspec.json.decode(row["changes"]) for row in rows]
    link = f"/admin/webhooks/{endpoint_id}"
    about_endpoint = [notice for notice in notices if notice["link"] == link]
    assert len(about_endpoint) == 1, "no notice on the admin's live stream"
    assert receiver.url in about_endpoint[0]["message"]

    # A disabled endpoint gets no new event messages.
    await ticket_for(team, "after disabling")
    assert len(await messages_of(endpoint_id)) == 2


async def test_delivery_rechecks_the_address(
    receiver: Receiver, endpoints: list[int]
) -> None:
    team = await make_team()
    loopback_id, _ = await subscribe(endpoints, receiver.url, team)
    private_id, _ = await subscribe(endpoints, "http://10.0.0.1:9/hook", team)
    env = {
        "CRM_WEBHOOK_RETRY_SCALE": "0.00001",
        "CRM_WEBHOOK_DISABLE_AFTER": "100",
        "CRM_WEBHOOKS_ALLOW_PRIVATE": "0",
    }

    with worker_process(env):
        await ticket_for(team, "refused")

        async def given_up() -> bool:
            rows = [
                *await messages_of(loopback_id),
                *await messages_of(private_id),
            ]
            return len(rows) == 2 and all(row["status"] == "failed" for row in rows)

        await wait_for(given_up, seconds=60)

    assert receiver.calls == []
    for endpoint_id, address in ((loopback_id, "127.0.0.1"), (private_id, "10.0.0.1")):
        attempts = await WebhookAttempt.select().where(
            WebhookAttempt.endpoint == endpoint_id
        )
        assert len(attempts) == 8
        assert {row["outcome"] for row in attempts} == {"refused"}
        assert all(address in row["error"] for row in attempts)
        assert all(row["status_code"] is None for row in attempts)


async def test_rule_webhook_and_notify_use_outbox(
    receiver: Receiver, endpoints: list[int]
) -> None:
    team = await make_team()
    agent = await make_user("support_agent", team=team)
    endpoint_id, secret = await subscribe(
        endpoints, receiver.url, team, event_types=("deal.created",)
    )
    marker = uuid.uuid4().hex[:10]
    rule_id = await save_rule(
        None,
        "ticket",
        f"Hook {marker}",
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
                {"kind": "webhook", "endpoint_id": endpoint_id},
                {"kind": "notify", "user_id": agent.id, "body": "New {record.subject}"},
            ],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    try:
        ticket_id = await ticket_for(team, marker)
        # Both side effects are in the outbox as soon as the change commits.
        rows = await OutboxMessage.raw(
            "SELECT kind, payload FROM outbox_message WHERE id > (SELECT max(id) - 10 "
            "FROM outbox_message) AND (endpoint = {} OR payload LIKE {}) ORDER BY id",
            endpoint_id,
            f"%New Hook {marker}%",
        )
        assert [row["kind"] for row in rows] == ["webhook", "notify"]

        with worker_process(WORKER_ENV):
            await wait_for(all_delivered(endpoint_id, 1), seconds=60)

            async def notified() -> bool:
                return await Event.exists().where(
                    (Event.kind == "workflow.notified")
                    & Event.topics.any(f"user:{agent.id}")
                )

            await wait_for(notified, seconds=30)
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)

    (call,) = receiver.calls
    body = Webhook(secret).verify(call.body, call.headers)
    assert call.headers["webhook-id"].startswith("msg_")
    assert body["type"] == "workflow.webhook"
    assert body["data"]["rule"]["id"] == rule_id
    assert body["data"]["record"]["id"] == ticket_id


async def test_rule_webhook_leaves_out_encrypted_fields(
    receiver: Receiver, endpoints: list[int]
) -> None:
    team = await make_team()
    endpoint_id, _ = await subscribe(
        endpoints, receiver.url, team, event_types=("deal.created",)
    )
    marker = uuid.uuid4().hex[:10]
    rule_id = await save_rule(
        None,
        "contact",
        f"Contact hook {marker}",
        {
            "trigger": {"kind": "updated"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "last_name",
                        "op": "equals",
                        "value": marker,
                    }
                ],
            },
            "actions": [
                {"kind": "set_field", "field": "phone", "value": "+44 20 7946 0003"},
                {"kind": "set_field", "field": "title", "value": "Buyer"},
                {"kind": "webhook", "endpoint_id": endpoint_id},
            ],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    try:
        contact_id = await create_contact(
            {"first_name": "Ada", "last_name": marker, "phone": "+44 20 7946 0001"},
            None,
        )
        await update_contact(
            contact_id,
            {
                "phone": Edit("+44 20 7946 0001", "+44 20 7946 0002"),
                "first_name": Edit("Ada", "Grace"),
            },
            None,
        )
        messages = await messages_of(endpoint_id)
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)

    # The rule's own change is an update too, so the rule runs once more on
    # it; that run changes nothing. The first message is the one that set.
    message = messages[0]
    data = msgspec.json.decode(message["payload"])["data"]
    assert data["record"]["first_name"] == "Grace"
    # The rule's own changes are listed, except the encrypted one.
    assert list(data["changes"]) == ["title"]
    assert "phone" not in data["record"]
    assert "personal_notes" not in data["record"]
    assert all("7946" not in message["payload"] for message in messages)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with web_server({"CRM_WEBHOOKS_ALLOW_PRIVATE": "1"}) as running:
        yield running


async def test_admin_pages_manage_endpoint(server: Any, endpoints: list[int]) -> None:
    admin = await make_user("admin")
    agent = await make_user("support_agent")
    session = Session(server.url)
    other = Session(server.url)
    try:
        await session.sign_in(admin.email)
        await other.sign_in(agent.email)
        team = await make_team()
        marker = uuid.uuid4().hex[:8]
        form = {
            "url": f"http://127.0.0.1:9/{marker}",
            "description": "Pages",
            "event_types": ["ticket.created", "comment.created"],
            "filter_team": str(team),
        }

        assert (await session.get("/admin/webhooks")).status_code == 200
        assert (await other.get("/admin/webhooks")).status_code == 403
        assert (await other.post("/admin/webhooks", form)).status_code == 403

        invalid = await session.post("/admin/webhooks", {**form, "url": "ftp://x"})
        assert invalid.status_code == 422
        assert 'data-field="url"' in invalid.text

        created = await session.post("/admin/webhooks", form)
        assert created.status_code == 201, created.text
        assert created.headers["cache-control"] == "no-store"
        first_secret = SECRET.search(created.text)
        assert first_secret is not None
        row = (
            await WebhookEndpoint.select()
            .where(WebhookEndpoint.url == form["url"])
            .first()
        )
        assert row is not None
        endpoints.append(row["id"])
        path = f"/admin/webhooks/{row['id']}"
        assert first_secret.group(0) not in row["secret"]
        stored = decrypt_value(WebhookEndpoint, "secret", row["secret"])
        assert stored == first_secret.group(0)
        assert row["event_types"] == ["comment.created", "ticket.created"]
        assert msgspec.json.decode(row["filters"]) == {"team": team}

        page = await session.get(path)
        assert page.status_code == 200
        assert "whsec_" not in page.text
        assert (await other.get(path)).status_code == 403

        saved = await session.post(path, {**form, "description": "Renamed"})
        assert saved.status_code == 302
        assert (await get_endpoint(row["id"]))["description"] == "Renamed"

        off = await session.post(f"{path}/enabled", {})
        assert off.status_code == 302
        assert not (await get_endpoint(row["id"]))["enabled"]
        on = await session.post(f"{path}/enabled", {"enabled": "on"})
        assert on.status_code == 302
        assert (await get_endpoint(row["id"]))["enabled"]

        rotated = await session.post(f"{path}/rotate", {})
        assert rotated.status_code == 200
        second_secret = SECRET.search(rotated.text)
        assert second_secret is not None
        assert second_secret.group(0) != first_secret.group(0)
        after = await WebhookEndpoint.select(WebhookEndpoint.secret).where(
            WebhookEndpoint.id == row["id"]
        )
        stored = decrypt_value(WebhookEndpoint, "secret", after[0]["secret"])
        assert stored == second_secret.group(0)

        message_id = await insert_message("webhook", "{}", endpoint=row["id"])
        await OutboxMessage.update(
            {OutboxMessage.status: "failed", OutboxMessage.attempts: 7}
        ).where(OutboxMessage.id == message_id)
        await WebhookAttempt.insert(
            WebhookAttempt(
                message=message_id,
                endpoint=row["id"],
                attempt=7,
                status_code=502,
                outcome="failed",
                response_excerpt="bad gateway",
                error="status 502",
            )
        )
        log = await session.get(path)
        assert "bad gateway" in log.text
        assert "status 502" in log.text

        redelivered = await session.post(f"{path}/messages/{message_id}/redeliver", {})
        assert redelivered.status_code == 302
        message = (
            await OutboxMessage.select().where(OutboxMessage.id == message_id).first()
        )
        assert message is not None
        assert message["status"] == "pending"
        assert message["schedule_start"] == 7
        missing = await session.post(f"{path}/messages/999999999/redeliver", {})
        assert missing.status_code == 404
    finally:
        await session.close()
        await other.close()


async def test_locked_message_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_WEBHOOK_RETRY_SCALE", "0.00001")
    message_id = await insert_message("rescore", '{"record_type": "x"}')
    locked = asyncio.Event()
    release = asyncio.Event()

    async def hold_lock() -> None:
        async with OutboxMessage._meta.db.transaction():
            await OutboxMessage.raw(
                "SELECT id FROM outbox_message WHERE id = {} FOR UPDATE", message_id
            )
            locked.set()
            await release.wait()

    holder = asyncio.create_task(hold_lock())
    await locked.wait()
    try:
        assert await deliver_next(only_id=message_id) is None
    finally:
        release.set()
        await holder

    # The payload lacks record_id, so every attempt raises and is logged.
    statuses: list[str] = []
    async with asyncio.timeout(10):
        while "failed" not in statuses:
            status = await deliver_next(only_id=message_id)
            if status is not None:
                statuses.append(status)
            await asyncio.sleep(0.02)
    row = await OutboxMessage.select().where(OutboxMessage.id == message_id).first()
    assert row is not None
    assert row["status"] == "failed"
    assert row["attempts"] == 8
    assert "KeyError" in row["last_error"]
    assert statuses.count("pending") == 7
    assert statuses.count("failed") == 1


async def test_raising_side_effect_warns_until_given_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CRM_WEBHOOK_RETRY_SCALE", "0.00001")
    # A notification without user_ids: every attempt raises KeyError.
    payload = {"rule_id": 7, "record_type": "ticket", "record_id": 12, "message": "x"}
    outbox_id = await insert_message(NOTIFY, encode(payload))
    row = await OutboxMessage.select().where(OutboxMessage.id == outbox_id).first()
    assert row is not None

    statuses: list[str] = []
    with caplog.at_level(logging.WARNING, logger="app.webhooks.delivery"):
        async with asyncio.timeout(10):
            while "failed" not in statuses:
                status = await deliver_next(only_id=outbox_id, job_id="job-42")
                if status is not None:
                    statuses.append(status)
                await asyncio.sleep(0.02)

    logged = [
        record
        for record in caplog.records
        if record.name == "app.webhooks.delivery"
        and f"message_id={row['message_id']} " in record.getMessage()
    ]
    retries = [record for record in logged if record.levelno == logging.WARNING]
    errors = [record for record in logged if record.levelno >= logging.ERROR]
    assert statuses.count("pending") == 7
    assert len(retries) == 7
    for attempt, record in enumerate(retries, start=1):
        text = record.getMessage()
        assert "retrying" in text
        assert "rule_id=7 ticket_id=12 job_id=job-42" in text
        assert f"attempt={attempt} " in text
        assert "KeyError" in text
        # The traceback of the error goes with the warning.
        assert record.exc_info is not None
    assert len(errors) == 1
    assert "giving up" in errors[0].getMessage()
    assert "rule_id=7 ticket_id=12 job_id=job-42 attempts=8 " in errors[0].getMessage()
    assert errors[0].exc_info is not None
