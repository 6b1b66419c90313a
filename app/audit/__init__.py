"""The audit log: an append-only, hash-chained record of who changed what."""
