"""The search page and the top bar's dropdown of first hits."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromQuery, QueryParameter
from litestar.response import Template

from app.access.guards import SIGNED_IN
from app.access.permissions import Access
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.pagination import Page, PageRequest, parse_search, reject_unknown_query
from app.search.queries import (
    GROUP_SIZE,
    SUGGESTION_SIZE,
    SearchType,
    parse_type,
    readable_types,
    search_groups,
    search_type,
)

UserRequest = Request[CurrentUser, Any, Any]
TypeQuery = Annotated[str | None, QueryParameter(name="type")]
# The dropdown searches from this many characters on, because a single
# character matches most records.
MIN_SUGGESTION_LENGTH = 2


def chosen_type(raw: str | None, kinds: list[SearchType]) -> SearchType | None:
    """Read the ``type`` parameter: a type the viewer may read, or None for all."""
    kind = parse_type(raw)
    if kind is not None and kind not in kinds:
        raise FieldError("type", raw, "is a record type your role may not read")
    return kind


def reject_paging_without_type(
    params: dict[str, str | None], kinds: list[SearchType]
) -> None:
    """Raise FieldError for a page number or size given without a ``type``.

    Without a type the page shows the first hits of every type, which has
    no pages, so a page number there would be silently ignored.
    """
    for name, raw in params.items():
        if (raw or "").strip():
            choices = ", ".join(kind.object_type for kind in kinds)
            hint = f". Add type, one of {choices}" if choices else ""
            raise FieldError(
                name,
                raw,
                "needs a type, because without one the page shows only the "
                f"first {GROUP_SIZE} hits of each type{hint}",
            )


class SearchController(Controller):
    path = "/search"
    opt = {"permission": SIGNED_IN}
    before_request = staticmethod(reject_unknown_query)

    @get("/")
    async def search_page(
        self,
        request: UserRequest,
        q: FromQuery[str | None] = None,
        record_type: TypeQuery = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
    ) -> Template:
        """Show the first hits of every type, or every hit of one type by page.

        Each type is searched within the viewer's read scope, and a type
        the viewer may not read is left out.
        """
        access = request.user.access
        search = parse_search(q)
        kinds = readable_types(access)
        kind = chosen_type(record_type, kinds)
        if kind is None:
            reject_paging_without_type({"page": page, "size": size}, kinds)
        keep = {"q": search, "type": kind.object_type if kind else None}
        paging = PageRequest.parse(page, size, path="/search", keep=keep)
        context: dict[str, Any] = {
            "search": search,
            "top_search": search,
            "kinds": kinds,
            "kind": kind,
            "groups": [],
            "results": None,
            "access": access,
        }
        if search and kind is not None:
            context["results"] = await type_page(kind, search, access, paging)
        elif search:
            context["groups"] = await search_groups(search, kinds, access)
        return Template("search/page.html", context=context)

    @get("/suggest")
    async def suggestions(
        self, request: UserRequest, q: FromQuery[str | None] = None
    ) -> Template:
        """Render the top bar's dropdown: the first hits of each type."""
        access = request.user.access
        search = parse_search(q)
        groups = []
        if len(search) >= MIN_SUGGESTION_LENGTH:
            groups = await search_groups(
                search, readable_types(access), access, SUGGESTION_SIZE
            )
        return Template(
            "search/_suggestions.html",
            context={"search": search, "groups": groups, "access": access},
        )


async def type_page(
    kind: SearchType, search: str, access: Access, paging: PageRequest
) -> Page[Any]:
    hits, total = await search_type(kind, search, access, paging.size, paging.offset)
    return Page(rows=hits, total=total, paging=paging)
