"""The Piccolo app that owns every table and the migrations folder."""

from __future__ import annotations

from pathlib import Path

from piccolo.conf.apps import AppConfig
from piccolo.table import Table

from app.access.tables import Role, UserRole
from app.accounts.tables import Account
from app.api.tables import ApiKey
from app.assignment.tables import AgentCapacity, AgentStatus, AssignmentPolicy
from app.audit.tables import AuditLog
from app.auth.security_tables import PasswordReset, RecoveryCode, TwoFactor
from app.auth.tables import Team, TeamMember, User
from app.campaigns.tables import Campaign, CampaignRecipient, EmailSuppression
from app.comments.tables import Comment
from app.contacts.tables import Contact
from app.deals.tables import Deal, Pipeline, Product, Stage
from app.email.tables import EmailAttachment, EmailMessage, ReplyTemplate
from app.encryption.tables import SensitiveField
from app.events.tables import Event, EventStream, Stream
from app.forecast.tables import ForecastSnapshot, Quota, WinModelRecord
from app.imports.tables import ImportJob, ImportMapping, ImportRejectedRow
from app.leads.tables import Lead, LeadActivity, WebFormSettings
from app.scoring.tables import ScoringModel, ScoringRule
from app.sla.tables import BusinessCalendar, SlaClock, SlaPolicy, TicketSla
from app.tasks.tables import Task
from app.tickets.tables import Ticket
from app.webhooks.tables import OutboxMessage, WebhookAttempt, WebhookEndpoint
from app.workflows.tables import (
    RuleRun,
    WorkflowRule,
    WorkflowRuleVersion,
    WorkflowTimer,
    WorkflowTimerPlan,
)

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
    EmailMessage,
    EmailAttachment,
    ReplyTemplate,
    Comment,
    Event,
    Stream,
    EventStream,
    Quota,
    ForecastSnapshot,
    WinModelRecord,
    ImportJob,
    ImportMapping,
    ImportRejectedRow,
    AuditLog,
    Role,
    UserRole,
    TwoFactor,
    RecoveryCode,
    PasswordReset,
    ApiKey,
    BusinessCalendar,
    SlaPolicy,
    TicketSla,
    SlaClock,
    AssignmentPolicy,
    AgentCapacity,
    AgentStatus,
    WorkflowRule,
    WorkflowRuleVersion,
    RuleRun,
    WorkflowTimer,
    WorkflowTimerPlan,
    Task,
    WebhookEndpoint,
    OutboxMessage,
    WebhookAttempt,
    Lead,
    LeadActivity,
    WebFormSettings,
    ScoringRule,
    ScoringModel,
    Campaign,
    CampaignRecipient,
    EmailSuppression,
    SensitiveField,
]

APP_CONFIG = AppConfig(
    app_name="crm",
    migrations_folder_path=Path(__file__).resolve().parent.parent
    / "piccolo_migrations",
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
