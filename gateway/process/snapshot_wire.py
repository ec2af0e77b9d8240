"""The snapshot API's wire names, shared by the proxy's client and the controller's server.

``gateway.process.control_plane`` (the proxy's side) and ``federation.snapshots.server``
(the controller's) both import this small module, so that the controller need not load the
proxy's HTTP client to know a header's name. The protocol itself is described in
``gateway.process.control_plane``.
"""

from __future__ import annotations

from urllib.parse import quote

import msgspec

VERSION_HEADER = "x-isthmus-version"
DELTA_BASE_HEADER = "x-isthmus-delta-base"


class SnapshotStatus(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/snapshots/<id>/status``."""

    version: str
    applied: bool
    error: str = ""


def snapshot_path(proxy_id: str) -> str:
    return f"/v1/snapshots/{quote(proxy_id, safe='')}"
