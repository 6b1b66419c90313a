"""The built-in roles, every existing user's role as a user role, and a trigger
that gives new users the role named in their ``role`` column."""

import json

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.querystring import QueryString

ID = "2026-12-04T16:20:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add the built-in roles and migrate user roles"

# The grants as of this migration. Later changes to the built-in roles
# belong in a migration of their own, so this one keeps its meaning.
BUILTIN_ROLES = {
    "admin": {
        "label": "Administrator",
        "permissions": {
            "account": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
            "contact": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
            "deal": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
            "ticket": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
            "comment": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
            "admin": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
        },
        "field_rules": {},
    },
    "sales_manager": {
        "label": "Sales manager",
        "permissions": {
            "account": {
                "read": "all",
                "create": "all",
                "edit": "team",
                "delete": "none",
            },
            "contact": {
                "read": "all",
                "create": "all",
                "edit": "team",
                "delete": "none",
            },
            "deal": {"read": "all", "create": "all", "edit": "team", "delete": "team"},
            "ticket": {
                "read": "all",
                "create": "none",
                "edit": "none",
                "delete": "none",
            },
            "comment": {
                "read": "all",
                "create": "all",
                "edit": "none",
                "delete": "none",
            },
        },
        "field_rules": {},
    },
    "sales_rep": {
        "label": "Sales rep",
        "permissions": {
            "account": {
                "read": "all",
                "create": "all",
                "edit": "own",
                "delete": "none",
            },
            "contact": {
                "read": "all",
                "create": "all",
                "edit": "own",
                "delete": "none",
            },
            "deal": {"read": "team", "create": "own", "edit": "own", "delete": "none"},
            "comment": {
                "read": "team",
                "create": "team",
                "edit": "none",
                "delete": "none",
            },
        },
        "field_rules": {"deal": {"team": "read_only"}},
    },
    "support_lead": {
        "label": "Support lead",
        "permissions": {
            "account": {
                "read": "all",
                "create": "all",
                "edit": "team",
                "delete": "none",
            },
            "contact": {
                "read": "all",
                "create": "all",
                "edit": "all",
                "delete": "none",
            },
            "deal": {"read": "all", "create": "none", "edit": "none", "delete": "none"},
            "ticket": {"read": "all", "create": "all", "edit": "all", "delete": "team"},
            "comment": {
                "read": "all",
                "create": "all",
                "edit": "none",
                "delete": "none",
            },
        },
        "field_rules": {},
    },
    "support_agent": {
        "label": "Support agent",
        "permissions": {
            "account": {
                "read": "all",
                "create": "none",
                "edit": "none",
                "delete": "none",
            },
            "contact": {
                "read": "all",
                "create": "none",
                "edit": "none",
                "delete": "none",
            },
            "deal": {"read": "all", "create": "none", "edit": "none", "delete": "none"},
            "ticket": {
                "read": "team",
                "create": "team",
                "edit": "team",
                "delete": "none",
            },
            "comment": {
                "read": "team",
                "create": "team",
                "edit": "none",
                "delete": "none",
            },
        },
        "field_rules": {"deal": {"amount": "hidden"}, "ticket": {"team": "read_only"}},
    },
    "read_only": {
        "label": "Read only",
        "permissions": {
            "account": {
                "read": "all",
                "create": "none",
                "edit": "none",
                "delete": "none",
            },
            "contact": {
                "read": "all",
                "create": "none",
                "edit": "none",
                "delete": "none",
            },
            "deal": {"read": "all", "create": "none", "edit": "none", "delete": "none"},
            "ticket": {
                "read": "all",
                "create": "none",
                "edit": "none",
                "delete": "none",
            },
            "comment": {
                "read": "all",
                "create": "none",
                "edit": "none",
                "delete": "none",
            },
        },
        "field_rules": {},
    },
}

BEFORE = [
    "CREATE UNIQUE INDEX user_role_pair_idx ON user_role (user_id, role_id)",
    "CREATE INDEX user_role_role_idx ON user_role (role_id)",
    'CREATE INDEX team_member_user_idx ON team_member ("user")',
]

INSERT_ROLE = """
INSERT INTO role (name, label, builtin, permissions, field_rules)
VALUES ({}, {}, true, {}::jsonb, {}::jsonb)
ON CONFLICT (name) DO NOTHING
"""

AFTER = [
    # Each user keeps the role they had, now as a user role.
    "INSERT INTO user_role (user_id, role_id) "
    "SELECT u.id, r.id FROM app_user u JOIN role r ON r.name = u.role "
    "ON CONFLICT DO NOTHING",
    # Importers and older commands create users with a role name only; the
    # trigger turns that name into a user role, so no new user lacks one.
    """
    CREATE FUNCTION app_user_initial_role() RETURNS trigger AS $$
    BEGIN
        INSERT INTO user_role (user_id, role_id)
        SELECT NEW.id, r.id FROM role r WHERE r.name = NEW.role
        ON CONFLICT DO NOTHING;
        RETURN NEW;
    END
    $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER app_user_initial_role AFTER INSERT ON app_user "
    "FOR EACH ROW EXECUTE FUNCTION app_user_initial_role()",
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in BEFORE:
            await engine.run_ddl(statement)
        for name, role in BUILTIN_ROLES.items():
            await engine.run_querystring(
                QueryString(
                    INSERT_ROLE,
                    name,
                    role["label"],
                    json.dumps(role["permissions"]),
                    json.dumps(role["field_rules"]),
                )
            )
        for statement in AFTER:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
