"""Time to the full response of pages, requested one after another.

The pages are requested in turn in each round, so that a noisy moment of the
machine falls on all of them alike, the baseline included.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field

from bench.context import Context
from bench.session import Session

LOAD_MORE = re.compile(r'hx-get="(/pipelines/\d+/stages/\d+/cards\?after=[^"]+)"')


@dataclass
class Page:
    name: str
    path: str
    htmx: bool = False
    samples_ms: list[float] = field(default_factory=list)
    size_bytes: int = 0


async def load_more_path(session: Session, board_path: str) -> str:
    """Return the first column's "load more" URL from the board page."""
    response = await session.http.get(board_path)
    response.raise_for_status()
    match = LOAD_MORE.search(response.text)
    if match is None:
        raise RuntimeError(f"no 'load more' link found on {board_path}")
    return html.unescape(match.group(1))


async def time_pages(
    session: Session, pages: list[Page], warmup: int, rounds: int
) -> None:
    """Request each page ``warmup + rounds`` times, recording the last ``rounds``."""
    for number in range(warmup + rounds):
        for page in pages:
            headers = {"hx-request": "true"} if page.htmx else {}
            started = time.perf_counter_ns()
            response = await session.http.get(page.path, headers=headers)
            elapsed = time.perf_counter_ns() - started
            if response.status_code != 200:
                raise RuntimeError(
                    f"GET {page.path} returned {response.status_code}, expected 200"
                )
            if number >= warmup:
                page.samples_ms.append(elapsed / 1e6)
                page.size_bytes = len(response.content)


async def measure_pages(context: Context) -> dict[str, Page]:
    """Time the board, its "load more" page and the ticket board against /health."""
    settings = context.settings
    session = Session(context.servers["web-1"].url)
    context.stack.push_async_callback(session.close)
    await session.sign_in(context.email, context.password)

    board = f"/pipelines/{context.maven.id}"
    pages = [
        Page("health", "/health"),
        Page("board", board),
        Page("column_load_more", await load_more_path(session, board), htmx=True),
    ]
    if context.has_tickets:
        pages.append(Page("ticket_board", "/tickets"))
    await time_pages(session, pages, settings.page_warmup, settings.page_rounds)
    return {page.name: page for page in pages}
