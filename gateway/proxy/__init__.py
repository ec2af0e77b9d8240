"""The proxy engine: what turns a downstream request into an upstream exchange.

It sits above the transports, the filters and the upstream pools and composes them; the
roles compose it in turn. ``engine`` applies snapshots, ``http`` routes each request,
``exchange`` (the router, the terminal filter) pipes it to an upstream.
"""
