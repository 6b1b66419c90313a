"""Adding comments to deals and tickets, and reading their timelines."""

from __future__ import annotations

import logging
from typing import Any

from app import fields
from app.comments.tables import Comment
from app.deals.tables import Deal
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.sanitize import clean_rich_text, has_text
from app.tickets.tables import Ticket

logger = logging.getLogger(__name__)

PARENTS: dict[str, Any] = {"deal": Deal, "ticket": Ticket}
MAX_BODY = 20_000
TIMELINE_PAGE = 50

# ``rule_name`` names the rule that wrote the comment: its current name, or
# the name it had then if it was deleted since. It is None for other comments.
COMMENT_QUERY = """
    SELECT c.id, c.body, c.internal, c.created_at, c.deal, c.ticket,
           u.name AS author_name, c.rule,
           coalesce(r.name, nullif(c.rule_name, '')) AS rule_name
    FROM comment c LEFT JOIN app_user u ON u.id = c.author
    LEFT JOIN workflow_rule r ON r.id = c.rule
"""


async def add_comment(
    parent_type: str,
    parent_id: int,
    body: str,
    actor_id: int | None,
    internal: bool = False,
) -> int:
    """Add a comment to a deal or ticket and announce it on the record's page.

    The body may use the formatting that ``app.sanitize`` allows, and it is
    stored sanitised. Raises FieldError when nothing but removed markup is left.
    """
    text = fields.text("body", body, required=True, max_length=MAX_BODY)
    html = clean_rich_text(text)
    if not has_text(html):
        raise FieldError("body", text[:40], "contains no text once markup is removed")
    parent = PARENTS[parent_type]

    async with change_set(actor_id) as changes:
        if not await parent.exists().where(parent.id == parent_id):
            raise NotFound(parent_type, parent_id)
        rows = await Comment.insert(
            Comment(
                {
                    Comment.body: html,
                    Comment.author: actor_id,
                    Comment.internal: internal,
                    getattr(Comment, parent_type): parent_id,
                }
            )
        ).returning(Comment.id)
        comment_id = rows[0]["id"]
        changes.add(
            "comment.created",
            "comment",
            comment_id,
            [f"{parent_type}:{parent_id}"],
            {parent_type: parent_id},
        )
        if parent_type == "deal":
            # A deal's comments are one of its win model's features.
            from app.deals.service import queue_rescoring

            queue_rescoring(changes, parent_id)

    logger.info(
        "comment added comment_id=%s %s_id=%s user_id=%s",
        comment_id,
        parent_type,
        parent_id,
        actor_id,
    )
    return comment_id


async def timeline(
    parent_type: str, parent_id: int, limit: int = TIMELINE_PAGE
) -> list[dict[str, Any]]:
    """Return the latest comments of a record, oldest first."""
    rows = await Comment.raw(
        f"SELECT * FROM ({COMMENT_QUERY} WHERE c.{parent_type} = {{}} "
        "ORDER BY c.created_at DESC, c.id DESC LIMIT {}) t ORDER BY created_at, id",
        parent_id,
        limit,
    )
    return rows


async def get_comment(comment_id: int) -> dict[str, Any] | None:
    rows = await Comment.raw(f"{COMMENT_QUERY} WHERE c.id = {{}}", comment_id)
    return rows[0] if rows else None
