"""The fragment that appends a new comment to a record's timeline."""

from __future__ import annotations

from typing import Any

from app.comments.service import get_comment
from app.web.templating import render
from realtime.messages import Event


async def render_new_comment(event: Event, cache: dict[str, Any]) -> str:
    key = f"comment:{event.record_id}"
    if key not in cache:
        comment = await get_comment(event.record_id)
        cache[key] = render("comments/_new.html", comment=comment) if comment else ""
    return cache[key]
