"""Snapshots for the proxies of this cluster: compiled per proxy, served by long-poll.

``compile`` turns the cluster's objects plus the imported services into one gateway
``Snapshot`` per proxy; ``hub`` keeps the current inputs, debounces recompiles and lets
requests wait for a proxy's next version; ``registry`` remembers every proxy that polled and
what it reported; ``server`` is the Starlette app over the hub; ``status`` renders
``GET /v1/proxies`` for ``isthmus federation status``.
"""
