"""Placeholders in the text of a rule's actions.

A text may contain ``{record.<field>}`` (a readable field of the rule's
record type), ``{details.<key>}`` (a value its trigger passes, see
``TRIGGER_DETAILS``) and ``{rule.name}``. Braces serve only to delimit
placeholders, so a text with any other brace, such as ``{{ record.title }}``
or a lone ``}``, is invalid.

``parse`` is the only reader of this syntax. Saving a rule checks each text
with ``check`` and running it fills the text with ``render``, both through
``parse``, so a text that was saved is a text that renders.

An email subject is a header, so it may contain no line break or other
control character: ``check_header`` rejects them in the saved text and
``render`` with ``header`` replaces them with spaces.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from app.access.permissions import HIDDEN
from app.errors import FieldError
from app.workflows.records import RecordType

# Template syntax of other tools (``{{ name }}``), a brace pair with no
# brace inside, or a brace left without its partner.
TOKEN = re.compile(r"(?P<double>\{\{[^{}]*\}\})|\{(?P<inner>[^{}]*)\}|[{}]")
KEY = re.compile(r"[a-z_][a-z0-9_]*")
SYNTAX = "use {record.<field>}, {details.<key>} or {rule.name}, and no other braces"
# Unicode categories a header may not contain: control characters (CR, LF,
# tab, NEL) and the line and paragraph separators, which str.splitlines
# also reads as line breaks.
HEADER_BREAKING = frozenset({"Cc", "Zl", "Zp"})

# The ``details`` each trigger passes to its rules. The values are set where
# the trigger fires: app.workflows.engine (comment_received),
# app.email.inbound.queue_received (email.received) and
# app.sla.breaches (sla.warning, sla.breached). Other triggers pass none.
SLA_DETAILS = (
    "metric",
    "due_at",
    "target_seconds",
    "priority",
    "policy_id",
    "team_id",
    "clock_id",
)
TRIGGER_DETAILS: dict[str, tuple[str, ...]] = {
    "comment_received": ("comment_id",),
    "email.received": ("from", "subject", "message_id", "new_ticket", "attachments"),
    "sla.warning": SLA_DETAILS,
    "sla.breached": SLA_DETAILS,
}


class InvalidPlaceholder(ValueError):
    """A text contains a placeholder that would not be filled."""

    def __init__(self, token: str, reason: str) -> None:
        self.token = token
        self.reason = reason
        super().__init__(f"{token!r} {reason}")


@dataclass(frozen=True)
class Placeholder:
    """One ``{scope.key}`` of a text: scope is record, details or rule."""

    scope: str
    key: str


def parse(
    text: str, record_type: RecordType, trigger_kind: str
) -> list[str | Placeholder]:
    """Split a text into literal parts and placeholders.

    Raises InvalidPlaceholder for the first brace that is not part of a
    placeholder, and for a placeholder that names no field of the record
    type or no detail of the trigger.
    """
    parts: list[str | Placeholder] = []
    position = 0
    for match in TOKEN.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        parts.append(placeholder(match, text, record_type, trigger_kind))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    return parts


def placeholder(
    match: re.Match[str], text: str, record_type: RecordType, trigger_kind: str
) -> Placeholder:
    token = match.group(0)
    if match.group("double") is not None:
        single = "{" + token[2:-2].strip() + "}"
        try:
            parse(single, record_type, trigger_kind)
        except InvalidPlaceholder:
            advice = SYNTAX
        else:
            advice = f"write {single}"
        raise InvalidPlaceholder(
            token, f"uses double braces, which are not filled in; {advice}"
        )
    inner = match.group("inner")
    if inner is None:
        # A lone brace: show it with the text around it, so it can be found.
        start = max(match.start() - 20, 0)
        excerpt = text[start : match.end() + 20]
        raise InvalidPlaceholder(excerpt, f"has an unbalanced {token!r}; {SYNTAX}")
    scope, dot, key = inner.partition(".")
    if not dot or not KEY.fullmatch(key):
        raise InvalidPlaceholder(token, f"is not a placeholder; {SYNTAX}")
    if scope == "rule" and key == "name":
        return Placeholder(scope, key)
    if scope == "record":
        if key not in record_type.readable:
            raise InvalidPlaceholder(
                token,
                f"is not a {record_type.name} field; use one of "
                f"{', '.join(record_type.readable)}",
            )
        return Placeholder(scope, key)
    if scope == "details":
        offered = TRIGGER_DETAILS.get(trigger_kind, ())
        if key not in offered:
            listed = f"only {', '.join(offered)}" if offered else "none"
            raise InvalidPlaceholder(
                token,
                f"is not a detail of the {trigger_kind} trigger, which passes {listed}",
            )
        return Placeholder(scope, key)
    raise InvalidPlaceholder(token, f"is not a placeholder; {SYNTAX}")


def check(
    path: str, text: str | None, record_type: RecordType, trigger_kind: str
) -> None:
    """Raise FieldError naming ``path`` for a placeholder that would not be
    filled."""
    try:
        parse(text or "", record_type, trigger_kind)
    except InvalidPlaceholder as error:
        raise FieldError(path, error.token, error.reason) from None


def breaks_header(character: str) -> bool:
    return unicodedata.category(character) in HEADER_BREAKING


def check_header(path: str, text: str | None) -> None:
    """Raise FieldError naming ``path`` when a header text, such as an email
    subject, contains a line break or another control character."""
    found = next((char for char in text or "" if breaks_header(char)), None)
    if found is not None:
        raise FieldError(
            path,
            text,
            f"contains the control character {found!r}; a subject must be one "
            "line, so remove line breaks and tabs",
        )


def header_text(text: str) -> str:
    """Return ``text`` with each control character or line break replaced
    by a space, so that it can be a header value."""
    return "".join(" " if breaks_header(char) else char for char in text)


def render(
    path: str,
    text: str | None,
    record_type: RecordType,
    trigger_kind: str,
    values: Mapping[str, Mapping[str, Any]],
    hidden: Collection[str] = (),
    header: bool = False,
) -> str:
    """Fill a text's placeholders from ``values`` (``record``, ``details``
    and ``rule``) as plain text, with None as empty text.

    A ``{record.<field>}`` whose field is in ``hidden`` shows ``HIDDEN``.
    With ``header``, control characters and line breaks become spaces,
    including any that a definition stored before ``check_header`` contains.

    Raises FieldError naming ``path`` for a text that ``check`` rejects,
    which only a definition stored before that check can contain.
    """
    try:
        parts = parse(text or "", record_type, trigger_kind)
    except InvalidPlaceholder as error:
        raise FieldError(path, error.token, error.reason) from None
    filled = []
    for part in parts:
        if isinstance(part, str):
            filled.append(part)
            continue
        if part.scope == "record" and part.key in hidden:
            filled.append(HIDDEN)
            continue
        value = values.get(part.scope, {}).get(part.key)
        filled.append("" if value is None else str(value))
    result = "".join(filled)
    return header_text(result) if header else result
