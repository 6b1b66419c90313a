"""The migration chain on a database of its own: forwards, backwards, forwards.

The test run's shared database is never migrated backwards, because other
tests use its tables; this test creates and drops a second database instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio

from tests.conftest import SERVER_URL, TEST_DATABASE, database_url
from tests.servers import ROOT

# The earliest migration with backwards statements. The SQL migrations before
# it have no backwards step, so undoing one would delete its row in the
# migration table but keep its tables, and running it again would fail on them.
FIRST_REVERSIBLE = "2026-12-04T19:30:00:000021"

# Some of the tables, columns and indexes that the reversible migrations add.
ADDED_TABLES = [
    "webhook_endpoint",
    "email_message",
    "import_mapping",
    "lead",
    "scoring_model",
    "forecast_quota",
    "campaign",
    "sensitive_field",
    "task",
    "web_form_settings",
    "workflow_timer_plan",
]
ADDED_COLUMNS = [
    ("stage", "required_fields"),
    ("campaign", "version"),
    ("workflow_timer", "done_through"),
    ("deal", "forecast_category"),
    ("deal", "win_probability"),
]
ADDED_INDEXES = [
    "lead_open_email_idx",
    "workflow_timer_fired_idx",
    "deal_name_trgm_idx",
    "deal_updated_idx",
]

SCHEMA_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, column_name
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY tablename, indexname
    """,
    "constraints": """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public' ORDER BY 1, 2
    """,
    "triggers": """
        SELECT tgrelid::regclass::text, tgname FROM pg_trigger
        WHERE NOT tgisinternal ORDER BY 1, 2
    """,
    "role_permissions": "SELECT name, permissions FROM role ORDER BY name",
}


@pytest_asyncio.fixture
async def chain_database() -> AsyncIterator[str]:
    name = f"{TEST_DATABASE}_chain"
    admin = await asyncpg.connect(SERVER_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def run_on(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
    )


def migrate(url: str) -> None:
    result = run_on(url, "-m", "app.cli", "migrate")
    assert result.returncode == 0, result.stderr


async def schema(url: str) -> dict[str, list[Any]]:
    connection = await asyncpg.connect(url)
    try:
        return {
            name: [tuple(row) for row in await connection.fetch(query)]
            for name, query in SCHEMA_QUERIES.items()
        }
    finally:
        await connection.close()


async def ran_migrations(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT name FROM migration WHERE app_name = 'crm' ORDER BY name"
        )
    finally:
        await connection.close()
    return [row["name"] for row in rows]


async def test_reversible_migrations_undo_and_redo(chain_database: str) -> None:
    url = chain_database
    migrate(url)
    migrated = await schema(url)
    all_ran = await ran_migrations(url)
    reversible = [name for name in all_ran if name >= FIRST_REVERSIBLE]
    assert len(reversible) >= 10

    result = run_on(
        url,
        "-m",
        "piccolo.main",
        "migrations",
        "backwards",
        "crm",
        FIRST_REVERSIBLE,
        "--auto_agree",
    )
    assert result.returncode == 0, result.stdout + result.stderr

    assert await ran_migrations(url) == [
        name for name in all_ran if name < FIRST_REVERSIBLE
    ]
    reversed_schema = await schema(url)
    tables = {row[0] for row in reversed_schema["columns"]}
    columns = {row[:2] for row in reversed_schema["columns"]}
    indexes = {row[1] for row in reversed_schema["indexes"]}
    for table in ADDED_TABLES:
        assert table not in tables
    for column in ADDED_COLUMNS:
        assert column not in columns
    for index in ADDED_INDEXES:
        assert index not in indexes
    # Tables of the forwards-only migrations before the first reversible one.
    assert "workflow_rule" in tables
    assert "api_key" in tables
    # The leads and campaigns migrations take their grants back from the roles.
    for role, permissions in reversed_schema["role_permissions"]:
        resources = json.loads(permissions)
        assert "lead" not in resources, role
        assert "campaign" not in resources, role

    migrate(url)
    assert await ran_migrations(url) == all_ran
    assert await schema(url) == migrated
