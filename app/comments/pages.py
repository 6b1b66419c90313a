"""The comment timeline and form of deal and ticket pages, as grants allow.

A comment grant's scope applies to the record the comment belongs to (see
``app.access.scopes.comment_permits``), so a record page shows its
timeline only to viewers whose comment read grant covers the record.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar.exceptions import PermissionDeniedException
from litestar.response import Template

from app.access.permissions import Access
from app.access.scopes import comment_permits
from app.auth.service import CurrentUser
from app.comments.service import add_comment, timeline
from app.errors import FieldError

logger = logging.getLogger(__name__)

PAGE_PATHS = {"deal": "/deals", "ticket": "/tickets"}


async def comment_context(
    parent_type: str, parent: dict[str, Any], access: Access
) -> dict[str, Any]:
    """Return the timeline and whether the viewer may read and add comments."""
    can_read = comment_permits(access, "read", parent_type, parent)
    return {
        "comments": await timeline(parent_type, parent["id"]) if can_read else [],
        "can_read_comments": can_read,
        "can_comment": comment_permits(access, "create", parent_type, parent),
    }


async def post_comment(
    parent_type: str, parent: dict[str, Any], data: dict[str, Any], user: CurrentUser
) -> Template:
    """Add a comment to a record the viewer can read; 403 without the grant."""
    if not comment_permits(user.access, "create", parent_type, parent):
        logger.info(
            "comment denied user_id=%s %s_id=%s", user.id, parent_type, parent["id"]
        )
        raise PermissionDeniedException(
            f"Your role does not allow you to comment on this {parent_type}."
        )
    action = f"{PAGE_PATHS[parent_type]}/{parent['id']}/comments"
    body = data.get("body", "")
    try:
        await add_comment(parent_type, parent["id"], body, user.id)
    except FieldError as error:
        # The form comes back with what was typed and why it was refused,
        # since the page swaps this response in place of the form.
        logger.info(
            "comment rejected user_id=%s %s_id=%s: %s",
            user.id,
            parent_type,
            parent["id"],
            error,
        )
        context = {"action": action, "body": body, "error": error.reason}
        return Template("comments/_form.html", context=context, status_code=422)
    return Template("comments/_form.html", context={"action": action})
