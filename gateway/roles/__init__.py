"""Roles: the ingress, east-west and sidecar presets over the one proxy engine."""
