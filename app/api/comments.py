"""Comments in the API: the list of a deal's or ticket's comments, adding
one, changing one's own, and deleting.

A comment's rights follow the record it belongs to (``comment_permits``):
the comment grant's scope applies to the parent's owner and team, and the
parent must be readable. The key needs the comment scope, checked by the
middleware, and read scope on the parent's type, checked here.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from litestar import Response, delete, get, patch, post
from litestar.exceptions import PermissionDeniedException
from litestar.handlers import HTTPRouteHandler

from app import fields
from app.access.guards import permission
from app.access.scopes import comment_permits, permits_record
from app.api.common import (
    ApiRequest,
    CursorQuery,
    IfMatch,
    JsonBody,
    LimitQuery,
    Listing,
    delete_by_request,
    flag_parameter,
    id_parameter,
    if_match_target,
    item_response,
    parent_listing_page,
    parse_version,
    problem_responses,
    sort_parameter,
)
from app.api.records import load_record
from app.api.resources import RESOURCES
from app.comments.service import MAX_BODY, add_comment
from app.comments.tables import Comment
from app.errors import FieldError, NotFound, VersionMismatch
from app.events.service import change_set
from app.sanitize import clean_rich_text, has_text
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

PARENT_TYPES = ("deal", "ticket")
# ``rule_name`` as the timeline shows it (app.comments.service.COMMENT_QUERY).
COMMENT_COLUMNS = (
    "id, version, created_at, updated_at, body, internal, author, deal, ticket, "
    "rule, coalesce((SELECT r.name FROM workflow_rule r WHERE r.id = c.rule), "
    "nullif(c.rule_name, '')) AS rule_name"
)
TAGS = ["comments"]
COMMENTS = Listing(
    Comment,
    f"SELECT {COMMENT_COLUMNS} FROM comment c",
    "c",
    {"id": "integer", "created_at": "timestamptz", "updated_at": "timestamptz"},
)
CommentSort = Annotated[str | None, sort_parameter(COMMENTS.sorts)]
AuthorQuery = Annotated[str | None, id_parameter("Only comments of this author.")]
InternalQuery = Annotated[
    str | None,
    flag_parameter("Only internal comments (true) or the others (false)."),
]


def present(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "body": row["body"],
        "internal": row["internal"],
        "author": row["author"],
        # The workflow rule that wrote a note, which has no author. Its id
        # is null once the rule is deleted.
        "rule": (
            {"id": row["rule"], "name": row["rule_name"]}
            if row["rule_name"] is not None
            else None
        ),
        "deal": row["deal"],
        "ticket": row["ticket"],
    }


async def load_parent(
    request: ApiRequest, parent_type: str, parent_id: int, action: str
) -> dict[str, Any]:
    """Load the deal or ticket of comments and check ``action`` on its comments.

    Raises NotFound when the user may not read the parent, and 403 when
    they may read it but not read or ``action`` its comments, or the key has
    no scope for the parent's type.
    """
    if not request.auth.allows(parent_type, "read"):
        raise PermissionDeniedException(
            f"This API key has no scope for {parent_type} records, so it cannot "
            f"reach their comments."
        )
    access = request.user.access
    parent = await load_record(RESOURCES[parent_type], parent_id)
    if not permits_record(access, parent_type, "read", parent):
        raise NotFound(parent_type, parent_id)
    # Every comment action needs the right to read the comments first.
    for needed in dict.fromkeys(("read", action)):
        if not comment_permits(access, needed, parent_type, parent):
            logger.info(
                "api comment action denied user_id=%s %s_id=%s action=%s",
                access.user_id,
                parent_type,
                parent_id,
                needed,
            )
            raise PermissionDeniedException(
                f"Your role does not allow you to {needed} comments on this "
                f"{parent_type}."
            )
    return parent


async def load_comment(
    request: ApiRequest, comment_id: int, action: str
) -> dict[str, Any]:
    rows = await Comment.raw(
        f"SELECT {COMMENT_COLUMNS} FROM comment c WHERE id = {{}}", comment_id
    )
    if not rows:
        raise NotFound("comment", comment_id)
    row = dict(rows[0])
    parent_type = "deal" if row["deal"] is not None else "ticket"
    try:
        await load_parent(request, parent_type, row[parent_type], action)
    except NotFound:
        raise NotFound("comment", comment_id) from None
    return row


def body_text(data: dict[str, Any]) -> str:
    """Return the ``body`` member of a request, checked but not yet sanitised."""
    raw = data.get("body")
    if not isinstance(raw, str):
        raise FieldError("body", raw, "must be a string")
    return fields.text("body", raw, required=True, max_length=MAX_BODY)


def comment_routes(parent_type: str) -> list[HTTPRouteHandler]:
    """Build the list and create routes of the comments of ``parent_type``."""
    path = f"/{RESOURCES[parent_type].plural}/{{record_id:int}}/comments"

    @get(
        path,
        opt=permission("comment", "read"),
        operation_id=f"list_{parent_type}_comments",
        responses=problem_responses(404),
        summary=f"List the comments of a {parent_type}, oldest first by default",
        tags=TAGS,
    )
    async def list_comments(
        request: ApiRequest,
        record_id: RecordId,
        author: AuthorQuery = None,
        internal: InternalQuery = None,
        sort: CommentSort = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = None,
    ) -> Response[dict[str, Any]]:
        await load_parent(request, parent_type, record_id, "read")
        return await parent_listing_page(
            request,
            COMMENTS,
            parent_type,
            record_id,
            ("author", author),
            ("internal", internal),
            {"sort": sort, "cursor": cursor, "limit": limit},
            present,
        )

    @post(
        path,
        opt=permission("comment", "create"),
        operation_id=f"create_{parent_type}_comment",
        responses=problem_responses(422, 404),
        summary=f"Add a comment to a {parent_type}",
        description="``body`` is required, and ``internal`` is false unless sent.",
        tags=TAGS,
    )
    async def create_comment(
        request: ApiRequest, record_id: RecordId, data: JsonBody
    ) -> Response[dict[str, Any]]:
        await load_parent(request, parent_type, record_id, "create")
        unknown = sorted(set(data) - {"body", "internal"})
        if unknown:
            name = unknown[0]
            raise FieldError(
                name,
                data[name],
                "is not a comment field, so set only body and internal",
            )
        internal = data.get("internal", False)
        if not isinstance(internal, bool):
            raise FieldError("internal", internal, "must be true or false")
        comment_id = await add_comment(
            parent_type, record_id, body_text(data), request.user.id, internal
        )
        row = await load_comment(request, comment_id, "read")
        return item_response(
            present(row), row["version"], 201, f"/api/v1/comments/{comment_id}"
        )

    return [list_comments, create_comment]


async def update_comment_body(
    row: dict[str, Any], text: str, expected_version: int, actor_id: int
) -> None:
    """Replace a comment's body at ``expected_version``, sanitised like a new one."""
    html = clean_rich_text(text)
    if not has_text(html):
        raise FieldError("body", text[:40], "contains no text once markup is removed")
    comment_id = row["id"]
    parent_type = "deal" if row["deal"] is not None else "ticket"
    async with change_set(actor_id) as changes:
        locked = await Comment.raw(
            "SELECT version, body FROM comment WHERE id = {} FOR UPDATE", comment_id
        )
        if not locked:
            raise NotFound("comment", comment_id)
        current = locked[0]
        if current["version"] != expected_version:
            raise VersionMismatch(
                "comment", comment_id, expected_version, current["version"]
            )
        if current["body"] == html:
            return
        await Comment.raw(
            "UPDATE comment SET body = {}, version = version + 1, updated_at = {} "
            "WHERE id = {}",
            html,
            dt.datetime.now(dt.UTC),
            comment_id,
        )
        changes.add(
            "comment.updated",
            "comment",
            comment_id,
            [f"{parent_type}:{row[parent_type]}"],
            {"body": [current["body"], html]},
        )
    logger.info("comment updated comment_id=%s user_id=%s", comment_id, actor_id)


@get(
    "/comments/{record_id:int}",
    opt=permission("comment", "read"),
    operation_id="get_comment",
    responses=problem_responses(404),
    summary="Read a comment",
    tags=TAGS,
)
async def get_comment(
    request: ApiRequest, record_id: RecordId
) -> Response[dict[str, Any]]:
    row = await load_comment(request, record_id, "read")
    return item_response(present(row), row["version"])


@patch(
    "/comments/{record_id:int}",
    opt=permission("comment", "edit"),
    operation_id="update_comment",
    responses=problem_responses(422, 404, 412, 428),
    summary="Change the body of one's own comment",
    description="Only the comment's author may change it, at the version in If-Match.",
    tags=TAGS,
)
async def update_comment(
    request: ApiRequest,
    record_id: RecordId,
    data: JsonBody,
    if_match: IfMatch = None,
) -> Response[dict[str, Any]]:
    version = parse_version(if_match)
    with if_match_target(if_match, "comment", record_id):
        row = await load_comment(request, record_id, "edit")
    if row["author"] != request.user.id:
        logger.info(
            "api comment edit denied: not the author comment_id=%s user_id=%s",
            record_id,
            request.user.id,
        )
        raise PermissionDeniedException("Only its author may change a comment.")
    unknown = sorted(set(data) - {"body"})
    if unknown:
        name = unknown[0]
        raise FieldError(name, data[name], "cannot be changed, so set only body")
    expected = row["version"] if version is None else version
    with if_match_target(if_match, "comment", record_id):
        await update_comment_body(row, body_text(data), expected, request.user.id)
    row = await load_comment(request, record_id, "read")
    return item_response(present(row), row["version"])


@delete(
    "/comments/{record_id:int}",
    opt=permission("comment", "delete"),
    operation_id="delete_comment",
    responses=problem_responses(422, 404, 412),
    summary="Delete a comment",
    description="With If-Match, only at that version (412 otherwise).",
    tags=TAGS,
)
async def delete_comment(
    request: ApiRequest, record_id: RecordId, if_match: IfMatch = None
) -> None:
    with if_match_target(if_match, "comment", record_id):
        row = await load_comment(request, record_id, "read")
        parent_type = "deal" if row["deal"] is not None else "ticket"
        if not request.auth.allows(parent_type, "read"):
            raise NotFound("comment", record_id)
    await delete_by_request(request, "comment", record_id, if_match)


COMMENT_ROUTES = [
    *comment_routes("deal"),
    *comment_routes("ticket"),
    get_comment,
    update_comment,
    delete_comment,
]
