"""SLA pages: calendars and policies for administrators, and the SLA report."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, admin_only, permission
from app.access.service import all_teams
from app.accounts.service import TIERS
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.fields import reference
from app.pagination import PageRequest, reject_unknown_query
from app.sla.calendars import (
    WEEKDAYS,
    format_hours_text,
    parse_holidays_text,
    parse_hours_text,
)
from app.sla.policies import (
    CalendarInput,
    PolicyInput,
    all_calendars,
    get_calendar,
    get_policy,
    list_calendars,
    list_policies,
    parse_target,
    save_calendar,
    save_policy,
)
from app.sla.queries import sla_report
from app.sla.tracking import METRICS
from app.tickets.tables import PRIORITIES
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
DEFAULT_HOURS = "\n".join(f"{day} 09:00-17:00" for day in WEEKDAYS[:5])
REPORT_DAYS = 30


def calendar_from_form(form: FormMultiDict) -> CalendarInput:
    return CalendarInput(
        name=str(form.get("name", "")),
        time_zone=str(form.get("time_zone", "")),
        hours=parse_hours_text(str(form.get("hours", ""))),
        holidays=parse_holidays_text(str(form.get("holidays", ""))),
    )


def policy_from_form(form: FormMultiDict) -> PolicyInput:
    """Read the policy form; targets are ``target.<priority>.<metric>`` minutes."""
    targets: dict[str, dict[str, int]] = {}
    for priority in PRIORITIES:
        for metric in METRICS:
            raw = form.get(f"target.{priority}.{metric}")
            minutes = parse_target(priority, metric, str(raw) if raw else None)
            if minutes is not None:
                targets.setdefault(priority, {})[metric] = minutes
    position_text = str(form.get("position", "0")).strip() or "0"
    try:
        position = int(position_text)
    except ValueError:
        raise FieldError("position", position_text, "is not a whole number") from None
    return PolicyInput(
        name=str(form.get("name", "")),
        calendar_id=reference("calendar", form.get("calendar")),
        team_id=reference("team", form.get("team")),
        account_tier=str(form.get("account_tier", "")),
        position=position,
        active=form.get("active") == "on",
        targets=targets,
    )


def parse_day(name: str, raw: str | None, default: dt.date) -> dt.date:
    text = (raw or "").strip()
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise FieldError(name, text, "is not a date YYYY-MM-DD") from None


class SlaAdminController(Controller):
    path = "/admin/sla"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/")
    async def sla_home(self) -> Redirect:
        return Redirect("/admin/sla/calendars")

    @get("/calendars", before_request=reject_unknown_query)
    async def calendars_page(self, page: FromQuery[str | None] = None) -> Template:
        paging = PageRequest.parse(page, path="/admin/sla/calendars")
        return Template(
            "sla/calendars.html",
            context={"calendars": await list_calendars(paging), "section": "admin"},
        )

    @get("/calendars/new")
    async def new_calendar_page(self) -> Template:
        typed = {"name": "", "time_zone": "UTC", "hours": DEFAULT_HOURS, "holidays": ""}
        return calendar_form(None, typed, None)

    @post("/calendars")
    async def create_calendar(self, request: UserRequest) -> Template | Redirect:
        return await submit_calendar(request, None)

    @get("/calendars/{calendar_id:int}")
    async def calendar_page(self, calendar_id: RecordId) -> Template:
        calendar = await get_calendar(calendar_id)
        typed = {
            "name": calendar["name"],
            "time_zone": calendar["time_zone"],
            "hours": format_hours_text(calendar["hours"]),
            "holidays": "\n".join(day.isoformat() for day in calendar["holidays"]),
        }
        return calendar_form(calendar_id, typed, None)

    @post("/calendars/{calendar_id:int}")
    async def edit_calendar(
        self, request: UserRequest, calendar_id: RecordId
    ) -> Template | Redirect:
        return await submit_calendar(request, calendar_id)

    @get("/policies", before_request=reject_unknown_query)
    async def policies_page(self, page: FromQuery[str | None] = None) -> Template:
        paging = PageRequest.parse(page, path="/admin/sla/policies")
        return Template(
            "sla/policies.html",
            context={"policies": await list_policies(paging), "section": "admin"},
        )

    @get("/policies/new")
    async def new_policy_page(self) -> Template:
        typed = {
            "name": "",
            "calendar": "",
            "team": "",
            "account_tier": "",
            "position": 0,
            "active": True,
            "targets": {},
        }
        return await policy_form(None, typed, None)

    @post("/policies")
    async def create_policy(self, request: UserRequest) -> Template | Redirect:
        return await submit_policy(request, None)

    @get("/policies/{policy_id:int}")
    async def policy_page(self, policy_id: RecordId) -> Template:
        return await policy_form(policy_id, await get_policy(policy_id), None)

    @post("/policies/{policy_id:int}")
    async def edit_policy(
        self, request: UserRequest, policy_id: RecordId
    ) -> Template | Redirect:
        return await submit_policy(request, policy_id)


def calendar_form(
    calendar_id: int | None,
    typed: dict[str, Any],
    error: FieldError | None,
) -> Template:
    return Template(
        "sla/calendar.html",
        context={
            "calendar_id": calendar_id,
            "typed": typed,
            "error": error,
            "section": "admin",
        },
        status_code=422 if error else 200,
    )


async def submit_calendar(
    request: UserRequest, calendar_id: int | None
) -> Template | Redirect:
    form = await request.form()
    try:
        saved = await save_calendar(
            calendar_id, calendar_from_form(form), request.user.id
        )
    except FieldError as error:
        logger.info(
            "calendar rejected calendar_id=%s user_id=%s field=%s",
            calendar_id,
            request.user.id,
            error.field,
        )
        typed = {key: form.get(key, "") for key in ("name", "time_zone", "hours")}
        typed["holidays"] = form.get("holidays", "")
        return calendar_form(calendar_id, typed, error)
    return Redirect(f"/admin/sla/calendars/{saved}?saved=1")


async def policy_form(
    policy_id: int | None, typed: dict[str, Any], error: FieldError | None
) -> Template:
    return Template(
        "sla/policy.html",
        context={
            "policy_id": policy_id,
            "typed": typed,
            "error": error,
            "calendars": await all_calendars(),
            "teams": await all_teams(),
            "priorities": PRIORITIES,
            "metrics": METRICS,
            "tiers": TIERS,
            "section": "admin",
        },
        status_code=422 if error else 200,
    )


async def submit_policy(
    request: UserRequest, policy_id: int | None
) -> Template | Redirect:
    form = await request.form()
    try:
        saved = await save_policy(policy_id, policy_from_form(form), request.user.id)
    except FieldError as error:
        logger.info(
            "policy rejected policy_id=%s user_id=%s field=%s",
            policy_id,
            request.user.id,
            error.field,
        )
        typed: dict[str, Any] = {
            key: form.get(key, "")
            for key in ("name", "calendar", "team", "account_tier", "position")
        }
        typed["active"] = form.get("active") == "on"
        typed["targets"] = {
            priority: {
                metric: form.get(f"target.{priority}.{metric}", "")
                for metric in METRICS
            }
            for priority in PRIORITIES
        }
        return await policy_form(policy_id, typed, error)
    return Redirect(f"/admin/sla/policies/{saved}?saved=1")


class SlaReportController(Controller):
    path = "/sla"

    @get(
        "/report", opt=permission("ticket", "read"), before_request=reject_unknown_query
    )
    async def report_page(
        self,
        request: UserRequest,
        start: FromQuery[str | None] = None,
        end: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
    ) -> Template:
        """Show targets met and breached per team and priority, from ``start``
        up to and including ``end`` (UTC dates; the last 30 days by default)."""
        today = dt.datetime.now(dt.UTC).date()
        error = None
        try:
            last = parse_day("end", end, today)
            first = parse_day("start", start, last - dt.timedelta(days=REPORT_DAYS - 1))
            if first > last:
                raise FieldError("start", first.isoformat(), "is after the end date")
        except FieldError as caught:
            logger.info("sla report dates rejected field=%s", caught.field)
            error = caught
            last = today
            first = today - dt.timedelta(days=REPORT_DAYS - 1)
        keep = {"start": first.isoformat(), "end": last.isoformat()}
        paging = PageRequest.parse(page, path="/sla/report", keep=keep)
        report = await sla_report(
            dt.datetime.combine(first, dt.time(0), tzinfo=dt.UTC),
            dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC),
            paging,
            request.user.access,
        )
        return Template(
            "sla/report.html",
            context={
                "report": report,
                "start": first,
                "end": last,
                "error": error,
                "section": "tickets",
            },
            # The dates are in the URL, so a bad one makes a bad request.
            status_code=400 if error else 200,
        )
