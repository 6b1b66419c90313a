"""Deals moving through the stages of a pipeline."""
