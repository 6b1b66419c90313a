"""The fragment that appends a new comment to a record's timeline."""

from __future__ import annotations

from typing import Any

from app.access.permissions import Access
from app.comments.service import get_comment
from app.web.templating import render
from realtime.messages import Event


async def render_new_comment(
    event: Event, cache: dict[str, Any], access: Access
) -> str:
    """Render the comment of ``event`` for a viewer with ``access``.

    Administrators get a rule's name as a link to its page, so the fragment
    is rendered once for them and once for everyone else.
    """
    key = f"comment:{event.record_id}"
    if key not in cache:
        cache[key] = await get_comment(event.record_id)
    comment = cache[key]
    if comment is None:
        return ""
    rendered_key = f"{key}:admin={access.is_admin}"
    if rendered_key not in cache:
        cache[rendered_key] = render(
            "comments/_new.html", comment=comment, access=access
        )
    return str(cache[rendered_key])
