"""The web-to-lead form's settings, which administrators set to embed the form.

They name the source new leads get and the other sources a posted form may
name. They also set who owns the leads, which fields and questions the form
shows, where a visitor goes after sending it, and which other sites' pages
may show it in a frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec

from app import fields
from app.accounts.service import is_http_url
from app.auth.tables import Team, User
from app.errors import FieldError
from app.events.service import change_set
from app.leads.tables import CLOSED_STATUSES, WebFormSettings

logger = logging.getLogger(__name__)

SETTINGS_ID = 1
# Fields the form may show besides email, which it always shows.
OPTIONAL_FIELDS = ("name", "company")
DEFAULT_QUESTIONS = ("What matters most to you",)
MAX_QUESTIONS = 20
MAX_QUESTION_LENGTH = 120
MAX_ORIGINS = 20
MAX_SOURCES = 20
MAX_SOURCE_LENGTH = 120
MAX_URL_LENGTH = 2000


@dataclass(frozen=True)
class FormSettings:
    source: str = "Web form"
    default_owner: int | None = None
    default_team: int | None = None
    fields: tuple[str, ...] = OPTIONAL_FIELDS
    questions: tuple[str, ...] = DEFAULT_QUESTIONS
    redirect_url: str = ""
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    # Sources a posted form may name instead of ``source``.
    sources: tuple[str, ...] = field(default_factory=tuple)

    @property
    def accepted_sources(self) -> tuple[str, ...]:
        """Return every source a submission may name: the label, then the others."""
        return (self.source, *self.sources)

    def frame_ancestors(self) -> str:
        """Return the CSP frame-ancestors sources: the allowed origins or 'none'."""
        return " ".join(self.allowed_origins) or "'none'"

    def redirect_origin(self) -> str | None:
        if not self.redirect_url:
            return None
        parts = urlsplit(self.redirect_url)
        return f"{parts.scheme}://{parts.netloc}"


def decode_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = msgspec.json.decode(value) if value else []
    return tuple(str(item) for item in value or ())


async def load_settings() -> FormSettings:
    """Return the saved settings, or the defaults before an admin saved any."""
    row = (
        await WebFormSettings.select().where(WebFormSettings.id == SETTINGS_ID).first()
    )
    if row is None:
        return FormSettings()
    return FormSettings(
        source=row["source"],
        default_owner=row["default_owner"],
        default_team=row["default_team"],
        fields=tuple(
            name for name in decode_list(row["fields"]) if name in OPTIONAL_FIELDS
        ),
        questions=decode_list(row["questions"]),
        redirect_url=row["redirect_url"],
        allowed_origins=decode_list(row["allowed_origins"]),
        sources=decode_list(row["sources"]),
    )


def parse_origin(raw: str) -> str:
    """Check one origin, such as https://www.example.com:8443, and normalise it.

    Raises FieldError naming ``allowed_origins`` and the value when it has a
    path, a query, credentials or a scheme other than http or https.
    """
    text = raw.strip().rstrip("/")
    reason = "must be an origin such as https://www.example.com, without a path"
    if not is_http_url(text):
        raise FieldError("allowed_origins", raw, reason)
    parts = urlsplit(text)
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise FieldError("allowed_origins", raw, reason)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def parse_lines(raw: Any) -> list[str]:
    if isinstance(raw, list):
        raw = "\n".join(str(item) for item in raw)
    return [line.strip() for line in str(raw or "").splitlines() if line.strip()]


def parse_redirect(raw: Any) -> str:
    text = str(raw or "").strip()
    if not text:
        return ""
    if len(text) > MAX_URL_LENGTH or not is_http_url(text):
        raise FieldError(
            "redirect_url", raw, "must be an http:// or https:// address, or empty"
        )
    if "@" in urlsplit(text).netloc:
        raise FieldError("redirect_url", raw, "must not contain credentials")
    return text


def parse_shown_fields(raw: Any) -> list[str]:
    if isinstance(raw, list):
        chosen = raw
    elif raw:
        chosen = [raw]
    else:
        chosen = []
    shown = []
    for name in chosen:
        if name not in OPTIONAL_FIELDS:
            raise FieldError(
                "fields", name, f"must be one of {', '.join(OPTIONAL_FIELDS)}"
            )
        if name not in shown:
            shown.append(name)
    return [name for name in OPTIONAL_FIELDS if name in shown]


def parse_questions(raw: Any) -> list[str]:
    questions = parse_lines(raw)
    if len(questions) > MAX_QUESTIONS:
        raise FieldError(
            "questions", len(questions), f"has more than {MAX_QUESTIONS} lines"
        )
    checked = [
        fields.text("questions", question, max_length=MAX_QUESTION_LENGTH)
        for question in questions
    ]
    return list(dict.fromkeys(checked))


def parse_sources(raw: Any, source: str) -> list[str]:
    """Check the other sources, one per line, leaving out the source label."""
    sources = [
        fields.text("sources", line, max_length=MAX_SOURCE_LENGTH)
        for line in parse_lines(raw)
    ]
    if len(sources) > MAX_SOURCES:
        raise FieldError("sources", len(sources), f"has more than {MAX_SOURCES} lines")
    return [name for name in dict.fromkeys(sources) if name != source]


async def parse_settings(data: dict[str, Any]) -> dict[str, Any]:
    """Check submitted settings; raises FieldError naming the field and value."""
    source = fields.text(
        "source", data.get("source"), required=True, max_length=MAX_SOURCE_LENGTH
    )
    owner = fields.reference("default_owner", data.get("default_owner"))
    if owner is not None and not await User.exists().where(User.id == owner):
        raise FieldError("default_owner", owner, "does not exist")
    team = fields.reference("default_team", data.get("default_team"))
    if team is not None and not await Team.exists().where(Team.id == team):
        raise FieldError("default_team", team, "does not exist")
    origins = [parse_origin(line) for line in parse_lines(data.get("allowed_origins"))]
    if len(origins) > MAX_ORIGINS:
        raise FieldError(
            "allowed_origins", len(origins), f"has more than {MAX_ORIGINS} origins"
        )
    return {
        "source": source,
        "default_owner": owner,
        "default_team": team,
        "fields": parse_shown_fields(data.get("fields")),
        "questions": parse_questions(data.get("questions")),
        "redirect_url": parse_redirect(data.get("redirect_url")),
        "allowed_origins": list(dict.fromkeys(origins)),
        "sources": parse_sources(data.get("sources"), source),
    }


def changed_values(
    before: FormSettings, values: dict[str, Any]
) -> dict[str, list[Any]]:
    """Return each changed setting as [old, new], lists for the tuples."""
    changed = {}
    for name, value in values.items():
        old = getattr(before, name)
        if isinstance(old, tuple):
            old = list(old)
        if old != value:
            changed[name] = [old, value]
    return changed


async def save_settings(data: dict[str, Any], actor_id: int | None) -> FormSettings:
    """Check and store the form's settings, recording the change."""
    values = await parse_settings(data)
    before = await load_settings()
    stored = {
        **values,
        "fields": msgspec.json.encode(values["fields"]).decode(),
        "questions": msgspec.json.encode(values["questions"]).decode(),
        "allowed_origins": msgspec.json.encode(values["allowed_origins"]).decode(),
        "sources": msgspec.json.encode(values["sources"]).decode(),
    }
    async with change_set(actor_id) as changes:
        await WebFormSettings.raw(
            "INSERT INTO web_form_settings (id, source, default_owner, default_team, "
            "fields, questions, redirect_url, allowed_origins, sources, updated_at) "
            "VALUES ({}, {}, {}, {}, {}::jsonb, {}::jsonb, {}, {}::jsonb, {}::jsonb, "
            "now()) "
            "ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source, "
            "default_owner = EXCLUDED.default_owner, "
            "default_team = EXCLUDED.default_team, fields = EXCLUDED.fields, "
            "questions = EXCLUDED.questions, redirect_url = EXCLUDED.redirect_url, "
            "allowed_origins = EXCLUDED.allowed_origins, sources = EXCLUDED.sources, "
            "updated_at = now()",
            SETTINGS_ID,
            stored["source"],
            stored["default_owner"],
            stored["default_team"],
            stored["fields"],
            stored["questions"],
            stored["redirect_url"],
            stored["allowed_origins"],
            stored["sources"],
        )
        changes.add(
            "web_form.updated",
            "web_form",
            SETTINGS_ID,
            ["web-form"],
            changed_values(before, values),
        )
    logger.info(
        "web form settings saved user_id=%s origins=%d redirect=%s",
        actor_id,
        len(values["allowed_origins"]),
        bool(values["redirect_url"]),
    )
    return await load_settings()


async def form_owner(settings: FormSettings) -> int | None:
    """Return the owner of a lead from the form.

    The default owner when one is set; otherwise the default team's member
    with the fewest open leads (the lowest user id among equals); otherwise
    None, and the lead has no owner.
    """
    if settings.default_owner is not None:
        return settings.default_owner
    if settings.default_team is None:
        return None
    # NOTE: nothing locks the count, so submissions that arrive together
    # may go to the same member; the balance evens out over later leads.
    rows = await User.raw(
        "SELECT u.id FROM app_user u "
        "WHERE u.active AND (u.team = {} OR EXISTS ("
        '  SELECT 1 FROM team_member m WHERE m."user" = u.id AND m.team = {})) '
        "ORDER BY (SELECT count(*) FROM lead l WHERE l.owner = u.id "
        "  AND l.status <> ALL({})), u.id LIMIT 1",
        settings.default_team,
        settings.default_team,
        list(CLOSED_STATUSES),
    )
    return rows[0]["id"] if rows else None
