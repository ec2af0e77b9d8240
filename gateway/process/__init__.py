"""Processes: the supervisor (admin, config, signals) and its worker event loops."""
