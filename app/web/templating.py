"""The one Jinja environment used by pages and by pushed fragments alike."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.access.permissions import HIDDEN
from app.sanitize import rich_text
from app.web.menu import LONG_MENU, main_menu

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "app" / "static"

# An en dash, shown where a field has no value.
NO_VALUE = "\u2013"


def money(value: Decimal | float | int | None) -> str:
    if value is None:
        return NO_VALUE
    return f"${Decimal(value):,.0f}"


def short_date(value: dt.date | None) -> str:
    if value is None:
        return NO_VALUE
    return value.strftime("%d %b %Y")


def age(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """Render how long ago ``value`` was, the way boards show it: 5m, 3h, 12d."""
    if value is None:
        return NO_VALUE
    now = now or dt.datetime.now(dt.UTC)
    seconds = max(0, int((now - value).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    days = seconds // 86400
    return f"{days}d" if days < 365 else f"{days // 365}y"


def form_value(value: Any) -> str:
    """Render a stored value the way a form field and its base copy carry it."""
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


# The number of avatar colour classes, .avatar-0 to .avatar-7 in app.css.
AVATAR_COLOURS = 8


def avatar_colour(user_id: int) -> str:
    """Return the class that gives a user's avatar its colour, the same on every
    page, so that people with the same initials still look different."""
    return f"avatar-{user_id % AVATAR_COLOURS}"


def label(value: str | None) -> str:
    return (value or "").replace("_", " ").capitalize()


def initials(name: str | None) -> str:
    parts = (name or "?").split()
    return "".join(part[0] for part in parts[:2]).upper()


class RowEnvironment(Environment):
    """Jinja environment that looks keys up first on plain dicts.

    Database rows reach templates as dicts, and Jinja's default ``row.name``
    tries the attribute first and falls back to the key after an
    AttributeError, which made rendering a 100-card board about twice as
    slow.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def build_environment() -> Environment:
    environment = RowEnvironment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        enable_async=False,
    )
    environment.filters.update(
        money=money,
        short_date=short_date,
        age=age,
        form_value=form_value,
        label=label,
        initials=initials,
        avatar_colour=avatar_colour,
        rich_text=rich_text,
    )
    environment.globals["may"] = may
    environment.globals["main_menu"] = main_menu
    environment.globals["LONG_MENU"] = LONG_MENU
    environment.globals["HIDDEN"] = HIDDEN
    environment.globals["forecast_category_label"] = forecast_category_label
    environment.globals["forecast_category_choices"] = forecast_category_choices
    return environment


def forecast_category_label(category: str | None, stage_probability: int | None) -> str:
    """Return the words for a deal's category, or for its stage's when it has none."""
    # Imported here because app.forecast imports this module.
    from app.forecast.figures import CATEGORY_LABELS, stage_category

    return CATEGORY_LABELS[category or stage_category(stage_probability or 0)]


def forecast_category_choices() -> list[tuple[str, str]]:
    from app.forecast.figures import CATEGORY_LABELS

    return list(CATEGORY_LABELS.items())


def may(user: Any, permission: str) -> bool:
    """Return whether the signed-in ``user`` has a route permission, for menus."""
    from app.access.guards import allows

    access = getattr(user, "access", None)
    return access is not None and allows(access, permission)


environment = build_environment()


def render(name: str, **context: Any) -> str:
    """Render a template outside a request, as pushed fragments are."""
    return environment.get_template(name).render(**context)
