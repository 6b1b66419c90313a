"""Campaign subjects and bodies: Jinja templates rendered in the sandbox.

Saving checks each text in four steps, so a text that was saved renders
for every recipient:

1. The text must parse as a Jinja template.
2. Literal text may contain no brace. A brace there is sent as typed, so
   ``{first_name}`` is a placeholder written in the wrong syntax. A literal
   brace is written ``{{ '{' }}`` or ``{{ '}' }}``, or inside a
   ``{% raw %}`` block.
3. Every name the template reads must be one of ``PLACEHOLDERS``, also in a
   branch that the sample values below would not take.
4. The text is rendered once against ``SAMPLE_CONTEXT``. Undefined names
   are errors there too, and the subject must render to one line.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
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
# Every name a template may read, such as ``recipient.first_name``.
PLACEHOLDERS: tuple[str, ...] = tuple(
    f"{name}.{key}" if isinstance(value, dict) else name
    for name, value in SAMPLE_CONTEXT.items()
    for key in (value if isinstance(value, dict) else (None,))
)
LITERAL_BRACE = "Write {{ '{' }} or {{ '}' }} to send a brace itself"
# A brace pair with no brace inside, or a brace left without its partner.
STRAY_BRACE = re.compile(r"\{(?P<inner>[^{}\n]*)\}|[{}]")
FOOTER = "\n\n--\nTo stop receiving these emails: {link}\n"

ENVIRONMENT = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)


def placeholder_list() -> str:
    return ", ".join(f"{{{{ {name} }}}}" for name in PLACEHOLDERS)


def template_error(field: str, source: str, error: TemplateError) -> FieldError:
    line = getattr(error, "lineno", None)
    where = f" on line {line}" if line else ""
    return FieldError(
        field, source[:40], f"is not a valid template{where}: {error.message}"
    )


def render_text(field: str, source: str, context: dict[str, Any]) -> str:
    """Render ``source``; raises FieldError naming ``field`` on any template error."""
    try:
        return ENVIRONMENT.from_string(source).render(context)
    except TemplateError as error:
        raise template_error(field, source, error) from None


def on_line(field: str, line: int) -> str:
    # A subject is one line, so only a body's errors name theirs.
    return f" on line {line}" if field == "body" else ""


def check_literal_braces(field: str, source: str) -> None:
    """Reject a brace in the text that Jinja sends as typed.

    Text inside ``{% raw %}`` is literal on purpose and may contain braces.
    """
    in_raw = False
    for line, kind, value in ENVIRONMENT.lex(source):
        if kind in ("raw_begin", "raw_end"):
            in_raw = kind == "raw_begin"
        if kind != "data" or in_raw:
            continue
        match = STRAY_BRACE.search(value)
        if match is None:
            continue
        line += value.count("\n", 0, match.start())
        inner = match.group("inner")
        if inner is None:
            raise FieldError(
                field,
                match.group(0),
                f"is a lone brace{on_line(field, line)}, which is sent as typed. "
                f"A placeholder takes double braces, such as "
                f"{{{{ recipient.first_name }}}}. {LITERAL_BRACE}",
            )
        raise FieldError(
            field,
            match.group(0),
            f"is sent as typed{on_line(field, line)}, because a placeholder "
            f"takes double braces: {suggestion(inner.strip())}. {LITERAL_BRACE}",
        )


def suggestion(inner: str) -> str:
    for name in (inner, f"recipient.{inner}"):
        if name in PLACEHOLDERS:
            return f"write {{{{ {name} }}}}"
    return f"use one of {placeholder_list()}"


def check_names(field: str, template: nodes.Template) -> None:
    """Reject a name or attribute that is not a placeholder, in any branch."""
    tops = {name.split(".")[0] for name in PLACEHOLDERS}
    unknown = meta.find_undeclared_variables(template) - tops
    for node in template.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        name = attribute_name(node)
        if name is None:
            continue
        top = name.split(".")[0]
        # An unknown name is reported with its attribute, as ``recipent.name``.
        if top in unknown or (top in tops and name not in PLACEHOLDERS):
            raise unknown_placeholder(field, name, node)
    for name_node in template.find_all(nodes.Name):
        if name_node.name in unknown:
            raise unknown_placeholder(field, name_node.name, name_node)


def attribute_name(node: nodes.Getattr | nodes.Getitem) -> str | None:
    """Return ``name.key`` for ``name.key`` or ``name['key']``, else None."""
    if not isinstance(node.node, nodes.Name):
        return None
    if isinstance(node, nodes.Getattr):
        return f"{node.node.name}.{node.attr}"
    if isinstance(node.arg, nodes.Const):
        return f"{node.node.name}.{node.arg.value}"
    return None


def unknown_placeholder(field: str, name: str, node: nodes.Node) -> FieldError:
    line = getattr(node, "lineno", 1)
    return FieldError(
        field,
        f"{{{{ {name} }}}}",
        f"is not a placeholder{on_line(field, line)}; use one of {placeholder_list()}",
    )


def check_template(field: str, source: str) -> str:
    """Check one text as the module docstring describes; return its sample rendering."""
    try:
        template = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as error:
        raise template_error(field, source, error) from None
    check_literal_braces(field, source)
    check_names(field, template)
    return render_text(field, source, SAMPLE_CONTEXT)


def check_templates(subject: str, body: str) -> None:
    rendered = check_template("subject", subject)
    if "\n" in rendered.strip() or "\r" in rendered:
        raise FieldError("subject", subject[:40], "must render to a single line")
    check_template("body", body)


def render_message(
    campaign: dict[str, Any], values: dict[str, Any], link: str
) -> tuple[str, str]:
    """Render a campaign's subject and body for one recipient's ``values``.

    The body gets the unsubscribe footer with ``link``. Raises FieldError
    naming the field on any template error.
    """
    context = {
        "recipient": values,
        "campaign": {"name": campaign["name"]},
        "unsubscribe_url": link,
    }
    subject = render_text("subject", campaign["subject"], context).strip()
    body = render_text("body", campaign["body"], context).rstrip()
    return subject, body + FOOTER.format(link=link)


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
