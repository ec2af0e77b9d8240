"""The configuration API: Kubernetes YAML validated into resources and compiled into an immutable,
versioned Snapshot.
"""
