"""Support tickets and their status board."""
