"""Accounts: the companies the business sells to and supports."""
