"""Reply templates: canned replies with placeholders such as {{ contact.name }}.

Templates render in Jinja's sandbox with undefined names as errors, so a
template can read the values offered below and nothing else. Saving a
template renders it once against sample values, so a typo in a
placeholder is reported when it is saved, not when an agent uses it.
"""

from __future__ import annotations

import logging
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from app import fields
from app.email.tables import ReplyTemplate
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.pagination import Page, PageRequest

logger = logging.getLogger(__name__)

MAX_NAME = 120
MAX_TEMPLATE = 10_000
# The values a template may use, with the sample each is checked against.
SAMPLE_CONTEXT: dict[str, dict[str, Any]] = {
    "ticket": {
        "id": 123,
        "tag": "[#T-123]",
        "subject": "Printer on fire",
        "status": "open",
        "priority": "high",
    },
    "contact": {
        "name": "Ada Lovelace",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
    },
    "account": {"name": "Analytical Engines Ltd"},
    "agent": {"name": "Grace Hopper", "email": "grace@example.com"},
}

ENVIRONMENT = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)


def render_template(body: str, context: dict[str, Any]) -> str:
    """Render a template's text; raises FieldError naming ``body`` on any error."""
    try:
        return ENVIRONMENT.from_string(body).render(context)
    except TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f" on line {line}" if line else ""
        raise FieldError(
            "body", body[:40], f"is not a valid template{where}: {error.message}"
        ) from None


def check_template(name_raw: str | None, body_raw: str | None) -> tuple[str, str]:
    name = fields.text("name", name_raw, required=True, max_length=MAX_NAME)
    body = fields.text("body", body_raw, required=True, max_length=MAX_TEMPLATE)
    render_template(body, SAMPLE_CONTEXT)
    return name, body


async def save_template(
    template_id: int | None, name_raw: str | None, body_raw: str | None, actor_id: int
) -> int:
    """Create a template, or change one; raises FieldError for an invalid one."""
    name, body = check_template(name_raw, body_raw)
    taken = await ReplyTemplate.raw(
        "SELECT id FROM reply_template WHERE lower(name) = lower({}) AND id <> {}",
        name,
        template_id or 0,
    )
    if taken:
        raise FieldError("name", name, "is the name of another template")
    async with change_set(actor_id) as changes:
        if template_id is None:
            rows = await ReplyTemplate.raw(
                "INSERT INTO reply_template (name, body, updated_by) "
                "VALUES ({}, {}, {}) RETURNING id",
                name,
                body,
                actor_id,
            )
            kind = "reply_template.created"
            changed: dict[str, Any] = {}
        else:
            # The self-join returns the values from before the update.
            rows = await ReplyTemplate.raw(
                "UPDATE reply_template AS t SET name = {}, body = {}, "
                "updated_by = {}, updated_at = now() FROM reply_template AS old "
                "WHERE t.id = old.id AND t.id = {} "
                "RETURNING t.id, old.name AS old_name, old.body AS old_body",
                name,
                body,
                actor_id,
                template_id,
            )
            kind = "reply_template.updated"
        if not rows:
            raise NotFound("reply template", template_id)
        saved_id = int(rows[0]["id"])
        if template_id is not None:
            changed = {
                field: [rows[0][f"old_{field}"], value]
                for field, value in (("name", name), ("body", body))
                if rows[0][f"old_{field}"] != value
            }
        changes.add(kind, "reply_template", saved_id, ["reply_templates"], changed)
    logger.info("reply template saved template_id=%s user_id=%s", saved_id, actor_id)
    return saved_id


async def delete_template(template_id: int, actor_id: int) -> None:
    async with change_set(actor_id) as changes:
        rows = await ReplyTemplate.raw(
            "DELETE FROM reply_template WHERE id = {} RETURNING name, body",
            template_id,
        )
        if not rows:
            raise NotFound("reply template", template_id)
        changes.add(
            "reply_template.deleted",
            "reply_template",
            template_id,
            ["reply_templates"],
            {"name": rows[0]["name"], "body": rows[0]["body"]},
        )
    logger.info(
        "reply template deleted template_id=%s user_id=%s", template_id, actor_id
    )


async def list_templates(paging: PageRequest) -> Page[dict[str, Any]]:
    rows = await ReplyTemplate.raw(
        "SELECT t.id, t.name, t.body, t.updated_at, u.name AS updated_by_name, "
        "count(*) OVER () AS total FROM reply_template t "
        "LEFT JOIN app_user u ON u.id = t.updated_by "
        "ORDER BY lower(t.name), t.id LIMIT {} OFFSET {}",
        paging.size,
        paging.offset,
    )
    total = int(rows[0]["total"]) if rows else 0
    if not rows and paging.offset:
        count = await ReplyTemplate.raw("SELECT count(*) AS total FROM reply_template")
        total = int(count[0]["total"])
    return Page(rows=rows, total=total, paging=paging)


async def template_choices(limit: int = 200) -> list[dict[str, Any]]:
    """Return the templates an agent picks from on the reply form, by name."""
    return await ReplyTemplate.raw(
        "SELECT id, name FROM reply_template ORDER BY lower(name), id LIMIT {}", limit
    )


async def get_template(template_id: int) -> dict[str, Any]:
    rows = await ReplyTemplate.raw(
        "SELECT id, name, body FROM reply_template WHERE id = {}", template_id
    )
    if not rows:
        raise NotFound("reply template", template_id)
    return rows[0]
