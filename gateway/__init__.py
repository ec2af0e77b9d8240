"""The data plane: one proxy engine in three roles (ingress, east-west, sidecar). See
docs/architecture.md for its layers.
"""
