"""Roles with permission grids and field rules, and the users who hold them."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import (
    JSONB,
    Boolean,
    ForeignKey,
    Integer,
    Serial,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-12-04T16:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add roles and user roles"


class User(Table, tablename="app_user", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name="id",
        secret=False,
    )


class Role(Table, tablename="role", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name="id",
        secret=False,
    )


def params(default, *, null=False, unique=False, index=False, **extra):
    return {
        "default": default,
        "null": null,
        "primary_key": False,
        "unique": unique,
        "index": index,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
        **extra,
    }


def foreign_key(references):
    return params(
        None,
        references=references,
        on_delete=OnDelete.cascade,
        on_update=OnUpdate.cascade,
        target_column=None,
    )


ROLE_COLUMNS = [
    ("created_at", Timestamptz, params(TimestamptzNow())),
    ("updated_at", Timestamptz, params(TimestamptzNow())),
    ("version", Integer, params(1)),
    ("external_key", Varchar, params(None, null=True, unique=True, length=200)),
    ("import_version", Integer, params(None, null=True)),
    ("name", Varchar, params("", unique=True, length=60)),
    ("label", Varchar, params("", length=120)),
    ("builtin", Boolean, params(False)),
    ("permissions", JSONB, params("{}")),
    ("field_rules", JSONB, params("{}")),
    ("require_two_factor", Boolean, params(False)),
]

USER_ROLE_COLUMNS = [
    ("user_id", ForeignKey, foreign_key(User)),
    ("role_id", ForeignKey, foreign_key(Role)),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)

    manager.add_table(class_name="Role", tablename="role", schema=None, columns=None)
    manager.add_table(
        class_name="UserRole", tablename="user_role", schema=None, columns=None
    )

    for table_class_name, tablename, columns in (
        ("Role", "role", ROLE_COLUMNS),
        ("UserRole", "user_role", USER_ROLE_COLUMNS),
    ):
        for column_name, column_class, column_params in columns:
            manager.add_column(
                table_class_name=table_class_name,
                tablename=tablename,
                column_name=column_name,
                db_column_name=column_name,
                column_class_name=column_class.__name__,
                column_class=column_class,
                params=column_params,
                schema=None,
            )

    return manager
