"""Raw byte tunnels: the two halves of a connection after ``101 Switching Protocols``.

:class:`TunnelPipe` joins two :class:`~gateway.transport.streams.TunnelSource` s: bytes from
one are written to the other, a side that cannot keep up pauses reading on the other, and a
half-close is passed on as a half-close. Used for WebSocket upgrades.
"""

from __future__ import annotations

from gateway.transport.streams import TunnelSource


class _Half:
    __slots__ = ("eof", "peer", "pipe", "src")

    def __init__(self, pipe: TunnelPipe) -> None:
        self.pipe = pipe
        self.src: TunnelSource | None = None
        self.peer: _Half | None = None
        self.eof = False

    def on_tunnel_data(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.src is None:
            self.pipe.early.setdefault(id(self), []).append(data)
            return
        peer.src.write(data)
        if peer.src.write_paused and self.src is not None:
            self.src.pause_reading()

    def on_tunnel_eof(self) -> None:
        if self.eof:
            return
        self.eof = True
        peer = self.peer
        if peer is not None and peer.src is not None:
            peer.src.write_eof()
        if peer is not None and peer.eof:
            self.pipe.close()

    def on_tunnel_writable(self) -> None:
        # Our side drained: let the other side read again.
        peer = self.peer
        if peer is not None and peer.src is not None:
            peer.src.resume_reading()


class TunnelPipe:
    def __init__(self) -> None:
        self.downstream_sink = _Half(self)
        self.upstream_sink = _Half(self)
        self.downstream_sink.peer = self.upstream_sink
        self.upstream_sink.peer = self.downstream_sink
        self.early: dict[int, list[bytes]] = {}

    def connect(self, downstream: TunnelSource, upstream: TunnelSource) -> None:
        self.downstream_sink.src = downstream
        self.upstream_sink.src = upstream
        for half in (self.downstream_sink, self.upstream_sink):
            for chunk in self.early.pop(id(half), []):
                half.on_tunnel_data(chunk)

    def close(self) -> None:
        for half in (self.downstream_sink, self.upstream_sink):
            if half.src is not None:
                half.src.close()
