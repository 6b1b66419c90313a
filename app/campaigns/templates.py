"""Campaign subjects and bodies: Jinja templates rendered in the sandbox.

Undefined names are errors, so a template reads only the values below.
Saving renders the subject and the body once against sample values, so a
misspelt placeholder is reported with its field when the campaign is saved.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from app.errors import FieldError

SAMPLE_CONTEXT: dict[str, Any] = {
    "recipient": {
        "name": "Ada Lovelace",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "title": "Engineer",
        "company": "Analytical Engines Ltd",
    },
    "campaign": {"name": "Spring update"},
    "unsubscribe_url": "https://crm.example.com/unsubscribe/sample",
}

ENVIRONMENT = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)


def render_text(field: str, source: str, context: dict[str, Any]) -> str:
    """Render ``source``; raises FieldError naming ``field`` on any template error."""
    try:
        return ENVIRONMENT.from_string(source).render(context)
    except TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f" on line {line}" if line else ""
        raise FieldError(
            field, source[:40], f"is not a valid template{where}: {error.message}"
        ) from None


def check_templates(subject: str, body: str) -> None:
    rendered = render_text("subject", subject, SAMPLE_CONTEXT)
    if "\n" in rendered.strip() or "\r" in rendered:
        raise FieldError("subject", subject[:40], "must render to a single line")
    render_text("body", body, SAMPLE_CONTEXT)


def recipient_fields(audience: str, member: dict[str, Any]) -> dict[str, str]:
    """Return the values a template reads as ``recipient`` for one segment member."""
    if audience == "contact":
        first = member.get("first_name") or ""
        last = member.get("last_name") or ""
        return {
            "name": f"{first} {last}".strip(),
            "first_name": first,
            "last_name": last,
            "email": member["email"].strip(),
            "title": member.get("title") or "",
            "company": member.get("account.name") or "",
        }
    name = (member.get("name") or "").strip()
    first, _, last = name.partition(" ")
    return {
        "name": name,
        "first_name": first,
        "last_name": last,
        "email": member["email"].strip(),
        "title": "",
        "company": member.get("company") or "",
    }
