"""Pieces every page shares: templates, errors, the live socket."""
