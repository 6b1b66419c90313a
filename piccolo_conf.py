"""Lets the ``piccolo`` command line find the application's configuration."""

from app.piccolo_conf import APP_REGISTRY, DB

__all__ = ["APP_REGISTRY", "DB"]
