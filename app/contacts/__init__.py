"""Contacts: the people at accounts, and ticket requesters."""
