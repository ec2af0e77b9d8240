"""Fixtures for the snapshot tests (defined in ``fed_snap_helpers``)."""

from tests.federation.snapshots.fed_snap_helpers import load_yaml

__all__ = ["load_yaml"]
