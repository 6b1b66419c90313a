"""Piccolo's configuration: one PostgreSQL engine built from DATABASE_URL."""

from piccolo.conf.apps import AppRegistry

from app.db import make_engine

DB = make_engine()

APP_REGISTRY = AppRegistry(apps=["app.piccolo_app"])
