"""Telemetry: in-process aggregates on the hot path, rendered as Istio-named Prometheus metrics at
scrape time.
"""
