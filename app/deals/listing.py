"""The deal list: its filters, its orders, and the rows it reads.

The list shows the deals of every pipeline that the viewer may read, one
page at a time. A filter or an order on a field hidden from the viewer is
rejected, because the rows it keeps would reveal the field's values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from app import fields
from app.access.permissions import SYSTEM, Access
from app.access.scopes import redact_rows, scope_sql
from app.boards import BoardFilter, hidden_filter_error
from app.deals.tables import STAGE_KINDS, Deal
from app.errors import FieldError
from app.pagination import (
    DEFAULT_PAGE_SIZE,
    SIZE_PARAM,
    Page,
    PageRequest,
    parse_search,
)
from app.search.matching import contains_any, searchable

# Each order's SQL and the field whose rule hides it (None: no rule does).
SORTS: dict[str, tuple[str, str | None]] = {
    "name": ("lower(d.name)", "name"),
    "amount": ("d.amount", "amount"),
    "close_date": ("d.close_date", "close_date"),
    "updated": ("d.updated_at", None),
}
DESCENDING = "-"
DEFAULT_SORT = "-updated"
# The fields each filter parameter reads, besides the owner and team filters
# that ``BoardFilter`` checks; the search ``q`` reads the name.
FILTER_FIELDS = {
    "q": "name",
    "stage": "stage",
    "status": "stage",
    "close_from": "close_date",
    "close_to": "close_date",
}
# The names error messages give parameters whose own names are not words.
FILTER_LABELS = {"q": "Search"}

ROW_SQL = """
    SELECT d.id, d.name, d.amount, d.close_date, d.updated_at, d.version,
        d.pipeline, pl.name AS pipeline_name, d.stage, s.name AS stage_name,
        s.kind AS stage_kind, d.owner, u.name AS owner_name, d.team,
        tm.name AS team_name, d.account, a.name AS account_name
    FROM deal d
    JOIN stage s ON s.id = d.stage
    JOIN pipeline pl ON pl.id = d.pipeline
    LEFT JOIN app_user u ON u.id = d.owner
    LEFT JOIN team tm ON tm.id = d.team
    LEFT JOIN account a ON a.id = d.account
"""


def search_condition(search: str, args: list[object], access: Access = SYSTEM) -> str:
    """Return the condition that a deal's name contains ``search``.

    A viewer from whom the name is hidden finds no deal by it.
    """
    columns = searchable(access, "deal", Deal, {"name": "d.name"})
    return contains_any(columns, search, args)


def parse_sort(raw: str | None) -> str:
    value = (raw or "").strip() or DEFAULT_SORT
    if value.removeprefix(DESCENDING) not in SORTS:
        choices = ", ".join(SORTS)
        raise FieldError(
            "sort", raw, f"must be one of {choices}, each optionally after -"
        )
    return value


def parse_status(raw: str | None) -> str:
    value = (raw or "").strip()
    if value and value not in STAGE_KINDS:
        raise FieldError("status", raw, f"must be one of {', '.join(STAGE_KINDS)}")
    return value


@dataclass(frozen=True)
class DealListFilter:
    """The deal list's search, filters and order, as its query parameters give them.

    ``board`` contains the owner (``person``) and team filters, which the
    pipeline board takes under the same names. ``status`` is the kind of the
    deal's stage: open, won or lost.
    """

    search: str = ""
    pipeline_id: int | None = None
    stage_id: int | None = None
    board: BoardFilter = field(default_factory=BoardFilter)
    close_from: dt.date | None = None
    close_to: dt.date | None = None
    status: str = ""
    sort: str = DEFAULT_SORT

    @classmethod
    def parse(
        cls,
        search: str,
        pipeline: str | None = None,
        stage: str | None = None,
        person: str | None = None,
        team: str | None = None,
        close_from: str | None = None,
        close_to: str | None = None,
        status: str | None = None,
        sort: str | None = None,
    ) -> DealListFilter:
        """Read the parameters; raise FieldError naming the first invalid one."""
        first = fields.date("close_from", close_from)
        last = fields.date("close_to", close_to)
        if first is not None and last is not None and last < first:
            raise FieldError("close_to", close_to, "is before the close from date")
        return cls(
            search=search,
            pipeline_id=fields.reference("pipeline", pipeline),
            stage_id=fields.reference("stage", stage),
            board=BoardFilter.parse(person, team),
            close_from=first,
            close_to=last,
            status=parse_status(status),
            sort=parse_sort(sort),
        )

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> DealListFilter:
        """Read the filters, but not the order, from query parameters by name.

        Raises FieldError naming the first invalid one.
        """
        return cls.parse(
            parse_search(params.get("q")),
            params.get("pipeline"),
            params.get("stage"),
            params.get("person"),
            params.get("team"),
            params.get("close_from"),
            params.get("close_to"),
            params.get("status"),
        )

    @classmethod
    def from_query(cls, query: str) -> DealListFilter:
        """Read the filters from a query string that ``filter_query`` made."""
        return cls.from_params(dict(parse_qsl(query)))

    def params(self) -> dict[str, str | None]:
        """Return the query parameters of this filter, None for those unset."""
        return {
            "q": self.search or None,
            "pipeline": str(self.pipeline_id) if self.pipeline_id else None,
            "stage": str(self.stage_id) if self.stage_id else None,
            "person": str(self.board.person_id) if self.board.person_id else None,
            "team": str(self.board.team_id) if self.board.team_id else None,
            "close_from": self.close_from.isoformat() if self.close_from else None,
            "close_to": self.close_to.isoformat() if self.close_to else None,
            "status": self.status or None,
            "sort": self.sort if self.sort != DEFAULT_SORT else None,
        }

    def as_details(self) -> dict[str, Any]:
        """Return the filters as the audit log records an export's, leaving out
        unset ones."""
        details = {
            "q": self.search or None,
            "pipeline": self.pipeline_id,
            "stage": self.stage_id,
            "person": self.board.person_id,
            "team": self.board.team_id,
            "close_from": self.close_from.isoformat() if self.close_from else None,
            "close_to": self.close_to.isoformat() if self.close_to else None,
            "status": self.status or None,
        }
        return {name: value for name, value in details.items() if value is not None}

    def filter_query(self) -> str:
        """Return the query string of the filters without the order, "" for none.

        The CSV export (ordered by id) and the list's live socket take it.
        """
        params = {
            name: value
            for name, value in self.params().items()
            if value is not None and name != "sort"
        }
        return urlencode(params)

    def export_query(self) -> str:
        """Return the query string of this filter's CSV export, or "" for none."""
        query = self.filter_query()
        return f"?{query}" if query else ""

    def sort_query(self, column: str, size: int = DEFAULT_PAGE_SIZE) -> str:
        """Return the query string that orders the list by ``column``: ascending,
        or descending when the list is in ascending order by it already.

        It keeps the filters and the page ``size``, and starts at the first page.
        """
        ascending = self.sort_column == column and not self.descending
        params = {
            **self.params(),
            "sort": f"{DESCENDING}{column}" if ascending else column,
        }
        if params["sort"] == DEFAULT_SORT:
            params["sort"] = None
        if size != DEFAULT_PAGE_SIZE:
            params[SIZE_PARAM] = str(size)
        return urlencode({name: value for name, value in params.items() if value})

    @property
    def sort_column(self) -> str:
        return self.sort.removeprefix(DESCENDING)

    @property
    def descending(self) -> bool:
        return self.sort.startswith(DESCENDING)

    @property
    def is_filtered(self) -> bool:
        return any(
            value is not None for name, value in self.params().items() if name != "sort"
        )

    def check_visible(self, access: Access) -> None:
        """Reject a filter or order on a field hidden from ``access``.

        Raises FieldError naming the parameter, as for an invalid value.
        """
        used = {name for name, value in self.params().items() if value is not None}
        for name, field_name in FILTER_FIELDS.items():
            if name in used and not access.can_see("deal", field_name):
                raise hidden_filter_error(
                    name,
                    self.params()[name],
                    "deal",
                    field_name,
                    label=FILTER_LABELS.get(name),
                )
        self.board.check_visible(access, "deal", "owner")
        rule_field = SORTS[self.sort_column][1]
        if rule_field is not None and not access.can_see("deal", rule_field):
            raise FieldError(
                "sort", self.sort, "orders by a field your role cannot see"
            )

    def conditions(self, args: list[object], access: Access = SYSTEM) -> str:
        """Return " AND ..." conditions on the deals ``d`` this filter keeps."""
        parts = []
        if self.search:
            parts.append(search_condition(self.search, args, access))
        if self.pipeline_id is not None:
            args.append(self.pipeline_id)
            parts.append("d.pipeline = {}")
        if self.stage_id is not None:
            args.append(self.stage_id)
            parts.append("d.stage = {}")
        if self.close_from is not None:
            args.append(self.close_from)
            parts.append("d.close_date >= {}")
        if self.close_to is not None:
            args.append(self.close_to)
            parts.append("d.close_date <= {}")
        if self.status:
            args.append(self.status)
            parts.append("d.stage IN (SELECT k.id FROM stage k WHERE k.kind = {})")
        owner_team = self.board.sql("d.owner", "d.team", args)
        return "".join(f" AND {part}" for part in parts) + owner_team

    def order_sql(self) -> str:
        direction = "DESC" if self.descending else "ASC"
        column = SORTS[self.sort_column][0]
        return f"{column} {direction} NULLS LAST, d.id {direction}"


async def list_deals(
    deal_filter: DealListFilter, paging: PageRequest, access: Access = SYSTEM
) -> Page[dict[str, Any]]:
    """List one page of the deals ``access`` may read that pass the filter."""
    args: list[object] = []
    where = "TRUE" + deal_filter.conditions(args, access)
    where += " AND " + scope_sql(access, "deal", "d", args)
    counted = await Deal.raw(f"SELECT count(*) AS n FROM deal d WHERE {where}", *args)
    total = counted[0]["n"]
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)

    args.extend([paging.size, paging.offset])
    rows = await Deal.raw(
        f"{ROW_SQL} WHERE {where} ORDER BY {deal_filter.order_sql()} "
        "LIMIT {} OFFSET {}",
        *args,
    )
    return Page(rows=redact_rows(access, "deal", rows), total=total, paging=paging)


async def get_row(deal_id: int) -> dict[str, Any] | None:
    """Load a deal as the list shows it, whatever the scope, or None."""
    rows = await Deal.raw(f"{ROW_SQL} WHERE d.id = {{}}", deal_id)
    return rows[0] if rows else None


async def stage_choices(pipeline_id: int | None) -> list[dict[str, Any]]:
    """Return the stages the stage filter offers, with their pipeline's name:
    those of ``pipeline_id``, or of every pipeline."""
    args: list[object] = []
    where = "TRUE"
    if pipeline_id is not None:
        args.append(pipeline_id)
        where = "s.pipeline = {}"
    return await Deal.raw(
        "SELECT s.id, s.name, s.pipeline, p.name AS pipeline_name "
        f"FROM stage s JOIN pipeline p ON p.id = s.pipeline WHERE {where} "
        "ORDER BY p.position, p.id, s.position, s.id",
        *args,
    )
