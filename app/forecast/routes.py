"""The forecast page, its live totals fragment and the quota admin page."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, FORECAST, admin_only
from app.access.permissions import Access
from app.auth.service import CurrentUser
from app.deals.queries import list_pipelines
from app.errors import FieldError
from app.fields import reference
from app.forecast import service
from app.forecast.chart import build_chart
from app.forecast.figures import Period
from app.forecast.live import FORECAST_KEY
from app.pagination import Page, PageRequest, reject_unknown_query
from app.people import people_choices
from app.web.forms import FormData
from app.web.pages import live_context

UserRequest = Request[CurrentUser, Any, Any]


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def parse_group(raw: str | None) -> str:
    group = raw or "owner"
    if group not in service.GROUP_KINDS:
        raise FieldError(
            "group", raw, f"must be one of {', '.join(service.GROUP_KINDS)}"
        )
    return group


def history_group(
    access: Access, group: str, pipeline_id: int | None
) -> tuple[str, int]:
    """Return the snapshot group whose history this viewer's chart shows.

    Viewers who read every deal see the total, or the chosen pipeline's.
    Others see their first team's history when they read their teams' deals,
    and their own otherwise, since the total would count deals they may
    not read.
    """
    scope = access.scope("deal", "read")
    if scope == "all":
        return ("pipeline", pipeline_id) if pipeline_id else ("total", 0)
    if scope == "team" and access.team_ids:
        return "team", sorted(access.team_ids)[0]
    return "owner", access.user_id


async def totals_context(
    request: UserRequest,
    period: str | None,
    group: str | None,
    pipeline: str | None,
    page: str | None,
) -> dict[str, Any]:
    access = request.user.access
    day = today()
    chosen = Period.parse(period, day)
    group_kind = parse_group(group)
    pipeline_id = reference("pipeline", pipeline)
    view = await service.forecast_view(access, chosen, group_kind, day, pipeline_id)
    paging = PageRequest.parse(
        page,
        path="/forecast",
        keep={"period": chosen.key, "group": group_kind, "pipeline": pipeline},
    )
    names = await group_names(group_kind)
    ordered = sorted(
        view.groups.items(),
        key=lambda item: (item[0] is None, names.get(item[0], "")),
    )
    rows = ordered[paging.offset : paging.offset + paging.size]
    quotas = await service.quotas_for(chosen)
    # The total's quota is the sum of the shown kind's quotas, when any is set.
    group_quotas = [
        amount for (kind, _), amount in quotas.items() if kind == group_kind
    ]
    total_quota = sum(group_quotas, Decimal(0)) if group_quotas else None
    return {
        "period": chosen,
        "group_kind": group_kind,
        "pipeline_id": pipeline_id,
        "view": view,
        "rows": Page(rows=rows, total=len(ordered), paging=paging),
        "names": names,
        "quotas": quotas,
        "total_quota": total_quota,
    }


async def group_names(group_kind: str) -> dict[int | None, str]:
    if group_kind == "pipeline":
        return {row["id"]: row["name"] for row in await list_pipelines()}
    people = await people_choices()
    key = "users" if group_kind == "owner" else "teams"
    return {row["id"]: row["name"] for row in people[key]}


class ForecastController(Controller):
    path = "/forecast"
    opt = {"permission": FORECAST}

    @get("/", before_request=reject_unknown_query)
    async def forecast_page(
        self,
        request: UserRequest,
        period: FromQuery[str | None] = None,
        group: FromQuery[str | None] = None,
        pipeline: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
    ) -> Template:
        pipelines = await list_pipelines()
        pipeline_id = reference("pipeline", pipeline)
        followed = [p["id"] for p in pipelines if pipeline_id in (None, p["id"])]
        # Forecast readers are not on the boards, so they take no part in
        # the boards' presence.
        live = await live_context(
            [f"pipeline:{pipeline_id}" for pipeline_id in followed],
            FORECAST_KEY,
            presence=False,
        )
        context = await totals_context(request, period, group, pipeline, page)
        chosen: Period = context["period"]
        kind, group_id = history_group(
            request.user.access, context["group_kind"], pipeline_id
        )
        history = await service.snapshot_history(chosen, kind, group_id)
        return Template(
            "forecast/page.html",
            context={
                **context,
                **live,
                "pipelines": pipelines,
                "periods": nearby_periods(chosen),
                "chart": build_chart(history),
                "history_kind": kind,
                "section": "forecast",
            },
        )

    @get("/totals", before_request=reject_unknown_query)
    async def totals_fragment(
        self,
        request: UserRequest,
        period: FromQuery[str | None] = None,
        group: FromQuery[str | None] = None,
        pipeline: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
    ) -> Template:
        return Template(
            "forecast/_totals.html",
            context=await totals_context(request, period, group, pipeline, page),
        )


def nearby_periods(chosen: Period) -> list[Period]:
    """Return the periods offered in the period menu around ``chosen`` and today."""
    day = today()
    periods: set[Period] = set()
    for kind in ("month", "quarter"):
        current = Period.containing(day, kind)  # type: ignore[arg-type]
        periods.update(current.shifted(step) for step in range(-4, 3))
    periods.add(chosen)
    return sorted(periods, key=lambda p: (p.kind, p.start))


class QuotaAdminController(Controller):
    path = "/admin/quotas"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/", before_request=reject_unknown_query)
    async def quotas_page(
        self, period: FromQuery[str | None] = None, page: FromQuery[str | None] = None
    ) -> Template:
        context = await quota_context(period, page, None, {})
        # The period is in the URL, so an invalid one makes a bad request.
        status = 400 if context["error"] else 200
        return Template("forecast/quotas.html", context=context, status_code=status)

    @post("/")
    async def save_quota(
        self, request: UserRequest, data: FormData
    ) -> Template | Redirect:
        try:
            chosen = Period.parse(data.get("period") or "", today())
            owner_id = reference("owner", data.get("owner"))
            team_id = reference("team", data.get("team"))
            amount = service.parse_amount(data.get("amount"))
            await service.set_quota(chosen, owner_id, team_id, amount, request.user.id)
        except FieldError as error:
            return Template(
                "forecast/quotas.html",
                context=await quota_context(data.get("period"), None, error, data),
                status_code=422,
            )
        return Redirect(f"/admin/quotas?period={chosen.key}")


async def quota_context(
    period: str | None,
    page: str | None,
    error: FieldError | None,
    values: dict[str, Any],
) -> dict[str, Any]:
    try:
        chosen = Period.parse(period, today())
    except FieldError as period_error:
        error = error or period_error
        chosen = Period.parse(None, today())
    paging = PageRequest.parse(page, path="/admin/quotas", keep={"period": chosen.key})
    rows = await service.list_quotas(chosen, paging.size, paging.offset)
    total = await service.count_quotas(chosen)
    return {
        "period": chosen,
        "quotas": Page(rows=rows, total=total, paging=paging),
        "error": error,
        "values": values,
        "section": "admin",
        **await people_choices(),
    }
