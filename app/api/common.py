"""Request parameters and responses that every API route shares."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIType
from litestar.params import HeaderParameter, JSONBody, QueryParameter
from litestar.types import ASGIApp, Receive, Scope, Send
from piccolo.table import Table

from app.api.keys import KeyHolder
from app.api.problems import (
    PROBLEM_JSON,
    NoCurrentVersion,
    PreconditionRequired,
    WeakEntityTag,
)
from app.api.records import DEFAULT_LIMIT, MAX_LIMIT, Sort, keyset_page, next_link
from app.auth.service import CurrentUser
from app.deletion import delete_record
from app.errors import FieldError, NotFound
from app.fields import MAX_ID, reference
from app.pagination import parse_positive

ApiRequest = Request[CurrentUser, KeyHolder, Any]
JsonBody = JSONBody[dict[str, Any]]
# The If-Match value that matches any current version (RFC 9110, section 13.1.1).
ANY_VERSION = "*"
# A record version in If-Match: up to 10 digits without a leading zero, as the
# ETag sends it ("3"), unquoted (3), or as a weak tag (W/"3"), which never
# matches. Any other value, a list of tags included, is rejected.
IF_MATCH_VERSION = re.compile(
    r'(?P<weak>W/)?"(?P<quoted>0|[1-9][0-9]{0,9})"|(?P<bare>0|[1-9][0-9]{0,9})'
)
IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="if-match",
        description=(
            "The version the change is based on, as the ETag of a GET returns "
            'it, such as "3", or unquoted, such as 3. A different current '
            'version gets 412, and so does a weak tag such as W/"3", which '
            "never matches. ``*`` matches whatever version the record is at, "
            "and gets 412 when the record does not exist. A list of several "
            "tags, in one line or in repeated lines, gets 422."
        ),
    ),
]
# The name of the bearer security scheme in the OpenAPI document.
SECURITY_SCHEME = "apiKey"
# Middleware the API replaces: sessions, session sign-in, CSRF tokens.
BYPASS_PAGE_MIDDLEWARE = {
    "exclude_from_auth": True,
    "skip_session": True,
    "exclude_from_csrf": True,
}
# Route ``opt`` key naming the key scope a route needs, when it is not the
# route's permission, such as "deal:write" for changing pipelines. An empty
# value lets any valid key through (users and teams).
KEY_SCOPE = "key_scope"


def parse_limit(raw: str | None) -> int:
    limit = parse_positive("limit", raw, default=DEFAULT_LIMIT)
    if limit > MAX_LIMIT:
        raise FieldError("limit", raw, f"must be at most {MAX_LIMIT}")
    return limit


def parse_since(raw: str | None) -> dt.datetime | None:
    """Read an ISO 8601 time with a time zone, such as 2026-12-01T09:00:00Z."""
    value = (raw or "").strip()
    if not value:
        return None
    try:
        since = dt.datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(
            "updated_since", raw, "is not an ISO 8601 time such as 2026-12-01T09:00Z"
        ) from None
    if since.tzinfo is None:
        raise FieldError("updated_since", raw, "must include a time zone, such as Z")
    return since


def parse_flag(name: str, raw: str | None) -> bool | None:
    """Read a true/false query parameter, or return None without one."""
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise FieldError(name, raw, "must be true or false")
    return raw == "true"


def flag_parameter(description: str) -> QueryParameter:
    return text_parameter(description, type=OpenAPIType.STRING, enum=["true", "false"])


def parse_version(raw: str | None) -> int | None:
    """Read a required If-Match header: ``"3"``, ``3`` or ``*``.

    Returns None for ``*``. Raises PreconditionRequired (428) without one,
    WeakEntityTag (412) for a weak tag such as ``W/"3"``, and FieldError
    (422) for any other value.
    """
    if raw is None or not raw.strip():
        raise PreconditionRequired(
            "Send If-Match with the version of the record the change is based "
            "on, as the ETag of a GET returns it, or * for any version."
        )
    return parse_optional_version(raw)


def parse_optional_version(raw: str | None) -> int | None:
    """Read If-Match like ``parse_version``; None without one and for ``*``."""
    if raw is None or not raw.strip() or is_any_version(raw):
        return None
    value = raw.strip()
    match = IF_MATCH_VERSION.fullmatch(value)
    if match is None:
        raise invalid_if_match(value)
    if match["weak"]:
        raise WeakEntityTag(value)
    return int(match["quoted"] or match["bare"])


def invalid_if_match(value: str) -> FieldError:
    """Build the 422 error for an If-Match value that is not a version or ``*``."""
    # Header bytes arrive decoded as Latin-1. Decoding them as UTF-8 shows
    # what the client typed, and escapes bytes that are not UTF-8.
    shown = value.encode("latin-1", "backslashreplace").decode(
        "utf-8", "backslashreplace"
    )
    if "," in value:
        reason = (
            "lists several entity tags, but only one may be sent: the ETag "
            "a GET returns (the record's version in quotes), or *"
        )
    else:
        reason = (
            "is not a record version: send the ETag a GET returns (the "
            "record's version in quotes), or *"
        )
    return FieldError("If-Match", shown, reason, label="If-Match")


def is_any_version(raw: str | None) -> bool:
    return raw is not None and raw.strip() == ANY_VERSION


class CombineIfMatchLines:
    """Join repeated If-Match header lines into one comma-separated line.

    RFC 9110 (section 5.3) makes repeated field lines equal to one line that
    lists their values. Litestar passes a header parameter the first line
    only, so without this a second line would go unchecked. Litestar caches
    the parsed headers on first read, so this must run before any middleware
    that reads them.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["headers"] = combine_header_lines(scope["headers"], b"if-match")
        await self.app(scope, receive, send)


def combine_header_lines(
    headers: Iterable[tuple[bytes, bytes]], name: bytes
) -> list[tuple[bytes, bytes]]:
    """Return ``headers`` with every line named ``name`` joined into the first."""
    headers = list(headers)
    values = [value for key, value in headers if key.lower() == name]
    if len(values) < 2:
        return headers
    combined: list[tuple[bytes, bytes]] = []
    for key, value in headers:
        if key.lower() != name:
            combined.append((key, value))
        elif values:
            combined.append((name, b", ".join(values)))
            values = []
    return combined


@contextmanager
def if_match_target(
    raw: str | None, record_type: str, record_id: int
) -> Iterator[None]:
    """Turn NotFound for the target record into 412 when If-Match is ``*``.

    ``*`` is false when the record has no current version, so a record that
    does not exist gets 412. One outside the caller's read scope gets the
    same, so the status does not tell the two apart. Without ``*``, and for
    other records the request names, NotFound stays a 404.
    """
    try:
        yield
    except NotFound as error:
        target = (error.record_type, error.record_id) == (record_type, record_id)
        if target and is_any_version(raw):
            raise NoCurrentVersion(record_type, record_id) from None
        raise


async def delete_by_request(
    request: ApiRequest, object_type: str, record_id: int, if_match: str | None
) -> None:
    """Delete a record as the key's user, only at the If-Match version if sent.

    With ``*``, a record that is gone or out of the caller's scope gets 412.
    """
    with if_match_target(if_match, object_type, record_id):
        await delete_record(
            object_type,
            record_id,
            request.user.access,
            request.user.id,
            parse_optional_version(if_match),
        )


def item_response(
    body: dict[str, Any], version: int, status: int = 200, location: str = ""
) -> Response[dict[str, Any]]:
    """Return one record with its version as the ETag, and Location for a 201."""
    headers = {"etag": f'"{version}"'}
    if location:
        headers["location"] = location
    return Response(body, status_code=status, headers=headers)


def page_response(
    rows: list[dict[str, Any]], following: str | None
) -> Response[dict[str, Any]]:
    """Return one page of a list, linking to the next page in body and header."""
    headers = {"link": f'<{following}>; rel="next"'} if following else {}
    return Response({"data": rows, "next": following}, headers=headers)


@dataclass(frozen=True)
class Listing:
    """A list of rows that are not records of an owner: pipelines, users...

    ``select_sql`` is the SELECT ... FROM with the table as ``alias``, and
    ``sorts`` maps each column that ``sort`` may name to its SQL type.
    """

    table: type[Table]
    select_sql: str
    alias: str
    sorts: dict[str, str]


async def listing_page(
    request: ApiRequest,
    listing: Listing,
    conditions: list[str],
    args: list[object],
    query: dict[str, str | None],
) -> Response[dict[str, Any]]:
    """Return one page of ``listing`` under ``conditions``, linking to the next.

    ``query`` holds the request's query parameters, including ``sort``,
    ``cursor`` and ``limit``; the next page's link keeps the others.
    """
    sort = Sort.parse(listing.sorts, query.get("sort"))
    limit = parse_limit(query.get("limit"))
    page = await keyset_page(
        listing.table,
        listing.select_sql,
        listing.alias,
        conditions,
        args,
        listing.sorts,
        sort,
        query.get("cursor"),
        limit,
    )
    following = next_link(
        request.url.path, {**query, "limit": limit, "cursor": None}, page.next_cursor
    )
    return page_response(page.rows, following)


async def parent_listing_page(
    request: ApiRequest,
    listing: Listing,
    parent_type: str,
    parent_id: int,
    person: tuple[str, str | None],
    flag: tuple[str, str | None],
    paging: dict[str, str | None],
    present: Callable[[dict[str, Any]], dict[str, Any]],
) -> Response[dict[str, Any]]:
    """Return one page of the rows of ``listing`` that belong to a deal or ticket.

    ``person`` and ``flag`` each pair a column with the request's raw filter
    on it: a user id and a true or false. ``paging`` contains ``sort``,
    ``cursor`` and ``limit``, and each row of the page passes through
    ``present``. The caller checks that the parent may be read.
    """
    alias = listing.alias
    conditions = [f"{alias}.{parent_type} = {{}}"]
    args: list[object] = [parent_id]
    person_column, person_raw = person
    person_id = reference(person_column, person_raw)
    if person_id is not None:
        conditions.append(f"{alias}.{person_column} = {{}}")
        args.append(person_id)
    flag_column, flag_raw = flag
    if flag_raw is not None:
        conditions.append(f"{alias}.{flag_column} = {{}}")
        args.append(parse_flag(flag_column, flag_raw))
    query = {person_column: person_raw, flag_column: flag_raw, **paging}
    response = await listing_page(request, listing, conditions, args, query)
    response.content["data"] = [present(row) for row in response.content["data"]]
    return response


class ProblemDetail(msgspec.Struct):
    """An error response (RFC 9457). Other members depend on the error."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    # The request field or header at fault, and the value it had.
    field: str | None = None
    value: Any = None


# Every API route can return these: a parameter or body that cannot be read
# (400: a record id out of range, a query parameter that is unknown, empty,
# repeated or invalid, malformed JSON), no valid key (401), and too many
# requests (429). Routes that take a JSON body add 422 for an invalid field.
COMMON_PROBLEMS = (400, 401, 429)
# No right or no key scope: every route but those any valid key may call.
FORBIDDEN = 403


def problem_responses(*statuses: int, scoped: bool = True) -> dict[int, ResponseSpec]:
    """Document the problem responses of a route: ``statuses`` and the common ones.

    ``scoped`` routes check a role's right or the key's scope, so they add
    403. Document only statuses the handler can return: the schemathesis
    test checks that each one is produced.
    """
    forbidden = (FORBIDDEN,) if scoped else ()
    return {
        status: ResponseSpec(
            data_container=ProblemDetail,
            description=HTTPStatus(status).phrase,
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in sorted({*COMMON_PROBLEMS, *forbidden, *statuses})
    }


def sort_parameter(sorts: dict[str, str]) -> QueryParameter:
    """Describe a ``sort`` parameter over the columns of ``sorts``."""
    orders = [f"{prefix}{name}" for name in sorts for prefix in ("", "-")]
    return text_parameter(
        "The column to sort by, descending when it starts with -, or id "
        "without it. Rows with equal values are ordered by id.",
        type=OpenAPIType.STRING,
        enum=orders,
    )


def sort_query(sorts: dict[str, str]) -> Any:
    return Annotated[str | None, sort_parameter(sorts)]


def text_parameter(
    description: str, name: str | None = None, **schema: Any
) -> QueryParameter:
    """Describe a query parameter read as text, documenting its real schema.

    Handlers parse the text themselves, so that an invalid value gets a 400
    naming the parameter. ``schema`` replaces the text's schema in the
    OpenAPI document, such as ``type=OpenAPIType.INTEGER, minimum=1``.
    ``name`` is the parameter's name where it differs from the argument's.
    """
    return QueryParameter(
        description=description, name=name, schema_extra={"one_of": None, **schema}
    )


def query_parameter(description: str, **schema: Any) -> Any:
    """Type a query parameter like ``text_parameter``, for a built signature."""
    return Annotated[str | None, text_parameter(description, **schema)]


# The schema of a record id in a query parameter.
ID_SCHEMA: dict[str, Any] = {
    "type": OpenAPIType.INTEGER,
    "minimum": 1,
    "maximum": MAX_ID,
}


def id_query(description: str) -> Any:
    return query_parameter(description, **ID_SCHEMA)


def id_parameter(description: str) -> QueryParameter:
    return text_parameter(description, **ID_SCHEMA)


LimitQuery = Annotated[
    str | None,
    QueryParameter(
        description=(
            f"Rows per page, at most {MAX_LIMIT}, or {DEFAULT_LIMIT} without it."
        ),
        schema_extra={
            "one_of": None,
            "type": OpenAPIType.INTEGER,
            "minimum": 1,
            "maximum": MAX_LIMIT,
        },
    ),
]
CursorQuery = Annotated[
    str | None,
    QueryParameter(
        description=(
            "The position of the next page, as the previous page's ``next`` "
            "link has it."
        ),
        schema_extra={"one_of": None, "type": OpenAPIType.STRING},
    ),
]
TeamQuery = Annotated[
    str | None,
    QueryParameter(
        description="Only members of this team.",
        schema_extra={"one_of": None, **ID_SCHEMA},
    ),
]
