"""The Piccolo app that owns every table and the migrations folder."""

from __future__ import annotations

from pathlib import Path

from piccolo.conf.apps import AppConfig
from piccolo.table import Table

from app.accounts.tables import Account
from app.auth.tables import Team, TeamMember, User
from app.comments.tables import Comment
from app.contacts.tables import Contact
from app.deals.tables import Deal, Pipeline, Product, Stage
from app.events.tables import Event, EventStream, Stream
from app.imports.tables import ImportJob
from app.tickets.tables import Ticket

TABLES: list[type[Table]] = [
    Team,
    User,
    TeamMember,
    Account,
    Contact,
    Product,
    Pipeline,
    Stage,
    Deal,
    Ticket,
    Comment,
    Event,
    Stream,
    EventStream,
    ImportJob,
]

APP_CONFIG = AppConfig(
    app_name="crm",
    migrations_folder_path=Path(__file__).resolve().parent.parent
    / "piccolo_migrations",
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
