"""The stream context every live page passes to its template."""

from __future__ import annotations

from typing import Any

from app.events.service import stream_positions


async def live_context(
    topics: list[str], filter_key: str = "", *, presence: bool = True
) -> dict[str, Any]:
    """Return the page's streams and their positions; call before loading data.

    The page resumes from these positions when its socket connects, so an
    event that commits while the page is being rendered is not lost. A page
    with ``presence`` False has no place for who else is on its topics, so
    its socket neither shows its user there nor receives the viewers.
    """
    return {
        "live_topics": topics,
        "live_presence": presence,
        "live_filter": filter_key,
        "live_seqs": await stream_positions(topics),
    }
