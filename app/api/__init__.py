"""The JSON API under /api/v1 and the API keys that authenticate it."""
