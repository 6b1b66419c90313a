"""Sales forecast: calibrated win probabilities, quotas and snapshots."""
