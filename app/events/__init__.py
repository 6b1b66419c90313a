"""The event log: one row for every committed change, in commit order."""
