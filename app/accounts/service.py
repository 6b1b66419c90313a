"""Changing accounts: every page, API call and job that edits one comes here."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from app import fields
from app.accounts.tables import Account
from app.auth.tables import User
from app.encryption.columns import encrypt_values
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.imports.fields import limit
from app.merge import Edit, MergeResult, merge_edit

logger = logging.getLogger(__name__)

# Fields the edit form changes, in the order the form shows them.
EDITABLE = (
    "name",
    "domain",
    "industry",
    "employees",
    "annual_revenue",
    "phone",
    "website",
    "city",
    "country",
    "tier",
    "owner",
)
# Service tiers an account may have, or the empty tier for none. SLA policies
# match on them.
TIERS = ("bronze", "silver", "gold", "platinum")
TEXT_FIELDS = ("industry", "phone", "city", "country")
MAX_LENGTHS = {
    "name": limit(Account.name),
    "domain": limit(Account.domain),
    "industry": limit(Account.industry),
    "phone": limit(Account.phone),
    "website": limit(Account.website),
    "city": limit(Account.city),
    "country": limit(Account.country),
}

# One DNS label: letters, digits and inner hyphens, at most 63 characters.
HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def account_topics(account_id: int) -> list[str]:
    return [f"account:{account_id}"]


def parse_account_field(name: str, raw: str | None) -> Any:
    """Parse one submitted field of the account form.

    Domains and websites are only read as text here, because imported
    accounts may hold values that predate the rules, such as bare host names
    as websites. ``check_changed_values`` applies the rules to the values an
    edit changes, so such a value does not block edits of other fields.
    """
    if name == "name":
        return fields.text("name", raw, required=True, max_length=MAX_LENGTHS["name"])
    if name == "domain":
        return fields.text("domain", raw, max_length=MAX_LENGTHS["domain"]) or None
    if name == "website":
        return fields.text("website", raw, max_length=MAX_LENGTHS["website"])
    if name in TEXT_FIELDS:
        return fields.text(name, raw, max_length=MAX_LENGTHS[name])
    if name == "employees":
        return fields.whole_number("employees", raw)
    if name == "annual_revenue":
        return fields.amount("annual_revenue", raw)
    if name == "owner":
        return fields.reference("owner", raw)
    if name == "tier":
        return parse_tier(raw)
    raise FieldError(name, raw, "is not an editable account field")


def parse_tier(raw: str | None) -> str:
    """Parse a service tier, case-insensitively; empty text is no tier."""
    value = (raw or "").strip().lower()
    if value and value not in TIERS:
        raise FieldError(
            "tier",
            raw,
            f"is not a tier; use one of {', '.join(TIERS)} or leave it empty",
        )
    return value


def is_host_name(host: str) -> bool:
    """Return True when ``host``, lower-cased, is a DNS name of two or more labels."""
    labels = host.removesuffix(".").split(".")
    return (
        len(labels) >= 2
        and all(HOST_LABEL.fullmatch(label) for label in labels)
        # A last label of digits only makes an IP address, not a name.
        and not labels[-1].isdigit()
    )


def check_domain(value: str | None) -> str | None:
    """Check a host name such as acme.com and return it in lower case."""
    if value is None:
        return None
    host = value.lower()
    if not is_host_name(host):
        raise FieldError("domain", value, "is not a valid host name, such as acme.com")
    return host.removesuffix(".")


def check_website(value: str) -> str:
    """Check an http or https URL with a host name, or accept empty text."""
    if not value:
        return value
    if any(character.isspace() for character in value) or not is_http_url(value):
        raise FieldError(
            "website", value, "is not an http or https URL, such as https://acme.com"
        )
    return value


def is_http_url(value: str) -> bool:
    """Return True when ``value`` is an http(s) URL with a host name or IP address."""
    try:
        parts = urlsplit(value)
        # Reading the port raises ValueError when it is not a number.
        port_valid = parts.port != 0
    except ValueError:
        return False
    host = parts.hostname or ""
    return (
        parts.scheme.lower() in ("http", "https")
        and port_valid
        and (is_host_name(host) or is_ip_address(host))
    )


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# Rules for values that the form reads as typed, applied when they change.
CHANGE_RULES: dict[str, Callable[[Any], Any]] = {
    "domain": check_domain,
    "website": check_website,
}


def check_changed_values(edits: dict[str, Edit]) -> dict[str, Edit]:
    """Apply ``CHANGE_RULES`` to each edit that changes its field.

    Raises FieldError, naming the field and value, for an invalid one.
    """
    checked = {}
    for name, edit in edits.items():
        rule = CHANGE_RULES.get(name)
        if rule is not None and edit.new != edit.base:
            edit = Edit(base=edit.base, new=rule(edit.new))
        checked[name] = edit
    return checked


async def check_owner(values: dict[str, Any]) -> None:
    owner = values.get("owner")
    if owner is not None and not await User.exists().where(User.id == owner):
        raise FieldError("owner", owner, "is not a user")


async def update_account(
    account_id: int,
    edits: dict[str, Edit],
    actor_id: int | None,
    expected_version: int | None = None,
) -> MergeResult:
    """Apply an edit to an account, merging it with changes made since its base.

    Fields that someone else changed meanwhile are left as they are and
    returned in ``conflicts``, and the rest apply in the same transaction.
    Raises NotFound for an unknown account and FieldError for an invalid
    value, before anything is written.
    """
    if not await Account.exists().where(Account.id == account_id):
        raise NotFound("account", account_id)
    edits = check_changed_values(edits)
    await check_owner({name: edit.new for name, edit in edits.items()})

    async with change_set(actor_id) as changes:
        result = await merge_edit(
            Account, account_id, edits, changes, expected_version=expected_version
        )
        if result.applied:
            changes.add(
                "account.updated",
                "account",
                account_id,
                account_topics(account_id),
                result.applied,
            )

    logger.info(
        "account updated account_id=%s user_id=%s fields=%s conflicts=%s",
        account_id,
        actor_id,
        sorted(result.applied),
        [conflict.field for conflict in result.conflicts],
    )
    return result


async def create_account(values: dict[str, str], actor_id: int | None) -> int:
    """Create an account from submitted text; ``name`` is required.

    The domain and website must follow today's rules, and ``owner``
    defaults to the actor. Raises FieldError naming the field for an
    invalid value, before anything is written.
    """
    parsed = {
        name: parse_account_field(name, values.get(name))
        for name in EDITABLE
        if name in values or name == "name"
    }
    for name, rule in CHANGE_RULES.items():
        if name in parsed:
            parsed[name] = rule(parsed[name])
    await check_owner(parsed)
    parsed["owner"] = parsed.get("owner") or actor_id

    async with change_set(actor_id) as changes:
        rows = await Account.insert(
            Account(**encrypt_values(Account, parsed))
        ).returning(Account.id)
        account_id = rows[0]["id"]
        changes.add(
            "account.created",
            "account",
            account_id,
            account_topics(account_id),
            {"name": [None, parsed["name"]]},
        )

    logger.info("account created account_id=%s user_id=%s", account_id, actor_id)
    return account_id
