"""Live updates: the Redis bus between processes and the websockets in each.

Nothing here depends on deals or tickets. The application registers, per
topic family, a function that turns an event into HTML fragments.
"""
