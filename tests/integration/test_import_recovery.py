"""Web imports that outlive their worker: stopped, killed, or lost by Redis.

A real web server takes the upload and real arq worker processes run it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from app.contacts.tables import Contact
from app.imports.heartbeat import MAX_LOST_RUNS
from app.imports.service import upload_folder
from app.imports.tables import ImportJob
from app.tickets.tables import Ticket
from tests.browserless import Session
from tests.factories import make_user
from tests.servers import WebServer, web_server, worker_process
from workers.connection import import_job_id, queue_name
from workers.imports import import_files

# Short, so that a killed worker's import is taken over within seconds.
STALE_SECONDS = 3
TICKETS_HEADER = (
    "Ticket ID,Customer Name,Customer Email,Ticket Type,Ticket Subject,"
    "Ticket Description,Ticket Status,Ticket Priority,Ticket Channel"
)
# Enough rows that an import is still running when the test stops its worker.
ROWS = 30_000


# Starts every ticket id of this module, whose tickets are deleted at its end
# so that tests counting the "tickets:" keys of the dataset see only those.
KEY_MARK = "recovery"


@pytest.fixture(scope="module", autouse=True)
async def delete_imported_rows() -> AsyncIterator[None]:
    yield
    await Ticket.delete().where(Ticket.external_key.like(f"tickets:{KEY_MARK}%"))
    await Contact.delete().where(
        Contact.external_key.like(f"tickets-contact:pat.{KEY_MARK}%")
    )


def ticket_key() -> str:
    return KEY_MARK + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[WebServer]:
    with web_server({"CRM_DATA_DIR": str(data_dir)}) as running:
        yield running


def worker_env(data_dir: Path) -> dict[str, str]:
    return {"CRM_DATA_DIR": str(data_dir), "IMPORT_STALE_SECONDS": str(STALE_SECONDS)}


def tickets_csv(key: str, rows: int = ROWS) -> bytes:
    lines = [TICKETS_HEADER]
    for n in range(rows):
        lines.append(
            f"{key}-{n},Pat Doe,pat.{key}.{n % 50}@test.example,Technical issue,"
            f"Setup {n},Cannot set it up,Open,High,Email"
        )
    return ("\n".join(lines) + "\n").encode()


async def start_web_import(server: WebServer, content: bytes) -> tuple[int, Session]:
    user = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    response = await session.http.post(
        "/import/",
        data={"source": "tickets"},
        files={"files": ("tickets.csv", content, "text/csv")},
        headers={"x-csrftoken": session.csrf_token},
        timeout=60,
    )
    assert response.status_code == 302, response.text[:500]
    return int(response.headers["location"].rsplit("/", 1)[1]), session


async def job(job_id: int) -> dict[str, Any]:
    query = ImportJob.select().where(ImportJob.id == job_id)
    row = await query.output(load_json=True).first()
    assert row is not None
    return row


async def wait_for(
    check: Callable[[], Awaitable[bool]], seconds: float, what: str
) -> float:
    """Poll ``check`` until it is true, and return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds} s")


async def running_with_progress(job_id: int) -> bool:
    row = await job(job_id)
    return row["state"] == "running" and row["rows_done"] > 0


async def tickets_imported(key: str) -> int:
    return await Ticket.count().where(Ticket.external_key.like(f"tickets:{key}-%"))


async def page_state(session: Session, job_id: int) -> str:
    response = await session.get(f"/import/{job_id}")
    assert response.status_code == 200
    marker = f'id="import-{job_id}"'
    assert marker in response.text
    return response.text.split('data-state="', 1)[1].split('"', 1)[0]


@pytest.mark.timeout(180)
async def test_sigterm_leaves_import_to_next_worker(
    server: WebServer, data_dir: Path
) -> None:
    key = ticket_key()
    job_id, session = await start_web_import(server, tickets_csv(key))
    folder = upload_folder(data_dir, job_id)

    with worker_process(worker_env(data_dir)) as first:
        await wait_for(lambda: running_with_progress(job_id), 60, "progress")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0

    stopped = await job(job_id)
    assert stopped["state"] == "queued"
    assert stopped["finished_at"] is None
    assert (folder / "tickets.csv").is_file()
    assert await page_state(session, job_id) == "queued"

    with worker_process(worker_env(data_dir)):

        async def done() -> bool:
            return (await job(job_id))["state"] in ("done", "failed")

        await wait_for(done, 120, "the import's end")

    finished = await job(job_id)
    assert finished["state"] == "done"
    assert finished["rows_done"] == ROWS
    assert finished["rows_failed"] == 0
    assert finished["lost_runs"] == 0
    assert await tickets_imported(key) == ROWS
    assert not folder.exists()
    assert await page_state(session, job_id) == "done"
    await session.close()


@pytest.mark.timeout(180)
async def test_killed_worker_import_resumes(server: WebServer, data_dir: Path) -> None:
    key = ticket_key()
    job_id, session = await start_web_import(server, tickets_csv(key))
    folder = upload_folder(data_dir, job_id)

    with worker_process(worker_env(data_dir)) as first:
        await wait_for(lambda: running_with_progress(job_id), 60, "progress")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    killed_at = time.monotonic()
    killed = await job(job_id)
    assert killed["state"] == "running"
    assert (folder / "tickets.csv").is_file()

    with worker_process(worker_env(data_dir)):

        async def taken_over() -> bool:
            return (await job(job_id))["lost_runs"] == 1

        await wait_for(taken_over, 30, "the second worker's start of the import")
        takeover = time.monotonic() - killed_at
        assert await page_state(session, job_id) == "running"

        async def done() -> bool:
            return (await job(job_id))["state"] in ("done", "failed")

        await wait_for(done, 120, "the import's end")

    # arq's in-progress key of the killed run lasts STALE_SECONDS after its
    # last heartbeat, and the worker polls the queue every 0.5 s.
    assert takeover < STALE_SECONDS + 10
    finished = await job(job_id)
    assert finished["state"] == "done"
    assert finished["rows_done"] == ROWS
    assert finished["lost_runs"] == 1
    assert await tickets_imported(key) == ROWS
    assert not folder.exists()
    await session.close()


@pytest.mark.timeout(120)
async def test_sweep_queues_import_lost_by_redis(
    server: WebServer, data_dir: Path, redis_prefix: str
) -> None:
    key = ticket_key()
    job_id, session = await start_web_import(server, tickets_csv(key, rows=50))
    arq_id = redis_prefix + import_job_id(job_id)
    redis = Redis.from_url(os.environ["REDIS_URL"])
    assert await redis.exists(f"arq:job:{arq_id}")
    # As if Redis restarted without its data while no worker ran.
    await redis.delete(f"arq:job:{arq_id}")
    await redis.zrem(queue_name(redis_prefix), arq_id)
    await redis.aclose()
    await ImportJob.raw(
        "UPDATE import_job SET created_at = now() - interval '1 minute' WHERE id = {}",
        job_id,
    )

    with worker_process(worker_env(data_dir)):

        async def done() -> bool:
            return (await job(job_id))["state"] in ("done", "failed")

        await wait_for(done, 60, "the import's end")

    finished = await job(job_id)
    assert finished["state"] == "done"
    assert finished["lost_runs"] == 1
    assert await tickets_imported(key) == 50
    await session.close()


async def test_import_fails_after_too_many_lost_runs(
    data_dir: Path,
) -> None:
    user = await make_user("admin")
    rows = await ImportJob.insert(
        ImportJob(
            source="tickets",
            filenames=["tickets.csv"],
            user=user.id,
            state="running",
            lost_runs=MAX_LOST_RUNS - 1,
        )
    ).returning(ImportJob.id)
    job_id = rows[0]["id"]
    folder = upload_folder(data_dir, job_id)
    folder.mkdir(parents=True)
    (folder / "tickets.csv").write_bytes(tickets_csv(ticket_key(), rows=5))

    result = await import_files({}, job_id, "tickets", [str(folder)])

    assert result is None
    failed = await job(job_id)
    assert failed["state"] == "failed"
    assert failed["lost_runs"] == MAX_LOST_RUNS
    assert "stopped 3 times" in failed["errors"][0]["reason"]
    assert not folder.exists()


async def test_finished_import_is_not_run_again(data_dir: Path) -> None:
    user = await make_user("admin")
    rows = await ImportJob.insert(
        ImportJob(source="tickets", filenames=["a.csv"], user=user.id, state="done")
    ).returning(ImportJob.id)

    result = await import_files({}, rows[0]["id"], "tickets", ["/nonexistent"])

    assert result is None
    assert (await job(rows[0]["id"]))["state"] == "done"
