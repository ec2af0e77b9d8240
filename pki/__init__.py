"""Identities and certificates: the bottom layer of Isthmus (DESIGN.md §6).

``pki`` holds SPIFFE identities, X.509 issuance and verification, the CA, trust bundles,
credential rotation and TLS context builders. It imports nothing else of ours; ``gateway``,
``federation`` and ``isthmus`` build on it.

- :mod:`pki.spiffe`: SPIFFE IDs; :mod:`pki.svid`: the X.509-SVID rules on one certificate;
- :mod:`pki.keys`, :mod:`pki.csr`, :mod:`pki.pem`, :mod:`pki.files`: keys, requests, PEM, files;
- :mod:`pki.authority`: a CA that issues roots, intermediates and workload leaves;
- :mod:`pki.verify`: the X.509-SVID verifier; :mod:`pki.bundle`: trust bundles;
- :mod:`pki.cacerts`: Istio's ``cacerts`` layout; :mod:`pki.rootdir` and :mod:`pki.rotation`:
  the root directory and root rotation behind ``isthmus pki``;
- :mod:`pki.issue`: self-signed server certificates for the demo (not SVIDs);
- :mod:`pki.service`: the CA service (``isthmus pki serve``); :mod:`pki.credentials`: the
  credential manager every proxy runs; :mod:`pki.tls_context`: TLS contexts from its material;
- :mod:`pki.errors`: every error, each naming the rule broken.
"""
