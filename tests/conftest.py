"""Each test run gets its own PostgreSQL database and Redis key prefix.

DATABASE_URL and REDIS_URL name the servers (defaults: the local ones on
their standard ports). The run creates ``crm_test_<random>`` on that server,
migrates it, and drops it at the end, so parallel runs never collide.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

RUN_ID = uuid.uuid4().hex[:10]
SERVER_URL = os.environ.get(
    "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_DATABASE = f"crm_test_{RUN_ID}"


def database_url(name: str) -> str:
    parts = urlsplit(SERVER_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


# Set before anything imports the application, which reads them once.
os.environ["DATABASE_URL"] = database_url(TEST_DATABASE)
os.environ["REDIS_URL"] = REDIS_URL
os.environ["REDIS_PREFIX"] = f"crm-test-{RUN_ID}:"
os.environ.setdefault("SECRET_KEY", "test-secret-" + RUN_ID)
os.environ.setdefault(
    "CRM_ENCRYPTION_KEYS",
    "test:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
)
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

DATASETS = Path(
    os.environ.get("CRM_DATASETS", Path(__file__).parents[2] / "shared" / "datasets")
)


def datasets_dir(*parts: str) -> Path:
    """Return a folder of the public datasets, or skip the test without it."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"public datasets not found at {path}; set CRM_DATASETS to their folder"
        )
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def test_database() -> AsyncIterator[str]:
    admin = await asyncpg.connect(
        database_url(urlsplit(SERVER_URL).path.lstrip("/") or "postgres")
    )
    await admin.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
    await admin.close()

    from app.migrate import migrate
    from app.piccolo_conf import DB

    await migrate()
    await DB.start_connection_pool(min_size=1, max_size=10)
    try:
        yield os.environ["DATABASE_URL"]
    finally:
        from app.workflows.jobs import close_queue

        # Deal and lead changes queue rescoring on this process's connection.
        await close_queue()
        await DB.close_connection_pool()
        admin = await asyncpg.connect(
            database_url(urlsplit(SERVER_URL).path.lstrip("/") or "postgres")
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
        await admin.close()
        await delete_redis_keys(os.environ["REDIS_PREFIX"])


async def delete_redis_keys(prefix: str) -> None:
    """Remove what this run left in the shared Redis: sessions, queues, presence."""
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    yield os.environ["REDIS_PREFIX"]
