"""Benchmarks: `make bench` (full) and `make bench-quick` (development).

The package starts what it measures (a fresh PostgreSQL database, Daphne
processes on free ports, optionally gunicorn with uvicorn workers), drives the
load from this process, prints a table and writes `bench/results/latest.json`
and `bench/results/latest.png`. See `bench/RESULTS.md`.
"""
