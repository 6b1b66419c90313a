"""Live rows of the deal list, which follows the pipeline streams.

The list subscribes to the stream of each pipeline it shows with
``view=deal-list`` and its filters on its socket (``DEAL_LIST``, see
``app.web.stream_views``), so each variant carries the page's filters and
its viewers' access. A changed deal that the viewers may read and that
still passes the filters gets a row fragment, which replaces the row of the
same id where a page shows it, drawn without the fields hidden from them.
A deal that no longer passes them gets a fragment that makes a page
showing its row fetch its rows again, so that the count and the pages
follow. So does a deal that the viewers could read before the change but
not after it, and a deleted one. A new deal's place depends on each page's order, so a
page shows it on its next load, as it does a deal that comes to pass its
filters. A reload of the pipeline (an import, a stage change) and a fresh
render make the page fetch its rows again with its own parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from app.access.permissions import Access
from app.access.scopes import permits_record, redact
from app.access.views import split_variant, view_key
from app.deals.listing import DealListFilter, get_row
from app.deals.live import before_change
from app.deals.tables import Deal
from app.web.stream_views import StreamView
from app.web.templating import render
from realtime.messages import Event

# Filters checked against a changed deal in one query, each as a column,
# because PostgreSQL rejects a select list of more than 1,664 columns.
FILTERS_PER_QUERY = 200


def refresh_fragment() -> str:
    return render("deals/_list_refresh.html")


def read_socket_filter(params: Mapping[str, str], access: Access) -> str:
    """Read a deal list's filters from its socket's query, for ``access``.

    Raises FieldError for an invalid filter and for one on a field hidden
    from ``access``, whose matches would reveal the field's values.
    """
    deal_filter = DealListFilter.from_params(params)
    deal_filter.check_visible(access)
    return deal_filter.filter_query()


@functools.lru_cache(maxsize=1024)
def cached_filter(query: str) -> DealListFilter:
    return DealListFilter.from_query(query)


async def load_row(event: Event, cache: dict[str, Any]) -> dict[str, Any] | None:
    """Load the changed deal as the list shows it, once per event."""
    key = f"deal-list-row:{event.record_id}"
    if key not in cache:
        cache[key] = await get_row(event.record_id)
    row: dict[str, Any] | None = cache[key]
    return row


async def passing_filters(
    deal_id: int, checks: Mapping[tuple[str, str], tuple[DealListFilter, Access]]
) -> set[tuple[str, str]]:
    """Return the keys of ``checks`` whose filter the deal passes for the
    access beside it, checking up to FILTERS_PER_QUERY filters in each query."""
    passed: set[tuple[str, str]] = set()
    keys = list(checks)
    for start in range(0, len(keys), FILTERS_PER_QUERY):
        batch = keys[start : start + FILTERS_PER_QUERY]
        args: list[object] = []
        columns = []
        for index, key in enumerate(batch):
            deal_filter, access = checks[key]
            conditions = deal_filter.conditions(args, access)
            columns.append(f"(TRUE{conditions}) AS passes_{index}")
        args.append(deal_id)
        rows = await Deal.raw(
            f"SELECT {', '.join(columns)} FROM deal d WHERE d.id = {{}}", *args
        )
        if rows:
            passed.update(
                key for index, key in enumerate(batch) if rows[0][f"passes_{index}"]
            )
    return passed


async def render_deal_rows(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind == "board.reload":
        return dict.fromkeys(variants, refresh_fragment())
    if event.record_type != "deal" or event.kind == "deal.created":
        return dict.fromkeys(variants, "")

    row = await load_row(event, cache)
    before = before_change(event, row)
    # Each variant whose viewers may read the deal now, with its page's
    # filters as a query string ("" for none) and its viewers' access key.
    readers: dict[str, tuple[str, str]] = {}
    checks = {}
    for variant in variants:
        _, access = split_variant(variant)
        if row is not None and permits_record(access, "deal", "read", row):
            query = DEAL_LIST.filter_query(variant)
            readers[variant] = (query, view_key(variant))
            if query:
                checks[readers[variant]] = (cached_filter(query), access)
    passed = await passing_filters(event.record_id, checks) if checks else set()
    passing_variants = {
        variant
        for variant, (query, view) in readers.items()
        if not query or (query, view) in passed
    }

    removed = render("deals/_list_row_removed.html", deal_id=event.record_id)
    rendered: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if row is not None and variant in passing_variants:
            view = view_key(variant)
            if view not in rendered:
                rendered[view] = render(
                    "deals/_list_row.html",
                    deal=redact(access, "deal", row),
                    access=access,
                    oob=True,
                )
            fragments[variant] = rendered[view]
        elif variant in readers or permits_record(access, "deal", "read", before):
            fragments[variant] = removed
        else:
            fragments[variant] = ""
    return fragments


async def snapshot_deal_rows(topic: str, variant: str) -> str:
    return refresh_fragment()


DEAL_LIST = StreamView(
    "deal-list", render_deal_rows, snapshot_deal_rows, read_socket_filter
)
