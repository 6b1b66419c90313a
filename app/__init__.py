"""Switchboard, a real-time collaborative CRM."""

import os

# Piccolo looks up its engine through this module path on first query.
os.environ.setdefault("PICCOLO_CONF", "app.piccolo_conf")
