"""Identities and certificates: the bottom layer of Isthmus (DESIGN.md §6).

``pki`` holds SPIFFE identities, X.509 issuance and verification, the CA, trust bundles,
credential rotation and TLS context builders. It imports nothing else of ours; ``gateway``,
``federation`` and ``isthmus`` build on it. Today it has :mod:`pki.issue`, the self-signed
server certificates that the demo and tests use.
"""
