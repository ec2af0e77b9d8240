"""The embedded catalog: a single-machine stand-in for Consul's HTTP API (DESIGN.md §5).

``isthmus catalog serve`` runs it. It answers py-consul exactly as Consul would for the part of
the API the federation controller uses (``../shared/reference/consul-api.md``): catalog
register/deregister/services/service/node, health service with ``passing``, KV with cas,
acquire, release, recurse and keys, sessions with TTL and lock delay, ``status/leader``, and
blocking queries with Consul's per-resource indexes and ``X-Consul-*`` headers. It persists
to one JSON file. It is not for production: use Consul.

Layout: ``state`` is the sans-IO store (indexes, change topics, clock); ``catalog``,
``health``, ``kv`` and ``sessions`` are its operations; ``render`` shapes Consul's JSON;
``decode`` reads request bodies the way Go's encoding/json does; ``query`` parses the common
query options; ``blocking`` waits for index changes; ``app`` is the ASGI front; ``persist``
reads and writes the data file; ``server`` runs it all under uvicorn.
"""
