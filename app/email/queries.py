"""Reading a ticket's email: its messages, page by page, with their attachments."""

from __future__ import annotations

from typing import Any

from app.email.tables import EmailMessage
from app.pagination import Page, PageRequest

MESSAGES_PAGE = 20

MESSAGES = """
SELECT id, direction, from_address, to_address, subject, outcome, reason,
       status, error, sent_at, created_at, count(*) OVER () AS total
FROM email_message WHERE ticket = {}
ORDER BY id DESC LIMIT {} OFFSET {}
"""
ATTACHMENTS = """
SELECT id, message, filename, content_type, size, stored
FROM email_attachment WHERE message = ANY({}) ORDER BY id
"""


async def ticket_messages(ticket_id: int, paging: PageRequest) -> Page[dict[str, Any]]:
    """Return one page of a ticket's messages, newest first, each with the
    list of its attachments under ``attachments``."""
    rows = await EmailMessage.raw(MESSAGES, ticket_id, paging.size, paging.offset)
    total = int(rows[0]["total"]) if rows else 0
    if not rows and paging.offset:
        counted = await EmailMessage.raw(
            "SELECT count(*) AS total FROM email_message WHERE ticket = {}", ticket_id
        )
        total = int(counted[0]["total"])
    by_message: dict[int, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
    if rows:
        for attachment in await EmailMessage.raw(ATTACHMENTS, list(by_message)):
            by_message[attachment["message"]].append(attachment)
    for row in rows:
        row["attachments"] = by_message[row["id"]]
    return Page(rows=rows, total=total, paging=paging)
