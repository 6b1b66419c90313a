"""Factories for the records tests need, each with unique names."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from app.auth.service import CurrentUser, create_user
from app.deals.tables import Deal, Pipeline, Stage
from app.tickets.tables import Ticket

PASSWORD = "correct horse battery"


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


async def make_user(role: str = "sales_rep", name: str | None = None) -> CurrentUser:
    email = f"{uuid.uuid4().hex[:10]}@test.example"
    return await create_user(email, name or unique("User"), role, PASSWORD)


async def make_pipeline(
    stage_names: tuple[str, ...] = ("Prospecting", "Engaging", "Won", "Lost"),
) -> dict[str, Any]:
    rows = await Pipeline.insert(Pipeline(name=unique("Pipeline"))).returning(
        Pipeline.id
    )
    pipeline_id = rows[0]["id"]
    stages = []
    for position, name in enumerate(stage_names):
        kind = {"Won": "won", "Lost": "lost"}.get(name, "open")
        stage_rows = await Stage.insert(
            Stage(pipeline=pipeline_id, name=name, position=position, kind=kind)
        ).returning(Stage.id)
        stages.append(stage_rows[0]["id"])
    return {"id": pipeline_id, "stages": stages}


async def make_deal(
    pipeline: dict[str, Any], stage_index: int = 0, amount: str = "1000", **values: Any
) -> int:
    rows = await Deal.insert(
        Deal(
            name=values.pop("name", unique("Deal")),
            pipeline=pipeline["id"],
            stage=pipeline["stages"][stage_index],
            amount=Decimal(amount),
            **values,
        )
    ).returning(Deal.id)
    return rows[0]["id"]


async def make_ticket(status: str = "new", **values: Any) -> int:
    rows = await Ticket.insert(
        Ticket(subject=values.pop("subject", unique("Ticket")), status=status, **values)
    ).returning(Ticket.id)
    return rows[0]["id"]
