"""The run's own database: create, migrate, fill with the datasets, drop.

The application's engine reads ``DATABASE_URL`` when ``app.piccolo_conf`` is
first imported, so the run sets it before any function here imports ``app``.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STAGE_NAMES = ("Prospecting", "Engaging", "Won", "Lost")


def server_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_SERVER_URL)


def database_url(name: str, base_url: str | None = None) -> str:
    """Return ``base_url`` (default: the server's URL) with database ``name``."""
    parts = urlsplit(base_url or server_url())
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(name: str, admin_url: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(name: str, admin_url: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def migrate() -> None:
    """Apply the migrations, keeping Piccolo's report off the terminal."""
    from app.migrate import migrate as run_migrations

    with contextlib.redirect_stdout(io.StringIO()):
        await run_migrations()


async def import_dataset(source: str, path: Path) -> None:
    """Import ``path``, raising if any row is rejected, so figures cover it all."""
    from app.imports.service import run_import

    report = await run_import(source, [path])
    if report.errors:
        raise RuntimeError(
            f"the {source} import of {path} rejected {len(report.errors)} rows, "
            f"the first: {report.errors[0]}"
        )


async def create_bench_user() -> tuple[str, str]:
    """Create an admin to sign in as; return its email and password."""
    from app.auth.service import create_user

    email = f"bench-{secrets.token_hex(4)}@bench.example"
    password = secrets.token_urlsafe(16)
    await create_user(email, "Bench User", "admin", password)
    return email, password


@dataclass
class PipelineDeals:
    """A pipeline, its stage ids in board order, and each deal's current stage."""

    id: int
    stages: list[int]
    deals: dict[int, int] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return f"pipeline:{self.id}"


async def load_pipeline(pipeline_id: int) -> PipelineDeals:
    from app.deals.tables import Deal, Stage

    stages = (
        await Stage.select(Stage.id)
        .where(Stage.pipeline == pipeline_id)
        .order_by(Stage.position, Stage.id)
    )
    deals = (
        await Deal.select(Deal.id, Deal.stage)
        .where(Deal.pipeline == pipeline_id)
        .order_by(Deal.id)
    )
    return PipelineDeals(
        id=pipeline_id,
        stages=[row["id"] for row in stages],
        deals={row["id"]: row["stage"] for row in deals},
    )


async def find_pipeline(name: str) -> PipelineDeals:
    from app.deals.tables import Pipeline

    row = await Pipeline.select(Pipeline.id).where(Pipeline.name == name).first()
    if row is None:
        raise RuntimeError(f"pipeline {name!r} not found after the import")
    return await load_pipeline(row["id"])


async def create_small_pipelines(count: int, deals_each: int) -> list[PipelineDeals]:
    """Create ``count`` pipelines of four stages with ``deals_each`` deals each."""
    from app.deals.tables import Deal, Pipeline, Stage

    pipelines = []
    for number in range(1, count + 1):
        rows = await Pipeline.insert(
            Pipeline(name=f"Bench pipeline {number}", position=number)
        ).returning(Pipeline.id)
        pipeline_id = rows[0]["id"]

        stage_ids = []
        for position, name in enumerate(STAGE_NAMES):
            stage_rows = await Stage.insert(
                Stage(pipeline=pipeline_id, name=name, position=position)
            ).returning(Stage.id)
            stage_ids.append(stage_rows[0]["id"])
        first_stage = stage_ids[0]

        deals: list[Any] = [
            Deal(
                name=f"Bench deal {number}-{index}",
                pipeline=pipeline_id,
                stage=first_stage,
                amount=Decimal(1000 + index),
            )
            for index in range(deals_each)
        ]
        await Deal.insert(*deals)
        pipelines.append(await load_pipeline(pipeline_id))
    return pipelines
