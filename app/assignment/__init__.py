"""Assigning tickets and deals to the agents of a team."""
