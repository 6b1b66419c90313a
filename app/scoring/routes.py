"""The scoring admin page: rules, trained models, and training on demand."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from app.access.guards import ADMIN, admin_only
from app.auth.service import CurrentUser
from app.errors import FieldError
from app.fields import choice
from app.pagination import PageRequest, reject_unknown_query
from app.scoring.admin import add_rule, delete_rule, list_models, list_rules
from app.scoring.rules import LEAD_FIELDS
from app.scoring.service import MODEL_WEIGHT
from app.scoring.tables import RULE_KINDS
from app.scoring.training import MIN_OUTCOMES, RETRAIN_AFTER
from app.web.forms import FormData, RecordId

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
PATH = "/admin/scoring"


class ScoringAdminController(Controller):
    path = PATH
    guards = [admin_only]
    opt = {"permission": ADMIN}

    @get("/", before_request=reject_unknown_query)
    async def scoring_page(
        self,
        rules_page: FromQuery[str | None] = None,
        models_page: FromQuery[str | None] = None,
        queued: FromQuery[str | None] = None,
    ) -> Template:
        if queued:
            choice("queued", queued, ("training",))
        return Template(
            "scoring/admin.html",
            context=await page_context(rules_page, models_page, {}, None, queued),
        )

    @post("/rules")
    async def create_rule(
        self, request: UserRequest, data: FormData
    ) -> Template | Redirect:
        try:
            await add_rule(data, request.user.id)
        except FieldError as error:
            return Template(
                "scoring/admin.html",
                context=await page_context(None, None, data, error, None),
                status_code=422,
            )
        await queue_job(request, "rescore_open_leads")
        return Redirect(PATH)

    @post("/rules/{rule_id:int}/delete")
    async def remove_rule(self, request: UserRequest, rule_id: RecordId) -> Redirect:
        await delete_rule(rule_id, request.user.id)
        await queue_job(request, "rescore_open_leads")
        return Redirect(PATH)

    @post("/train")
    async def train_now(self, request: UserRequest) -> Redirect:
        await queue_job(request, "train_scoring_model")
        return Redirect(f"{PATH}?queued=training")


async def queue_job(request: UserRequest, function: str) -> None:
    """Queue a scoring job with one fixed id, so repeated clicks share it."""
    job = await request.app.state.arq.enqueue_job(
        function, _job_id=f"scoring:{function}"
    )
    logger.info(
        "scoring job queued function=%s queued=%s user_id=%s",
        function,
        job is not None,
        request.user.id,
    )


async def page_context(
    rules_page: str | None,
    models_page: str | None,
    typed: dict[str, Any],
    error: FieldError | None,
    queued: str | None,
) -> dict[str, Any]:
    rules = PageRequest.parse(
        rules_page,
        path=PATH,
        keep={"models_page": models_page},
        param="rules_page",
        anchor="rules",
    )
    models = PageRequest.parse(
        models_page,
        path=PATH,
        keep={"rules_page": rules_page},
        param="models_page",
        anchor="models",
    )
    return {
        "rules": await list_rules(rules),
        "models": await list_models(models),
        "kinds": RULE_KINDS,
        "lead_fields": LEAD_FIELDS,
        "values": typed,
        "error": error,
        "queued": queued == "training",
        "model_weight": MODEL_WEIGHT,
        "min_outcomes": MIN_OUTCOMES,
        "retrain_after": RETRAIN_AFTER,
    }
