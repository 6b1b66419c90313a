"""The progress bar pushed to the page of the user running an import."""

from __future__ import annotations

from typing import Any

from app.imports.jobs import get_job
from app.web.templating import render
from realtime.messages import Event


async def render_import(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    job = await get_job(event.record_id)
    return dict.fromkeys(variants, render("imports/_progress.html", job=job, oob=True))


async def snapshot_import(topic: str, variant: str) -> str:
    job = await get_job(int(topic.partition(":")[2]))
    return render("imports/_progress.html", job=job, oob=True)
