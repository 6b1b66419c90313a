"""Pipeline administration: the deal fields each stage requires."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, admin_only
from app.auth.service import CurrentUser
from app.deals import queries
from app.deals.service import REQUIRABLE, check_requirable, in_requirable_order
from app.deals.tables import Pipeline, Stage
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.fields import reference
from app.pagination import Page, PageRequest, reject_unknown_query
from app.web.forms import RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]

# A checkbox is named ``required.<stage id>`` and has a field name as its
# value. The ``stage`` inputs list the stages the form showed, so a stage
# with every box cleared is saved too.
REQUIRED_PREFIX = "required."


async def list_pipelines_page(paging: PageRequest) -> Page[dict[str, Any]]:
    total = await Pipeline.count()
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    rows = await Pipeline.raw(
        "SELECT p.id, p.name, (SELECT count(*) FROM stage s WHERE s.pipeline = p.id)"
        " AS stage_count, (SELECT count(*) FROM stage s WHERE s.pipeline = p.id"
        " AND cardinality(s.required_fields) > 0) AS ruled_count "
        "FROM pipeline p ORDER BY p.position, p.id LIMIT {} OFFSET {}",
        paging.size,
        paging.offset,
    )
    return Page(rows=rows, total=total, paging=paging)


async def pipeline_stages(pipeline_id: int) -> list[dict[str, Any]]:
    return (
        await Stage.select(
            Stage.id, Stage.name, Stage.kind, Stage.position, Stage.required_fields
        )
        .where(Stage.pipeline == pipeline_id)
        .order_by(Stage.position, Stage.id)
    )


def rules_from_form(form: FormMultiDict) -> dict[int, list[str]]:
    """Read the required fields of each stage the form showed.

    Fields come back in ``REQUIRABLE``'s order, whatever order the boxes
    were sent in. Raises FieldError naming an unknown field or stage id.
    """
    chosen: dict[int, set[str]] = {}
    for raw in form.getall("stage", []):
        stage_id = reference("stage", raw)
        if stage_id is None:
            raise FieldError("stage", raw, "is not a valid id")
        chosen.setdefault(stage_id, set())
    for key, value in form.multi_items():
        if not key.startswith(REQUIRED_PREFIX):
            continue
        stage_id = reference("stage", key.removeprefix(REQUIRED_PREFIX))
        if stage_id is None or stage_id not in chosen:
            raise FieldError(
                "stage", key.removeprefix(REQUIRED_PREFIX), "was not in the form"
            )
        chosen[stage_id].add(check_requirable("required field", value))
    return {stage_id: in_requirable_order(names) for stage_id, names in chosen.items()}


async def save_stage_rules(
    pipeline_id: int, rules: dict[int, list[str]], actor_id: int | None
) -> list[int]:
    """Set the required fields of the given stages of a pipeline.

    Each stage whose fields change gets a ``stage.updated`` event, and so an
    audit row with the fields before and after. Returns the changed stage ids.
    Raises NotFound for an unknown pipeline and FieldError for a stage of
    another pipeline; then nothing is written.
    """
    changed: list[int] = []
    async with change_set(actor_id) as changes:
        if not await Pipeline.exists().where(Pipeline.id == pipeline_id):
            raise NotFound("pipeline", pipeline_id)
        rows = await Stage.raw(
            "SELECT id, required_fields, version FROM stage WHERE pipeline = {} "
            "ORDER BY id FOR NO KEY UPDATE",
            pipeline_id,
        )
        stored = {row["id"]: row for row in rows}
        for stage_id in sorted(rules):
            if stage_id not in stored:
                raise FieldError("stage", stage_id, "is not a stage of this pipeline")
        for stage_id in sorted(rules):
            before = list(stored[stage_id]["required_fields"] or [])
            after = rules[stage_id]
            if before == after:
                continue
            await Stage.update(
                {
                    Stage.required_fields: after,
                    Stage.version: stored[stage_id]["version"] + 1,
                    Stage.updated_at: dt.datetime.now(dt.UTC),
                }
            ).where(Stage.id == stage_id)
            changes.add(
                "stage.updated",
                "stage",
                stage_id,
                [],
                {"required_fields": [before, after]},
            )
            changed.append(stage_id)
    logger.info(
        "stage rules saved pipeline_id=%s user_id=%s stage_ids=%s",
        pipeline_id,
        actor_id,
        changed,
    )
    return changed


class PipelineAdminController(Controller):
    path = "/admin/pipelines"
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/", before_request=reject_unknown_query)
    async def pipelines_page(self, page: FromQuery[str | None] = None) -> Template:
        paging = PageRequest.parse(page, path="/admin/pipelines")
        return Template(
            "deals/admin_pipelines.html",
            context={
                "pipelines": await list_pipelines_page(paging),
                "section": "admin",
            },
        )

    @get("/{pipeline_id:int}")
    async def pipeline_page(self, pipeline_id: RecordId) -> Template:
        return await pipeline_form(pipeline_id, None, None)

    @post("/{pipeline_id:int}")
    async def save_pipeline(
        self, request: UserRequest, pipeline_id: RecordId
    ) -> Template | Redirect:
        form = await request.form()
        try:
            rules = rules_from_form(form)
            await save_stage_rules(pipeline_id, rules, request.user.id)
        except FieldError as error:
            logger.info(
                "stage rules rejected pipeline_id=%s user_id=%s field=%s value=%r",
                pipeline_id,
                request.user.id,
                error.field,
                error.value,
            )
            return await pipeline_form(pipeline_id, error, form)
        return Redirect(f"/admin/pipelines/{pipeline_id}?saved=1")


async def pipeline_form(
    pipeline_id: int, error: FieldError | None, form: FormMultiDict | None
) -> Template:
    pipeline = await queries.get_pipeline(pipeline_id)
    stages = await pipeline_stages(pipeline_id)
    if form is not None:
        # Show the boxes as they were sent, so the error can be fixed in place.
        for stage in stages:
            stage["required_fields"] = [
                str(value)
                for value in form.getall(f"{REQUIRED_PREFIX}{stage['id']}", [])
            ]
    return Template(
        "deals/admin_pipeline.html",
        context={
            "pipeline": pipeline,
            "stages": stages,
            "fields": REQUIRABLE,
            "error": error,
            "section": "admin",
        },
        status_code=422 if error else 200,
    )
