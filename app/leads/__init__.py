"""Leads: people who may become customers, before they are contacts and deals."""
