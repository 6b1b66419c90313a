"""Email campaigns: a segment, a template, a schedule and a sending rate."""
