"""Admin pages of workflow rules: list, build, switch, order, dry-run, runs,
delete."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, admin_only
from app.access.service import all_teams
from app.auth.service import CurrentUser
from app.email.templates import template_choices
from app.errors import FieldError, NotFound, VersionMismatch
from app.fields import reference
from app.pagination import PageRequest, reject_unknown_query
from app.web.pages import live_context
from app.web.security import safe_next
from app.workflows import service
from app.workflows.dry_run import dry_run, load_actor, parse_change
from app.workflows.forms import (
    add_row,
    definition_from_form,
    form_values,
    remove_row,
    typed_values,
)
from app.workflows.planning import TimerCounts, get_plan, plan_topic
from app.workflows.records import RECORD_TYPES
from app.workflows.schema import (
    ACTION_FIELDS,
    ACTION_LABELS,
    OPERATOR_LABELS,
    TRIGGER_LABELS,
    RuleDefinition,
    Trigger,
    decode_definition,
)

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
NEW_RULE = RuleDefinition(trigger=Trigger(kind="created"))


def object_type_of(raw: str | None) -> str:
    return service.check_object_type(raw or "ticket")


async def builder_context(
    object_type: str,
    rule: dict[str, Any] | None,
    values: dict[str, Any],
    error: FieldError | None = None,
) -> dict[str, Any]:
    record_type = RECORD_TYPES[object_type]
    return {
        "object_type": object_type,
        "record_type": record_type,
        "object_types": list(RECORD_TYPES.values()),
        "rule": rule,
        "values": values,
        "error": error,
        "triggers": TRIGGER_LABELS,
        "operators": OPERATOR_LABELS,
        "action_kinds": ACTION_LABELS,
        "action_fields": ACTION_FIELDS,
        "teams": await all_teams(),
        "reply_templates": await template_choices(),
        "section": "admin",
    }


class WorkflowController(Controller):
    path = "/admin/workflows"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/", before_request=reject_unknown_query)
    async def rules_page(
        self,
        object_type: FromQuery[str | None] = None,
        page: FromQuery[str | None] = None,
        size: FromQuery[str | None] = None,
        deleted: FromQuery[str | None] = None,
    ) -> Template:
        """List the rules of one object type; ``deleted`` names the rule
        whose deletion led here."""
        kind = object_type_of(object_type)
        deleted_id = reference("deleted", deleted)
        paging = PageRequest.parse(
            page, size, path="/admin/workflows", keep={"object_type": kind}
        )
        return Template(
            "workflows/list.html",
            context={
                "rules": await service.list_rules(kind, paging),
                "object_type": kind,
                "object_types": list(RECORD_TYPES.values()),
                "triggers": TRIGGER_LABELS,
                "deleted": deleted_id,
                "section": "admin",
            },
        )

    @get("/new")
    async def new_rule_page(
        self, object_type: FromQuery[str | None] = None
    ) -> Template:
        kind = object_type_of(object_type)
        values = {"name": "", **form_values(NEW_RULE)}
        # One empty action row, so that a rule can be built without the
        # builder's script, whose "Add action" adds rows in place.
        values["actions"] = [{}]
        return Template(
            "workflows/rule.html", context=await builder_context(kind, None, values)
        )

    @get("/rows/{row:str}")
    async def new_row(
        self,
        row: FromPath[str],
        object_type: FromQuery[str | None] = None,
        index: FromQuery[int] = 0,
        group: FromQuery[int | None] = None,
    ) -> Template:
        """Return an empty condition, group or action row for the builder.

        ``group`` is the number of the condition group a new condition or
        group goes into, None for the top level.
        """
        kind = object_type_of(object_type)
        if row not in ("condition", "group", "action"):
            raise NotFound("row", row)
        context = await builder_context(kind, None, {})
        context["index"] = index
        context["item"] = None
        context["new_parent"] = group
        return Template(f"workflows/_{row}.html", context=context)

    @post("/")
    async def create_rule(self, request: UserRequest) -> Template | Redirect:
        return await submit_rule(request, None)

    @get("/{rule_id:int}")
    async def rule_page(
        self,
        rule_id: FromPath[int],
        page: FromQuery[str | None] = None,
        failures: FromQuery[bool] = False,
    ) -> Template:
        return Template(
            "workflows/rule.html", context=await rule_context(rule_id, page, failures)
        )

    @post("/{rule_id:int}")
    async def edit_rule(
        self, request: UserRequest, rule_id: FromPath[int]
    ) -> Template | Redirect:
        return await submit_rule(request, rule_id)

    @post("/timer-counts")
    async def timer_counts(self, request: UserRequest) -> Template:
        """Return what the rule in the form would set for existing records."""
        form = await request.form()
        object_type = str(form.get("object_type", ""))
        kind = object_type if object_type in RECORD_TYPES else "ticket"
        context: dict[str, Any] = {"record_type": RECORD_TYPES[kind]}
        try:
            data = definition_from_form(form)
            context["counts"] = await service.preview_timers(object_type, data)
            context["timer_rule"] = data["trigger"]["kind"] == "time_after"
        except FieldError as error:
            context["counts_error"] = error.message
            return Template(
                "workflows/_timer_counts.html", context=context, status_code=422
            )
        return Template("workflows/_timer_counts.html", context=context)

    @post("/{rule_id:int}/enabled")
    async def switch_rule(
        self, request: UserRequest, rule_id: FromPath[int]
    ) -> Template | Redirect:
        form = await request.form()
        enabled = form.get("enabled") == "on"
        if enabled and not confirmed(form):
            counts = await service.count_enabling_timers(rule_id)
            if counts.needs_confirmation:
                log_confirmation_needed(rule_id, request.user.id, counts)
                context = await rule_context(rule_id)
                context["confirm_enable"] = counts
                return Template("workflows/rule.html", context=context, status_code=409)
        await service.set_enabled(rule_id, enabled, request.user.id)
        next_page = str(form.get("next") or "")
        return Redirect(safe_next(next_page, f"/admin/workflows/{rule_id}"))

    @post("/{rule_id:int}/move")
    async def move_rule(self, request: UserRequest, rule_id: FromPath[int]) -> Redirect:
        form = await request.form()
        await service.move_rule(
            rule_id, str(form.get("direction", "")), request.user.id
        )
        rule = await service.get_rule(rule_id)
        return Redirect(f"/admin/workflows?object_type={rule['object_type']}")

    @get("/{rule_id:int}/delete")
    async def delete_page(self, rule_id: FromPath[int]) -> Template:
        """Show what deleting the rule removes, with the button that confirms."""
        return await delete_confirmation(rule_id)

    @post("/{rule_id:int}/delete")
    async def delete_rule(
        self, request: UserRequest, rule_id: FromPath[int]
    ) -> Template | Redirect:
        """Delete the rule once the confirmation form is sent.

        The form sends ``confirm=yes`` and the version it showed, so a rule
        saved again meanwhile is shown again (409) rather than deleted.
        """
        form = await request.form()
        confirm = form.get("confirm")
        if confirm != "yes":
            error = FieldError(
                "confirm",
                confirm,
                "must be yes; press Delete rule below to delete the rule",
            )
            return await delete_confirmation(rule_id, error, 422)
        try:
            version = reference("version", form.get("version"))
            deleted = await service.delete_rule(rule_id, request.user.id, version)
        except FieldError as invalid:
            return await delete_confirmation(rule_id, invalid, 422)
        except VersionMismatch as mismatch:
            logger.info(
                "workflow rule delete rejected: stale version rule_id=%s "
                "user_id=%s expected=%s current=%s",
                rule_id,
                request.user.id,
                mismatch.expected,
                mismatch.current,
            )
            stale = FieldError(
                "version",
                mismatch.expected,
                f"is no longer current: the rule was saved, enabled or disabled "
                f"as version {mismatch.current} meanwhile, so check it and "
                "confirm again",
                label="Version",
            )
            return await delete_confirmation(rule_id, stale, 409)
        return Redirect(
            f"/admin/workflows?object_type={deleted['object_type']}&deleted={rule_id}"
        )

    @post("/{rule_id:int}/dry-run")
    async def dry_run_rule(
        self, request: UserRequest, rule_id: FromPath[int]
    ) -> Template:
        form = await request.form()
        rule = await service.load_rule(rule_id)
        try:
            record_id = reference("record_id", form.get("record_id"))
            if record_id is None:
                raise FieldError("record_id", form.get("record_id"), "must be given")
            change = parse_change(
                RECORD_TYPES[rule.object_type],
                form.get("change_field"),
                form.get("change_from"),
                form.get("change_to"),
            )
            actor = await load_actor(form.get("actor_id"))
            result = await dry_run(rule, record_id, change, actor)
        except (FieldError, LookupError) as error:
            message = error.message if isinstance(error, FieldError) else str(error)
            return Template(
                "workflows/_dry_run.html",
                context={"error": message, "result": None},
                status_code=422,
            )
        return Template(
            "workflows/_dry_run.html",
            context={"result": result, "error": None, "operators": OPERATOR_LABELS},
        )


async def rule_context(
    rule_id: int, page: str | None = None, failures: bool = False
) -> dict[str, Any]:
    rule = await service.get_rule(rule_id)
    definition = decode_definition(rule["definition"])
    values = {"name": rule["name"], **form_values(definition)}
    paging = PageRequest.parse(
        page,
        None,
        path=f"/admin/workflows/{rule_id}",
        keep={"failures": "true" if failures else None},
        anchor="runs",
    )
    live = await live_context([plan_topic(rule_id)], presence=False)
    context = await builder_context(rule["object_type"], rule, values)
    context.update(live)
    context["runs"] = await service.list_runs(rule_id, paging, failures)
    context["failures"] = failures
    context["plan"] = await get_plan(rule_id)
    return context


async def delete_confirmation(
    rule_id: int, error: FieldError | None = None, status: int = 200
) -> Template:
    rule = await service.get_rule(rule_id)
    return Template(
        "workflows/delete.html",
        context={
            "rule": rule,
            "record_type": RECORD_TYPES[rule["object_type"]],
            "counts": await service.deletion_counts(rule_id),
            "error": error,
            "section": "admin",
        },
        status_code=status,
    )


def confirmed(form: Any) -> bool:
    """Return whether the admin confirmed the timers due at once."""
    return form.get("confirm_timers") == "on"


def log_confirmation_needed(
    rule_id: int | None, user_id: int, counts: TimerCounts
) -> None:
    logger.info(
        "workflow rule change waits for confirmation rule_id=%s user_id=%s "
        "matching=%d due_now=%d",
        rule_id,
        user_id,
        counts.matching,
        counts.due_now,
    )


async def submit_rule(request: UserRequest, rule_id: int | None) -> Template | Redirect:
    form = await request.form()
    object_type = str(form.get("object_type", ""))
    name = str(form.get("name", ""))
    if form.get("show_fields") or form.get("add_row") or form.get("remove_row"):
        # Without the builder's script, a changed action kind shows its
        # fields, and a row is added or removed, only once the form comes
        # back from here, unsaved.
        return await builder_page(request, rule_id, object_type, name, None)
    try:
        data = definition_from_form(form)
        if rule_id is not None and not confirmed(form):
            counts = await service.count_planned_timers(rule_id, object_type, data)
            if counts.needs_confirmation:
                log_confirmation_needed(rule_id, request.user.id, counts)
                context = await rule_context(rule_id)
                context["values"] = {"name": name, **typed_values(form)}
                context["confirm_save"] = counts
                return Template("workflows/rule.html", context=context, status_code=409)
        saved = await service.save_rule(
            rule_id, object_type, name, data, request.user.id
        )
    except FieldError as error:
        logger.info(
            "workflow rule rejected rule_id=%s user_id=%s field=%s",
            rule_id,
            request.user.id,
            error.field,
        )
        return await builder_page(request, rule_id, object_type, name, error)
    return Redirect(f"/admin/workflows/{saved}")


async def builder_page(
    request: UserRequest,
    rule_id: int | None,
    object_type: str,
    name: str,
    error: FieldError | None,
) -> Template:
    """Show the builder again with what the admin typed, and with the error
    that stopped the save (status 422) if there is one."""
    form = await request.form()
    kind = object_type if object_type in RECORD_TYPES else "ticket"
    rule = await service.get_rule(rule_id) if rule_id is not None else None
    values = {"name": name, **typed_values(form)}
    if form.get("add_row"):
        add_row(values, str(form.get("add_row")))
    if form.get("remove_row"):
        remove_row(values, form, str(form.get("remove_row")))
    context = await builder_context(kind, rule, values, error)
    context["failures"] = False
    if rule_id is not None:
        context["runs"] = await service.list_runs(
            rule_id, PageRequest(path=f"/admin/workflows/{rule_id}")
        )
        context["plan"] = await get_plan(rule_id)
    status = 200 if error is None else 422
    return Template("workflows/rule.html", context=context, status_code=status)
