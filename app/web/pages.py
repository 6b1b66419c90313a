"""The stream context every live page passes to its template."""

from __future__ import annotations

from typing import Any

from app.events.service import stream_positions


async def live_context(topics: list[str], filter_key: str = "") -> dict[str, Any]:
    """Return the page's streams and their positions; call before loading data.

    The page resumes from these positions when its socket connects, so an
    event that commits while the page is being rendered is not lost.
    """
    return {
        "live_topics": topics,
        "live_filter": filter_key,
        "live_seqs": await stream_positions(topics),
    }
