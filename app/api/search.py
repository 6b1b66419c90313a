"""Search across accounts, contacts, deals, tickets and leads in the API.

The route searches the types that both the key's scopes and the user's
roles let it read, with the same matching and the same field rules as the
search page. Hits come type after type, each type's best first, one page
at a time.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Response, get
from litestar.exceptions import PermissionDeniedException
from litestar.openapi.spec import OpenAPIType
from litestar.params import QueryParameter

from app.access.guards import SIGNED_IN, refusal_message
from app.api.common import (
    KEY_SCOPE,
    ApiRequest,
    LimitQuery,
    page_response,
    parse_limit,
    problem_responses,
    text_parameter,
)
from app.api.keys import KeyHolder
from app.errors import FieldError
from app.pagination import (
    MAX_OFFSET,
    MAX_SEARCH_LENGTH,
    parse_positive,
    parse_search,
)
from app.search.queries import SEARCH_TYPES, SearchType, parse_type, search_all

logger = logging.getLogger(__name__)

# Required, but declared optional so that its absence gets the problem
# detail naming the parameter, which Litestar's own check leaves out.
SearchQuery = Annotated[
    str | None,
    QueryParameter(
        description=(
            "The text to find: part of a name, an email address or a ticket "
            "subject, an account's phone number, or a ticket number such as T-123."
        ),
        required=True,
        schema_extra={
            "one_of": None,
            "type": OpenAPIType.STRING,
            "minLength": 1,
            "maxLength": MAX_SEARCH_LENGTH,
        },
    ),
]
TypeQuery = Annotated[
    str | None,
    text_parameter(
        "Only records of this type.",
        name="type",
        type=OpenAPIType.STRING,
        enum=list(SEARCH_TYPES),
    ),
]
PageQuery = Annotated[
    str | None,
    text_parameter(
        "The page number, from 1, as the previous page's ``next`` link has it.",
        type=OpenAPIType.INTEGER,
        minimum=1,
    ),
]


def searched_types(request: ApiRequest, raw_type: str | None) -> list[SearchType]:
    """Return the types to search: the one ``type`` names, or all that the key
    and the user may read.

    Raises PermissionDeniedException (403) for a named type that the key's
    scopes or the user's roles do not let it read.
    """
    holder: KeyHolder = request.auth
    access = request.user.access
    kind = parse_type(raw_type)
    if kind is None:
        return [
            kind
            for kind in SEARCH_TYPES.values()
            if holder.allows(kind.object_type, "read")
            and access.can(kind.object_type, "read")
        ]
    if not holder.allows(kind.object_type, "read"):
        detail = f"This API key has no scope for {kind.object_type} records."
    elif not access.can(kind.object_type, "read"):
        detail = refusal_message(f"{kind.object_type}:read")
    else:
        return [kind]
    logger.info(
        "api search denied key_id=%s user_id=%s type=%s",
        holder.id,
        holder.user_id,
        kind.object_type,
    )
    raise PermissionDeniedException(detail)


@get(
    "/search",
    # Any valid key: each type is searched only where the key and the role
    # allow reading it.
    opt={"permission": SIGNED_IN, KEY_SCOPE: ""},
    operation_id="search",
    responses=problem_responses(),
    summary="Search records",
    description=(
        "Find the accounts, contacts, deals, tickets and leads that the key's "
        "user may read by part of a name or email address, an account's phone "
        "number, a ticket's subject or number (T-123), or a lead's company. "
        "Hits come type after type in that order, each type's closest matches "
        "first. Each hit has the record's type, id, name and link, and the "
        "record's fields that the user may see. ``totals`` counts the hits of "
        "each type searched."
    ),
    tags=["search"],
)
async def search_records(
    request: ApiRequest,
    q: SearchQuery = None,
    record_type: TypeQuery = None,
    page: PageQuery = None,
    limit: LimitQuery = None,
) -> Response[dict[str, Any]]:
    number = parse_positive("page", page, default=1)
    size = parse_limit(limit)
    offset = (number - 1) * size
    if offset > MAX_OFFSET:
        raise FieldError("page", page, "is too large")
    kinds = searched_types(request, record_type)
    if q is None:
        raise FieldError("q", None, "is required: give the text to search for")
    search = parse_search(q, "q")
    if not search:
        raise FieldError("q", q, "must contain text to search for")
    hits, totals = await search_all(search, kinds, request.user.access, size, offset)

    following = None
    if offset + len(hits) < sum(totals.values()):
        params = {"q": search, "type": record_type, "page": number + 1, "limit": limit}
        kept = {name: value for name, value in params.items() if value}
        following = f"{request.url.path}?{urlencode(kept)}"
    response = page_response([hit.as_json() for hit in hits], following)
    response.content["totals"] = totals
    return response


SEARCH_ROUTES = [search_records]
