"""Benchmarks of the Isthmus proxy against nginx and HAProxy (DESIGN.md §8).

Run with ``.venv/bin/python -m bench`` (see ``bench/README.md``). The modules:
``run`` (command line and orchestration), ``configs`` (server configurations),
``loads`` (wrk / h2load and their output), ``procs`` (pinned processes, RSS,
CPU), ``report`` (ratios, targets, table and JSON).
"""
