"""The deal list page: every pipeline's deals as a table, filtered and sorted.

``DealController`` in ``app.deals.routes`` serves it at ``GET /deals``: a
second controller at that path would add a second OPTIONS handler, which
Litestar rejects.
"""

from __future__ import annotations

from typing import Any

from litestar.response import Template

from app.access.permissions import Access
from app.deals.list_live import DEAL_LIST
from app.deals.listing import SORTS, DealListFilter, list_deals, stage_choices
from app.deals.queries import list_pipelines
from app.pagination import PageRequest
from app.people import people_choices
from app.web.pages import live_context


async def deal_list_page(
    access: Access, deal_filter: DealListFilter, page: str | None, size: str | None
) -> Template:
    """Render one page of the deal list; changed rows update live.

    Raises FieldError for an invalid page or size, and for a filter or an
    order on a field hidden from ``access``.
    """
    deal_filter.check_visible(access)
    paging = PageRequest.parse(page, size, path="/deals", keep=deal_filter.params())
    pipelines = await list_pipelines()
    followed = [
        row["id"] for row in pipelines if deal_filter.pipeline_id in (None, row["id"])
    ]
    live = await live_context(
        [f"pipeline:{pipeline_id}" for pipeline_id in followed],
        DEAL_LIST.socket_key(deal_filter.filter_query()),
        presence=False,
    )
    deals = await list_deals(deal_filter, paging, access)
    return Template(
        "deals/list.html",
        context={
            "deals": deals,
            "filter": deal_filter,
            "pipelines": pipelines,
            "stages": await stage_choices(deal_filter.pipeline_id),
            "sorts": [
                name
                for name, (_, rule_field) in SORTS.items()
                if rule_field is None or access.can_see("deal", rule_field)
            ],
            "board_url": board_url(deal_filter, pipelines),
            "access": access,
            "section": "pipeline",
            **await people_choices(),
            **live,
        },
    )


def board_url(deal_filter: DealListFilter, pipelines: list[dict[str, Any]]) -> str:
    """Link to the board of the list's pipeline, or the first, with its filter."""
    pipeline_id = deal_filter.pipeline_id
    if pipeline_id is None and pipelines:
        pipeline_id = pipelines[0]["id"]
    if pipeline_id is None:
        return "/pipelines"
    query = deal_filter.board.key
    return f"/pipelines/{pipeline_id}" + (f"?{query}" if query else "")
