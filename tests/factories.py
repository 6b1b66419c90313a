"""Factories for the records tests need, each with unique names."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

from app.access.tables import Role
from app.accounts.tables import Account
from app.auth.service import CurrentUser, create_user, load_user
from app.auth.tables import Team, TeamMember, User
from app.contacts.tables import Contact
from app.deals.tables import Deal, Pipeline, Product, Stage
from app.tickets.tables import Ticket
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun

PASSWORD = "correct horse battery"

# A deal amount for tests about who may see amounts. ``shows_hidden_amount``
# finds it as a bare number, with a thousands comma or with a currency sign,
# but not inside a longer number or after a dot or colon, where the same
# digits can turn up as a timestamp's microseconds.
HIDDEN_AMOUNT = "987654.32"
_HIDDEN_AMOUNT_TEXT = re.compile(r"(?<![\d.:])987,?654(?!\d)")


def shows_hidden_amount(text: str) -> bool:
    return _HIDDEN_AMOUNT_TEXT.search(text) is not None


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def token() -> str:
    return uuid.uuid4().hex[:10]


async def make_user(
    role: str = "admin", name: str | None = None, team: int | None = None
) -> CurrentUser:
    """Create a user with one role; ``team`` becomes their primary team.

    The default role reads and changes everything, for tests about other
    things than permissions.
    """
    email = f"{uuid.uuid4().hex[:10]}@test.example"
    user = await create_user(email, name or unique("User"), role, PASSWORD)
    if team is None:
        return user
    await User.update({User.team: team}).where(User.id == user.id)
    await TeamMember.insert(TeamMember(team=team, user=user.id))
    loaded = await load_user(user.id)
    assert loaded is not None
    return loaded


# The custom roles that make_role created. A stored rule text hides every
# field that any role hides, so the integration tests' conftest clears these
# roles' field rules after each test, keeping them from changing other tests.
MADE_ROLES: list[str] = []


async def make_role(
    permissions: dict[str, Any], field_rules: dict[str, Any] | None = None
) -> str:
    """Create a custom role and return its name, for ``make_user``.

    ``permissions`` is a grid such as ``{"deal": {"read": "all"}}``, and
    ``field_rules`` one such as ``{"deal": {"stage": "hidden"}}``.
    """
    role = Role(
        name=f"role_{uuid.uuid4().hex[:10]}",
        label=unique("Role"),
        permissions=permissions,
        field_rules=field_rules or {},
    )
    await role.save()
    MADE_ROLES.append(role.name)
    return role.name


async def make_team(name: str | None = None) -> int:
    rows = await Team.insert(Team(name=name or unique("Team"))).returning(Team.id)
    return rows[0]["id"]


async def make_pipeline(
    stage_names: tuple[str, ...] = ("Prospecting", "Engaging", "Won", "Lost"),
) -> dict[str, Any]:
    rows = await Pipeline.insert(Pipeline(name=unique("Pipeline"))).returning(
        Pipeline.id
    )
    pipeline_id = rows[0]["id"]
    stages = []
    for position, name in enumerate(stage_names):
        kind = {"Won": "won", "Lost": "lost"}.get(name, "open")
        stage_rows = await Stage.insert(
            Stage(pipeline=pipeline_id, name=name, position=position, kind=kind)
        ).returning(Stage.id)
        stages.append(stage_rows[0]["id"])
    return {"id": pipeline_id, "stages": stages}


async def make_deal(
    pipeline: dict[str, Any], stage_index: int = 0, amount: str = "1000", **values: Any
) -> int:
    rows = await Deal.insert(
        Deal(
            name=values.pop("name", unique("Deal")),
            pipeline=pipeline["id"],
            stage=pipeline["stages"][stage_index],
            amount=Decimal(amount),
            **values,
        )
    ).returning(Deal.id)
    return rows[0]["id"]


async def make_account(**values: Any) -> int:
    name = values.pop("name", unique("Account"))
    rows = await Account.insert(Account(name=name, **values)).returning(Account.id)
    return rows[0]["id"]


async def make_contact(**values: Any) -> int:
    last_name = values.pop("last_name", unique("Contact"))
    rows = await Contact.insert(
        Contact(
            first_name=values.pop("first_name", "Ada"), last_name=last_name, **values
        )
    ).returning(Contact.id)
    return rows[0]["id"]


async def make_product(name: str | None = None) -> int:
    rows = await Product.insert(Product(name=name or unique("Product"))).returning(
        Product.id
    )
    return rows[0]["id"]


async def make_ticket(status: str = "new", **values: Any) -> int:
    rows = await Ticket.insert(
        Ticket(subject=values.pop("subject", unique("Ticket")), status=status, **values)
    ).returning(Ticket.id)
    return rows[0]["id"]


def contains(field: str, marker: str) -> dict[str, Any]:
    """Build a rule's conditions: ``field`` contains ``marker``."""
    return {
        "type": "group",
        "items": [
            {"type": "condition", "field": field, "op": "contains", "value": marker}
        ],
    }


async def enabled_rule(
    rules: list[int], definition: dict[str, Any], object_type: str = "ticket"
) -> int:
    """Save and enable a rule, adding its id to ``rules`` for deletion."""
    rule_id = await save_rule(None, object_type, f"Rule {token()}", definition, None)
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)
    return rule_id


async def runs_of(rule_id: int) -> list[dict[str, Any]]:
    return await RuleRun.select().where(RuleRun.rule == rule_id).order_by(RuleRun.id)
