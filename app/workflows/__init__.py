"""Workflow rules: the triggers, conditions and actions admins define."""
