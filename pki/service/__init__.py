"""The CA service: signs workload CSRs for bearer tokens (DESIGN.md §6, docs/pki.md).

``isthmus pki serve`` runs it on its own; the federation controller embeds the same app.

- :mod:`pki.service.app`: the Starlette app (:func:`~pki.service.app.build_app`), request steps;
- :mod:`pki.service.protocol`: the wire format, shared with the credential manager;
- :mod:`pki.service.tokens`: the token-checker protocol and identities;
  :mod:`pki.service.bootstrap` (a token file) and :mod:`pki.service.tokenreview` (Kubernetes);
- :mod:`pki.service.ratelimit`: per-identity token buckets; :mod:`pki.service.audit`: JSON lines;
- :mod:`pki.service.server_cert` and :mod:`pki.service.server`: the service's own certificate
  and the uvicorn runner over TLS.

Nothing is imported here, so the credential manager can use :mod:`pki.service.protocol`
without pulling in the server.
"""
