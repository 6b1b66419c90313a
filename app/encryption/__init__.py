"""Encryption at rest of sensitive columns with AES-GCM (see docs/security.md)."""
