"""Scope resolution, field rules, validation and live variants."""

from __future__ import annotations

import pytest

from app.access.builtin import BUILTIN_ROLES
from app.access.guards import ADMIN, IMPORT, allows
from app.access.permissions import (
    Access,
    Grants,
    RoleRules,
    parse_field_rules,
    parse_permissions,
    resolve,
)
from app.access.scopes import redact, scope_sql
from app.access.views import split_variant, variant, view_key
from app.errors import FieldError


def role(name: str) -> RoleRules:
    spec = BUILTIN_ROLES[name]
    return RoleRules(
        permissions=parse_permissions(spec["permissions"]),
        field_rules=parse_field_rules(spec["field_rules"]),
    )


def rules(
    permissions: dict[str, dict[str, str]],
    field_rules: dict[str, dict[str, str]] | None = None,
) -> RoleRules:
    return RoleRules(
        permissions=parse_permissions(permissions),
        field_rules=parse_field_rules(field_rules or {}),
    )


def test_resolve_most_permissive_scope_wins() -> None:
    access = resolve(
        7,
        [1],
        [
            rules({"deal": {"read": "own", "edit": "team"}}),
            rules({"deal": {"read": "all"}}),
        ],
    )

    assert access.scope("deal", "read") == "all"
    assert access.scope("deal", "edit") == "team"
    assert access.scope("deal", "delete") == "none"
    assert access.scope("ticket", "read") == "none"


def test_resolve_without_roles_grants_nothing() -> None:
    access = resolve(7, [1], [])

    assert not access.can("deal", "read")
    assert not access.permits("deal", "read", 7, [1])


def test_permits_own_team_and_all() -> None:
    own = resolve(7, [1], [rules({"deal": {"read": "own"}})])
    team = resolve(7, [1], [rules({"deal": {"read": "team"}})])

    assert own.permits("deal", "read", 7, [2])
    assert not own.permits("deal", "read", 8, [1])
    assert not own.permits("deal", "read", None, [1])
    assert team.permits("deal", "read", 8, [1])
    assert not team.permits("deal", "read", 7, [2])
    assert not team.permits("deal", "read", 7, [None])


def test_edit_scope_lets_the_user_read_those_records() -> None:
    rep = resolve(7, [1], [role("sales_rep")])

    # Their own deal in another team: "team" read alone would miss it.
    assert rep.permits("deal", "read", 7, [2])
    assert rep.permits("deal", "read", 8, [1])
    assert not rep.permits("deal", "read", 8, [2])
    assert rep.permits("deal", "edit", 7, [2])
    assert not rep.permits("deal", "edit", 8, [1])


def test_field_hidden_unless_another_reading_role_shows_it() -> None:
    agent = resolve(7, [1], [role("support_agent")])
    both = resolve(7, [1], [role("support_agent"), role("read_only")])
    agent_and_admin_right = resolve(
        7, [1], [role("support_agent"), rules({"admin": {"edit": "all"}})]
    )

    assert not agent.can_see("deal", "amount")
    assert agent.hidden_fields("deal") == {"amount"}
    assert both.can_see("deal", "amount")
    # A role that grants no read on deals does not reveal their fields.
    assert not agent_and_admin_right.can_see("deal", "amount")


def test_read_only_field_unless_another_writing_role_frees_it() -> None:
    rep = resolve(7, [1], [role("sales_rep")])
    rep_and_manager = resolve(7, [1], [role("sales_rep"), role("sales_manager")])
    rep_and_reader = resolve(7, [1], [role("sales_rep"), role("read_only")])

    assert rep.can_see("deal", "team")
    assert not rep.can_write("deal", "team")
    assert rep.can_write("deal", "owner")
    assert rep_and_manager.can_write("deal", "team")
    # read_only writes nothing, so it does not free the field.
    assert not rep_and_reader.can_write("deal", "team")


def test_hidden_field_is_not_writable() -> None:
    access = resolve(
        7,
        [],
        [
            rules(
                {"deal": {"read": "all", "edit": "all"}}, {"deal": {"amount": "hidden"}}
            )
        ],
    )

    assert not access.can_write("deal", "amount")
    assert access.can_write("deal", "name")


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"deal": {"read": "everyone"}}, "permissions.deal.read", "everyone"),
        ({"deal": {"look": "all"}}, "permissions.deal.look", "look"),
        ({"invoice": {"read": "all"}}, "permissions.invoice", "invoice"),
        ({"admin": {"edit": "team"}}, "permissions.admin.edit", "team"),
    ],
)
def test_parse_permissions_names_field_and_value(
    raw: dict[str, dict[str, str]], field: str, value: str
) -> None:
    with pytest.raises(FieldError) as raised:
        parse_permissions(raw)

    assert raised.value.field == field
    assert raised.value.value == value


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"deal": {"amount": "secret"}}, "field_rules.deal.amount", "secret"),
        ({"deal": {"colour": "hidden"}}, "field_rules.deal.colour", "colour"),
        ({"invoice": {"name": "hidden"}}, "field_rules.invoice", "invoice"),
    ],
)
def test_parse_field_rules_names_field_and_value(
    raw: dict[str, dict[str, str]], field: str, value: str
) -> None:
    with pytest.raises(FieldError) as raised:
        parse_field_rules(raw)

    assert raised.value.field == field
    assert raised.value.value == value


def test_parse_permissions_fills_missing_actions_with_none() -> None:
    grid = parse_permissions({"deal": {"read": "team"}})

    assert grid == {"deal": Grants(read="team")}


def test_builtin_roles_are_valid_and_admin_manages() -> None:
    for name in BUILTIN_ROLES:
        role(name)
    admin = resolve(1, [], [role("admin")])
    manager = resolve(2, [], [role("sales_manager")])

    assert allows(admin, ADMIN)
    assert allows(admin, IMPORT)
    assert not allows(manager, ADMIN)
    assert not allows(manager, IMPORT)


def test_read_only_role_reads_all_and_writes_nothing() -> None:
    reader = resolve(3, [1], [role("read_only")])

    for object_type in ("account", "contact", "deal", "ticket", "comment"):
        assert reader.scope(object_type, "read") == "all"
        for action in ("create", "edit", "delete"):
            assert not reader.can(object_type, action)


def test_scope_sql_combines_read_and_edit_scopes() -> None:
    rep = resolve(7, [1, 2], [role("sales_rep")])
    args: list[object] = []

    condition = scope_sql(rep, "deal", "d", args)

    assert condition == "(d.team = ANY({}::integer[]) OR d.owner = {})"
    assert args == [[1, 2], 7]


def test_scope_sql_team_of_owner_for_accounts() -> None:
    access = resolve(7, [3], [rules({"account": {"read": "team"}})])
    args: list[object] = []

    condition = scope_sql(access, "account", "a", args)

    assert condition.startswith("a.owner IN (")
    assert args == [[3], [3]]


def test_scope_sql_all_and_none() -> None:
    admin = resolve(1, [], [role("admin")])
    nobody = Access()

    assert scope_sql(admin, "ticket", "t", []) == "TRUE"
    assert scope_sql(nobody, "ticket", "t", []) == "FALSE"


def test_redact_removes_hidden_field_and_its_names() -> None:
    access = resolve(
        7,
        [],
        [
            rules(
                {"deal": {"read": "all"}},
                {"deal": {"amount": "hidden", "owner": "hidden"}},
            )
        ],
    )

    shown = redact(
        access, "deal", {"id": 1, "amount": 5, "owner": 3, "owner_name": "Al"}
    )

    assert shown == {"id": 1, "amount": None, "owner": None, "owner_name": None}


def test_variant_shared_by_same_rights() -> None:
    first = resolve(7, [1], [role("read_only")])
    second = resolve(8, [2], [role("read_only")])
    first_manager = resolve(7, [1], [role("sales_manager")])
    second_manager = resolve(8, [2], [role("sales_manager")])
    rep = resolve(9, [1], [role("sales_rep")])

    # Both read every deal and edit none, so user and teams do not matter.
    assert variant("", first, ["deal"]) == variant("", second, ["deal"])
    # Managers edit their team's deals, which decides whether a card moves.
    assert variant("", first_manager, ["deal"]) != variant("", second_manager, ["deal"])
    # Both managers read every ticket and edit none.
    assert variant("", first_manager, ["ticket"]) == variant(
        "", second_manager, ["ticket"]
    )
    assert variant("", first, ["deal"]) != variant("", rep, ["deal"])


def test_split_variant_returns_filter_and_access() -> None:
    rep = resolve(9, [1], [role("sales_rep")])
    text = variant("person=3", rep, ["deal"])

    board_key, access = split_variant(text)

    assert board_key == "person=3"
    assert access.permits("deal", "read", 9, [5])
    assert not access.permits("deal", "read", 10, [5])
    assert not access.can_write("deal", "team")
    assert view_key(text) == text.partition("|")[2]


def test_variant_without_view_grants_nothing() -> None:
    board_key, access = split_variant("team=2")

    assert board_key == "team=2"
    assert not access.can("deal", "read")


class RecordingSocket:
    async def send_text(self, data: str) -> None:
        pass

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


async def test_hub_renders_once_per_access_view() -> None:
    from realtime.hub import Client, Hub
    from realtime.messages import Event

    calls: list[set[str]] = []

    async def renderer(event, topic, variants, cache):
        calls.append(set(variants))
        # Leave one variant out: the hub still sends it the sequence number.
        return {variant: "<p>card</p>" for variant in sorted(variants)[1:]}

    hub = Hub()
    hub.register("pipeline", renderer)
    profiles = [
        resolve(user_id, [1], [role("read_only")]) for user_id in range(1, 21)
    ] + [resolve(user_id, [2], [role("support_agent")]) for user_id in range(21, 41)]
    clients = [Client(RecordingSocket(), user_id=access.user_id) for access in profiles]
    for client, access in zip(clients, profiles, strict=True):
        hub.join(client, "pipeline:1", variant("", access, ["deal"]))

    sent = await hub.dispatch(
        Event(
            id=1,
            kind="deal.updated",
            topics=["pipeline:1"],
            record_type="deal",
            record_id=9,
            seqs={"pipeline:1": 4},
        )
    )

    assert sent == 40
    assert len(calls) == 1
    assert len(calls[0]) == 2
    frames = {client.queue.get_nowait() for client in clients}
    assert frames == {"#seq pipeline:1 4\n", "#seq pipeline:1 4\n<p>card</p>"}
