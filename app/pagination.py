"""Offset paging, text search and query checks for lists: page numbers, links,
patterns, and the query parameters a list takes."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode

from litestar import Request
from litestar.params import QueryParameter

from app.errors import FieldError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
SIZE_PARAM = "size"
# Contact emails, the longest field the lists search, are at most 254 characters.
MAX_SEARCH_LENGTH = 254
# PostgreSQL takes OFFSET as a bigint, so no page may start beyond it.
MAX_OFFSET = 2**63 - 1

Row = TypeVar("Row")


@dataclass(frozen=True)
class PageRequest:
    """One page of a list, and how to link to its other pages.

    ``path`` and ``keep`` are the page's own path and the query parameters
    its links carry along (the search, other lists' page numbers). ``param``
    is the query parameter with the page number, and ``anchor`` is the id of
    the element the links scroll to.
    """

    number: int = 1
    size: int = DEFAULT_PAGE_SIZE
    path: str = ""
    keep: Mapping[str, str | None] = field(default_factory=dict)
    param: str = "page"
    anchor: str = ""

    @classmethod
    def parse(
        cls,
        raw_number: str | None,
        raw_size: str | None = None,
        *,
        path: str = "",
        keep: Mapping[str, str | None] | None = None,
        param: str = "page",
        anchor: str = "",
    ) -> PageRequest:
        """Read a page number and a page size from query text.

        A missing number means the first page and a missing size the default.
        Raises FieldError, naming the parameter, for anything but a whole
        number of 1 or more, and for sizes above ``MAX_PAGE_SIZE``.
        """
        number = parse_positive(param, raw_number, default=1)
        size = parse_positive(SIZE_PARAM, raw_size, default=DEFAULT_PAGE_SIZE)
        if size > MAX_PAGE_SIZE:
            raise FieldError(SIZE_PARAM, raw_size, f"must be at most {MAX_PAGE_SIZE}")
        if (number - 1) * size > MAX_OFFSET:
            raise FieldError(param, raw_number, "is too large")
        return cls(
            number=number,
            size=size,
            path=path,
            keep=keep or {},
            param=param,
            anchor=anchor,
        )

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def url(self, number: int) -> str:
        """Link to page ``number`` of this list, keeping the other parameters."""
        params = {name: value for name, value in self.keep.items() if value}
        if number > 1:
            params[self.param] = str(number)
        if self.size != DEFAULT_PAGE_SIZE:
            params[SIZE_PARAM] = str(self.size)
        query = urlencode(params)
        # With no path, "?" still leaves the current page's own query behind.
        url = f"{self.path}?{query}" if query else self.path or "?"
        return f"{url}#{self.anchor}" if self.anchor else url


@dataclass(frozen=True)
class Page(Generic[Row]):
    """The rows of one page and the size of the whole list."""

    rows: list[Row]
    total: int
    paging: PageRequest

    @property
    def number(self) -> int:
        return self.paging.number

    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // self.paging.size))

    @property
    def first_item(self) -> int:
        """Position in the whole list of the first row shown, counting from 1."""
        return self.paging.offset + 1 if self.rows else 0

    @property
    def last_item(self) -> int:
        return self.paging.offset + len(self.rows)

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.paging.offset + len(self.rows) < self.total

    @property
    def prev_url(self) -> str | None:
        """Link to the previous page, or to the last one from beyond the end."""
        if not self.has_prev:
            return None
        return self.paging.url(min(self.number - 1, self.page_count))

    @property
    def next_url(self) -> str | None:
        return self.paging.url(self.number + 1) if self.has_next else None


def parse_sibling_pages(
    path: str, raw_numbers: Mapping[str, str | None]
) -> dict[str, PageRequest]:
    """Parse the page numbers of several lists shown on one page.

    ``raw_numbers`` maps each list's page parameter to its query text. Each
    list's links keep the other lists' page numbers and scroll back to the
    list, whose element id is the parameter without its ``_page`` suffix.
    """
    requests = {}
    for param, raw in raw_numbers.items():
        others = {name: value for name, value in raw_numbers.items() if name != param}
        requests[param] = PageRequest.parse(
            raw, path=path, keep=others, param=param, anchor=param.removesuffix("_page")
        )
    return requests


def parse_search(raw: str | None, name: str = "search") -> str:
    """Trim search text and collapse each run of whitespace into one space.

    Raises FieldError, naming the field ``name``, for text longer than
    ``MAX_SEARCH_LENGTH`` or with a NUL character.
    """
    search = " ".join((raw or "").split())
    if "\x00" in search:
        # PostgreSQL text cannot hold NUL, so the query would fail.
        raise FieldError(
            name, search.replace("\x00", "\\0")[:40], "must not contain NUL"
        )
    if len(search) > MAX_SEARCH_LENGTH:
        raise FieldError(
            name,
            search[:40] + "…",
            f"is longer than {MAX_SEARCH_LENGTH} characters",
        )
    return search


def parse_positive(name: str, raw: str | None, *, default: int) -> int:
    value = (raw or "").strip()
    if not value:
        return default
    # isdigit() alone accepts non-ASCII digits such as "²", which int() rejects.
    if not (value.isascii() and value.isdigit()):
        raise FieldError(name, raw, "must be a whole number of 1 or more")
    if len(value) > len(str(MAX_OFFSET)):
        raise FieldError(name, raw, "is too large")
    number = int(value)
    if number < 1:
        raise FieldError(name, raw, "must be a whole number of 1 or more")
    return number


def contains_pattern(text: str) -> str:
    r"""Build an ILIKE pattern that matches ``text`` anywhere, taken literally.

    The pattern escapes ``%``, ``_`` and ``\`` with a backslash, which is
    PostgreSQL's default LIKE escape character.
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def check_query(
    raw_query: str, allowed: Collection[str], *, place: str, allow_empty: bool
) -> None:
    """Raise FieldError for a query parameter that is not in ``allowed``, that
    is given more than once, or that is empty unless ``allow_empty``.

    A list reads one value per parameter, so ignoring a misspelt filter, or
    all but one of its values, would show a list other than the one asked
    for. ``place`` names what takes the parameters in the message ("page").
    """
    seen: set[str] = set()
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise FieldError(
                name, value, f"is not a parameter of this {place} (it takes {known})"
            )
        if not value and not allow_empty:
            raise FieldError(
                name, value, "is empty, so give a value or leave the parameter out"
            )
        if name in seen:
            raise FieldError(name, None, "must be given at most once")
        seen.add(name)


def query_names(handler: Any) -> frozenset[str]:
    """Return the names of the query parameters a route handler declares."""
    names = _query_names.get(id(handler))
    if names is None:
        names = frozenset(
            getattr(field.kwarg_definition, "name", None) or name
            for name, field in handler.parsed_fn_signature.parameters.items()
            if isinstance(field.kwarg_definition, QueryParameter)
        )
        _query_names[id(handler)] = names
    return names


_query_names: dict[int, frozenset[str]] = {}


async def reject_unknown_query(request: Request[Any, Any, Any]) -> None:
    """Check a list page's query before its handler runs (a ``before_request``
    hook).

    Raises FieldError, which the error handlers turn into a 400, for a
    parameter the page does not declare or one given twice. Empty values
    pass, since a filter form sends its unset fields empty.
    """
    check_query(
        request.scope.get("query_string", b"").decode("latin-1"),
        query_names(request.route_handler),
        place="page",
        allow_empty=True,
    )
