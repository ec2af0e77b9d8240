"""The two sides of a raw byte tunnel (after ``101 Switching Protocols``), as protocols.

Both the downstream transports and the upstream connections implement them, so they live
here, below both. ``gateway.proxy.tunnel`` joins a pair.
"""

from __future__ import annotations

from typing import Protocol


class TunnelSink(Protocol):
    def on_tunnel_data(self, data: bytes) -> None: ...

    def on_tunnel_eof(self) -> None: ...

    def on_tunnel_writable(self) -> None:
        """The other side of the tunnel drained: reading may resume."""
        ...


class TunnelSource(Protocol):
    @property
    def write_paused(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def write_eof(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...
