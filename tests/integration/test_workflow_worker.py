"""Workflow timers and side effects through a real arq worker process, and
what the worker logs while a rule's webhook keeps failing."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.tickets.service import create_ticket
from app.webhooks.service import EndpointInput, create_endpoint
from app.webhooks.settings import max_attempts
from app.webhooks.tables import OutboxMessage, WebhookEndpoint
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun, WorkflowRule, WorkflowTimer
from tests.factories import contains
from tests.servers import free_port, worker_process

pytestmark = pytest.mark.timeout(120)


async def wait_for(check: Any, seconds: float) -> float:
    """Poll the coroutine function ``check`` until it returns true; return
    the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        # Polling is the point: the worker signals nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_due_timer_fires_once_across_worker_restart() -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await save_rule(
        None,
        "ticket",
        f"Stale {marker}",
        {
            "trigger": {
                "kind": "time_after",
                "after": "created_at",
                "delay_minutes": 0,
            },
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
            "actions": [{"kind": "add_tag", "tag": "followed-up"}],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    try:
        # Due at once, while no worker runs.
        ticket_id = await create_ticket({"subject": f"Due {marker}"}, None)

        async def fired() -> bool:
            return await RuleRun.exists().where(RuleRun.rule == rule_id)

        with worker_process():
            took = await wait_for(fired, seconds=60)
        with worker_process():
            await asyncio.sleep(7)

        runs = await RuleRun.select().where(RuleRun.rule == rule_id)
        assert [run["outcome"] for run in runs] == ["done"]
        assert took < 60
        timer = (
            await WorkflowTimer.select().where(WorkflowTimer.rule == rule_id).first()
        )
        assert timer is not None
        assert timer["fired_at"] is not None
        tags = await RuleRun.raw("SELECT tags FROM ticket WHERE id = {}", ticket_id)
        assert tags[0]["tags"] == ["followed-up"]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


class Receiver(BaseHTTPRequestHandler):
    """Fails the first call with 503, then accepts, recording each body."""

    calls: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.calls.append(body)
        self.send_response(503 if len(Receiver.calls) == 1 else 204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a loopback port; yield its webhook URL."""
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.calls = []
    with serving(Receiver) as url:
        yield url


async def webhook_rule(marker: str, endpoint_id: int) -> int:
    """Save and enable a rule that calls the endpoint for each new ticket
    whose subject contains ``marker``."""
    definition = {
        "trigger": {"kind": "created"},
        "conditions": contains("subject", marker),
        "actions": [{"kind": "webhook", "endpoint_id": endpoint_id}],
    }
    rule_id = await save_rule(None, "ticket", f"Hook {marker}", definition, None)
    await set_enabled(rule_id, True, None)
    return rule_id


async def test_webhook_is_retried_after_a_failure(receiver: str) -> None:
    marker = uuid.uuid4().hex[:10]
    endpoint = await create_endpoint(
        EndpointInput(url=receiver, event_types=("deal.created",)),
        None,
        allow_private=True,
    )
    rule_id = await webhook_rule(marker, endpoint.id)
    try:
        env = {"CRM_WEBHOOKS_ALLOW_PRIVATE": "1", "CRM_WEBHOOK_RETRY_SCALE": "0.01"}
        with worker_process(env):
            ticket_id = await create_ticket({"subject": f"Hook {marker}"}, None)

            async def accepted() -> bool:
                return len(Receiver.calls) >= 2

            await wait_for(accepted, seconds=30)

        assert len(Receiver.calls) == 2
        assert Receiver.calls[0] == Receiver.calls[1]
        assert f'"id":{ticket_id}'.encode() in Receiver.calls[1]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
        await WebhookEndpoint.delete().where(WebhookEndpoint.id == endpoint.id)


class Unavailable(BaseHTTPRequestHandler):
    """Fails every call with 503."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(503)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def unavailable() -> Iterator[str]:
    with serving(Unavailable) as url:
        yield url


async def test_failing_webhook_warns_then_errors_once(
    unavailable: str, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex[:10]
    endpoint = await create_endpoint(
        EndpointInput(url=unavailable, event_types=("deal.created",)),
        None,
        allow_private=True,
    )
    rule_id = await webhook_rule(marker, endpoint.id)
    log_path = tmp_path / "worker.log"
    try:
        # Every retry delay is a ten-thousandth of the real one: about 9 s
        # for all the attempts.
        env = {"CRM_WEBHOOKS_ALLOW_PRIVATE": "1", "CRM_WEBHOOK_RETRY_SCALE": "0.0001"}
        with log_path.open("wb") as log, worker_process(env, log):
            ticket_id = await create_ticket({"subject": f"Down {marker}"}, None)

            async def given_up() -> bool:
                return await OutboxMessage.exists().where(
                    (OutboxMessage.endpoint == endpoint.id)
                    & (OutboxMessage.status == "failed")
                )

            await wait_for(given_up, seconds=60)
        message = (
            await OutboxMessage.select(OutboxMessage.message_id)
            .where(OutboxMessage.endpoint == endpoint.id)
            .first()
        )
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
        await WebhookEndpoint.delete().where(WebhookEndpoint.id == endpoint.id)

    assert message is not None
    lines = [
        line
        for line in log_path.read_text().splitlines()
        if message["message_id"] in line
    ]
    retries = [line for line in lines if " WARNING " in line]
    errors = [line for line in lines if " ERROR " in line]
    last = max_attempts()
    assert len(retries) == last - 1
    for attempt, line in enumerate(retries, start=1):
        assert "retrying" in line
        assert f"rule_id={rule_id} ticket_id={ticket_id}" in line
        assert f"attempt={attempt} " in line
        # The job that made the attempt: a queued delivery or the relay cron.
        assert re.search(r"job_id=\S*(outbox:kick|relay_outbox)", line)
        assert "status 503" in line
    assert len(errors) == 1
    assert "giving up" in errors[0]
    assert f"rule_id={rule_id} ticket_id={ticket_id}" in errors[0]
    assert f"attempts={last} " in errors[0]
