"""Benchmarks of Switchboard on this machine, run with ``python -m bench``.

The run builds its own database, Redis key prefix and web servers, measures
board pages, live fan-out, server CPU and database queries per event, writes
``bench/results/<UTC timestamp>.json`` and ``latest.json``, and removes what it
created.
"""
